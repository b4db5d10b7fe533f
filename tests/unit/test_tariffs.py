"""Tariffs and reimbursement rates: which rate prices a session, time-of-use bands in the
site's zone (across midnight and a DST change), rounding once to cents with parts that
add up, the configuration keys, and the export's lines priced by the one function."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.config import parse_config
from hookgate.domain.rules import AuthEntity
from hookgate.domain.tariffs import Band, Rates, Reimbursement, Session, Tariff, choose, price
from hookgate.export import build_report, lines_csv
from hookgate.ops.details import session_detail
from hookgate.store.sqlite import SqliteStore
from support.views import seed


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def session(**values: Any) -> Session:
    base: dict[str, Any] = {
        "source": "zaptec",
        "charger_id": "CH-1",
        "started_at": at("2026-11-03T08:00:00+00:00"),
        "ended_at": at("2026-11-03T09:00:00+00:00"),
        "energy_kwh": "10",
    }
    return Session(**{**base, **values})


FLAT = Tariff(
    name="office",
    currency="EUR",
    vat_rate="0.25",
    per_kwh="0.30",
    session_fee="0.50",
    sources=["zaptec"],
)


def test_a_flat_tariff_prices_energy_and_the_fee_and_adds_vat_once() -> None:
    priced = price(session(), [FLAT])
    assert priced is not None
    # 10 kWh * 0.30 + 0.50 = 3.50; VAT 25 % = 0.875, rounded half-up once: 0.88.
    assert (priced.amount_excl_vat, priced.vat, priced.total) == ("3.50", "0.88", "4.38")
    assert priced.by == "tariff:office"
    assert priced.currency == "EUR"
    assert [(p["type"], p["amount"]) for p in priced.components] == [
        ("energy", "3.00"),
        ("fixed", "0.50"),
    ]


def test_time_of_use_bands_split_energy_and_minutes_in_the_site_zone() -> None:
    night = Tariff(
        name="depot",
        currency="NOK",
        per_kwh="0.40",
        per_minute="0.01",
        timezone="Europe/Oslo",
        bands=[Band(start="22:00", end="06:00", per_kwh="0.20")],
        chargers=["CH-1"],
    )
    # 21:00 to 23:00 in Oslo (UTC+1 in November): one hour each side of 22:00.
    priced = price(
        session(
            started_at=at("2026-11-03T20:00:00+00:00"),
            ended_at=at("2026-11-03T22:00:00+00:00"),
            energy_kwh="12",
        ),
        [night],
    )
    assert priced is not None
    # 6 kWh * 0.40 + 6 kWh * 0.20 = 3.60; 120 min * 0.01 = 1.20 (the band keeps the
    # tariff's per-minute rate).
    assert [(p["type"], p["amount"], p["quantity"]) for p in priced.components] == [
        ("energy", "3.60", "12"),
        ("time", "1.20", "120"),
    ]
    assert priced.amount_excl_vat == "4.80"
    assert priced.vat == "0.00"


def test_a_band_keeps_its_local_hours_across_the_dst_change() -> None:
    early = Tariff(
        name="early",
        currency="EUR",
        per_kwh="0.50",
        timezone="Europe/Oslo",
        bands=[Band(start="00:00", end="06:00", per_kwh="0.10")],
        sources=["zaptec"],
    )
    # 29 March 2026: Oslo goes from 02:00 CET to 03:00 CEST. 00:00 CET is 23:00 UTC, and
    # 06:00 CEST is 04:00 UTC: five of the six hours are in the band.
    priced = price(
        session(
            started_at=at("2026-03-28T23:00:00+00:00"),
            ended_at=at("2026-03-29T05:00:00+00:00"),
            energy_kwh="6",
        ),
        [early],
    )
    assert priced is not None
    assert priced.amount_excl_vat == "1.00"  # 5 kWh * 0.10 + 1 kWh * 0.50


def test_a_band_past_midnight_belongs_to_the_day_it_starts() -> None:
    friday_night = Band(start="22:00", end="06:00", days=[5])
    assert friday_night.covers(datetime(2026, 11, 6, 23, 0))  # Friday 23:00
    assert friday_night.covers(datetime(2026, 11, 7, 2, 0))  # Saturday 02:00
    assert not friday_night.covers(datetime(2026, 11, 7, 23, 0))  # Saturday 23:00
    assert not friday_night.covers(datetime(2026, 11, 6, 2, 0))  # Friday 02:00


def test_a_reimbursement_wins_over_the_charger_tariff_which_wins_over_the_source() -> None:
    charger = Tariff(name="charger", currency="EUR", per_kwh="0.35", chargers=["HOME-7"])
    home = Reimbursement(
        name="anna-home", currency="EUR", per_kwh="0.25", vehicles=["ab-123"], chargers=["HOME-7"]
    )
    at_home = session(charger_id="HOME-7", vehicle="AB 123")
    assert choose(at_home, [FLAT, charger], [home]) == home
    assert choose(session(charger_id="HOME-7"), [FLAT, charger], [home]) == charger
    assert choose(session(charger_id="CH-9"), [FLAT, charger], [home]) == FLAT
    assert choose(session(source="ampeco"), [FLAT, charger], [home]) is None
    priced = price(at_home, [FLAT, charger], [home])
    assert priced is not None
    assert (priced.by, priced.total) == ("reimbursement:anna-home", "2.50")


def test_an_installation_tariff_comes_after_the_charger_and_before_the_source() -> None:
    charger = Tariff(name="charger", currency="EUR", per_kwh="0.35", chargers=["CH-1"])
    site = Tariff(name="site", currency="EUR", per_kwh="0.20", installations=["INST-7"])
    home = Reimbursement(name="home", currency="EUR", per_kwh="0.10", drivers=["Anna Berg"])
    rates = [FLAT, charger, site]
    assert choose(session(installation_id="INST-7"), rates, [home]) == charger
    assert choose(session(charger_id="CH-2", installation_id="INST-7"), rates, [home]) == site
    assert choose(session(charger_id="CH-2", installation_id="INST-8"), rates, [home]) == FLAT
    assert choose(session(charger_id="CH-2"), [site], [home]) is None
    owned = session(charger_id="CH-2", installation_id="INST-7", driver="Anna Berg")
    assert choose(owned, rates, [home]) == home
    priced = price(session(charger_id="CH-2", installation_id="INST-7"), rates)
    assert priced is not None and (priced.by, priced.total) == ("tariff:site", "2.00")


def test_nothing_is_guessed_without_energy_or_without_both_ends_for_time_rates() -> None:
    assert price(session(energy_kwh=None), [FLAT]) is None
    assert price(session(energy_kwh="not a number"), [FLAT]) is None
    timed = Tariff(name="t", currency="EUR", per_minute="0.05", sources=["zaptec"])
    assert price(session(ended_at=None), [timed]) is None
    assert price(session(ended_at=None), [FLAT]) is not None  # energy and a fee only


def test_tariffs_and_reimbursements_come_from_the_configuration() -> None:
    config = parse_config(
        {
            "tariffs": [
                {
                    "name": "depot",
                    "currency": "SEK",
                    "vat_rate": "0.25",
                    "per_kwh": "2.10",
                    "timezone": "Europe/Stockholm",
                    "bands": [{"start": "17:00", "end": "20:00", "per_kwh": "3.40"}],
                    "chargers": ["ZAP-1"],
                    "installations": ["INST-7"],
                }
            ],
            "reimbursements": [
                {"name": "home", "currency": "SEK", "per_kwh": "1.80", "drivers": ["Anna Berg"]}
            ],
        },
        env={},
    )
    assert config.tariffs[0].bands[0].per_kwh == "3.40"
    assert config.tariffs[0].installations == ["INST-7"]
    assert config.reimbursements[0].drivers == ["Anna Berg"]
    bad: list[tuple[dict[str, Any], str]] = [
        ({"tariffs": [{"name": "x", "currency": "SEK", "timezone": "Mars/Base"}]}, "time zone"),
        ({"tariffs": [{"name": "x", "currency": "sek"}]}, "currency"),
        ({"tariffs": [{"name": "x", "currency": "SEK", "per_kwh": "-1"}]}, "per_kwh"),
        (
            {
                "tariffs": [
                    {"name": "x", "currency": "SEK", "bands": [{"start": "25:00", "end": "02:00"}]}
                ]
            },
            "HH:MM",
        ),
        ({"tariffs": [{"name": "x", "currency": "SEK"}] * 2}, "more than once"),
        ({"reimbursements": [{"name": "r", "currency": "SEK", "per_kwh": "1"}]}, "no vehicles"),
    ]
    for data, message in bad:
        with pytest.raises(Exception, match=message):
            parse_config(data, env={})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(str(tmp_path / "export.db"), auto_migrate=True)
    await db.open()
    await db.auth_put(
        [
            AuthEntity(
                kind="token",
                key="TAG-1",
                doc=msgspec.json.encode(
                    {"uid": "TAG-1", "driver": "Anna Berg", "vehicle": "AB123"}
                ),
            )
        ]
    )
    yield db
    await db.close()


async def test_the_export_prices_sessions_no_provider_priced(
    store: SqliteStore, tmp_path: Path
) -> None:
    db = tmp_path / "export.db"
    common = {"source": "zaptec", "provider": "zaptec", "status": "ended", "token": "TAG-1"}
    # Zaptec: energy, no money.
    seed(
        db,
        "charging_sessions",
        **common,
        session_key="z1",
        charger_id="CH-1",
        started_at=at("2026-11-03T08:00:00+00:00"),
        ended_at=at("2026-11-03T09:00:00+00:00"),
        energy_kwh="10",
    )
    # A provider's own amount is never replaced.
    seed(
        db,
        "charging_sessions",
        **common,
        session_key="z2",
        charger_id="CH-1",
        started_at=at("2026-11-04T08:00:00+00:00"),
        ended_at=at("2026-11-04T09:00:00+00:00"),
        energy_kwh="10",
        cost="9.99",
        currency="EUR",
    )
    report = await build_report(store, "2026-11", "UTC", rates=Rates(tariffs=(FLAT,)))
    priced, provider = report.lines
    assert (priced.amount_excl_vat, priced.vat, priced.total, priced.currency) == (
        "3.50",
        "0.88",
        "4.38",
        "EUR",
    )
    assert priced.priced_by == "tariff:office"
    assert "energy 3.00 for 10 kWh" in priced.description
    assert (provider.total, provider.priced_by) == ("9.99", None)
    assert report.totals[0].total == "14.37"
    assert "4.38" in lines_csv(report)
    unpriced = await build_report(store, "2026-11", "UTC")
    assert unpriced.lines[0].total is None


async def test_a_session_detail_shows_its_tariff_price(store: SqliteStore, tmp_path: Path) -> None:
    row = seed(
        tmp_path / "export.db",
        "charging_sessions",
        source="zaptec",
        provider="zaptec",
        status="ended",
        session_key="z9",
        token="tag-1",
        charger_id="CH-1",
        started_at=at("2026-11-03T08:00:00+00:00"),
        ended_at=at("2026-11-03T09:00:00+00:00"),
        energy_kwh="10",
    )
    home = Reimbursement(name="anna", currency="EUR", per_kwh="0.20", drivers=["Anna Berg"])
    detail = await session_detail(store, row["id"], Rates(tariffs=(FLAT,), reimbursements=(home,)))
    assert detail is not None
    assert detail["price"]["by"] == "reimbursement:anna"  # the token's driver is Anna Berg
    assert detail["price"]["total"] == "2.00"
    plain = await session_detail(store, row["id"])
    assert plain is not None and plain["price"] is None
