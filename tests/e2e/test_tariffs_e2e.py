"""Tariffs end to end through the HTTP app, on both backends: Zaptec reports energy and no
money, so a money budget fills with what the tariff of the session's installation makes
of it (the one pricing function), until the next start is refused; the views keep the
installation, and the admin API lists the configured rates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookgate.emulate.base import Sent
from hookgate.emulate.zaptec import ZaptecEmulator
from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config
from support.polling import until

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]

SITE = "INST-SITE-1"
TARIFFS = [
    # Assigned to the installation: it wins over the source's tariff below.
    {"name": "site", "currency": "SEK", "per_kwh": "2.50", "installations": [SITE]},
    {"name": "zaptec-default", "currency": "SEK", "per_kwh": "9.99", "sources": ["zaptec"]},
]
REIMBURSEMENTS = [
    {
        "name": "home",
        "currency": "SEK",
        "per_kwh": "1.00",
        "drivers": ["Home Driver"],
        "chargers": ["HOME-1"],
    }
]


def zone_at_midday() -> str:
    """A zone where it is now between 12:00 and 13:00: a day budget cannot roll over while
    the test runs (tests/e2e/test_budget_e2e.py says more)."""
    offset = 12 - datetime.now(UTC).hour
    return f"Etc/GMT{-offset:+d}"


def money_budget(uid: str, limit: int, currency: str) -> dict[str, Any]:
    return {
        "id": f"{uid}-money",
        "subject": "token",
        "subject_id": uid,
        "metric": "money",
        "period": "day",
        "limit": limit,
        "currency": currency,
    }


@pytest.fixture
def priced(make_gateway: Any, tmp_path: Path) -> Running:
    authorization = {
        "timezone": zone_at_midday(),
        "tokens": [
            {"uid": "FLEET-SEK", "driver": "Fleet Driver"},
            {"uid": "FLEET-EUR"},
        ],
        "budgets": [money_budget("FLEET-SEK", 100, "SEK"), money_budget("FLEET-EUR", 1, "EUR")],
    }
    config = base_config(
        tmp_path / "hookgate.db",
        authorization=authorization,
        tariffs=TARIFFS,
        reimbursements=REIMBURSEMENTS,
    )
    running: Running = make_gateway(config)
    return running


async def plug_ins(url: str, token: str, energies: list[float]) -> list[list[Sent]]:
    async with httpx.AsyncClient(timeout=10) as client:
        emulator = ZaptecEmulator(
            client, url, "zaptec", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD
        )
        return [
            await emulator.session(token=token, installation=SITE, energy_kwh=kwh)
            for kwh in energies
        ]


def test_a_money_budget_fills_with_the_tariff_price_until_the_next_start_is_refused(
    priced: Running,
) -> None:
    # 30 kWh at 2.50 SEK = 75 SEK: within 100 SEK, so the second start is approved; its
    # 30 kWh bring the day to 150 SEK.
    runs = asyncio.run(plug_ins(priced.url, "fleet-sek", [30, 30]))
    for start, end in runs:
        assert start.status == 200, start.response
        assert end.status == 200, end.response
    money = priced.rows(
        "SELECT money, currency FROM consumption WHERE token = ? ORDER BY occurred_at",
        "FLEET-SEK",
    )
    assert money == [("75.00", "SEK"), ("75.00", "SEK")]

    [refused] = asyncio.run(plug_ins(priced.url, "fleet-sek", [30]))
    assert len(refused) == 1, "a refused start has no end"
    assert refused[0].status == 403
    assert refused[0].response["reason"] == "NO_CREDIT"
    with priced.admin() as admin:
        [audit] = admin.get(
            "/api/v1/decisions", params={"token": "FLEET-SEK", "result": "NO_CREDIT"}
        ).json()["items"]
    assert "token FLEET-SEK day money budget: 150.00 of 100 SEK spent" in audit["reasons"]


def test_a_tariff_in_another_currency_does_not_count_against_a_money_budget(
    priced: Running,
) -> None:
    # 75 SEK are spent, the budget is 1 EUR: the SEK price is not converted, nor counted.
    for _ in range(2):
        [(start, end)] = asyncio.run(plug_ins(priced.url, "fleet-eur", [30]))
        assert start.status == 200, start.response
        assert end.status == 200, end.response
    assert priced.rows("SELECT money, currency FROM consumption WHERE token = ?", "FLEET-EUR") == [
        ("75.00", "SEK"),
        ("75.00", "SEK"),
    ]


def test_the_session_view_keeps_the_installation_and_prices_by_its_tariff(
    priced: Running,
) -> None:
    [(start, end)] = asyncio.run(plug_ins(priced.url, "fleet-sek", [4]))
    assert end.status == 200, end.response
    session_id = start.response["sessionId"]
    with priced.admin() as admin:

        def ended() -> dict[str, Any] | None:
            items = admin.get("/api/v1/charging-sessions", params={"source": "zaptec"}).json()
            rows = [r for r in items["items"] if r["session_key"] == session_id]
            return rows[0] if rows and rows[0]["status"] == "ended" else None

        row = until(ended, what="the session end to be processed")
        assert row["installation_id"] == SITE
        detail = admin.get(f"/api/v1/charging-sessions/{row['id']}").json()
    assert detail["price"]["by"] == "tariff:site"
    assert detail["price"]["total"] == "10.00"


def test_the_admin_api_lists_the_configured_tariffs_read_only(priced: Running) -> None:
    with priced.admin() as admin:
        listed = admin.get("/api/v1/tariffs")
        assert listed.status_code == 200, listed.text
        body = listed.json()
        assert [t["name"] for t in body["tariffs"]] == ["site", "zaptec-default"]
        assert body["tariffs"][0]["installations"] == [SITE]
        assert body["tariffs"][0]["per_kwh"] == "2.50"
        assert [r["name"] for r in body["reimbursements"]] == ["home"]
        unknown = admin.get("/api/v1/tariffs", params={"name": "site"})
        assert unknown.status_code == 400
        assert unknown.headers["content-type"].startswith("application/problem+json")
        assert admin.post("/api/v1/tariffs", json={}).status_code == 405
        document = admin.get("/api/v1/openapi.json").json()
    operation = document["paths"]["/api/v1/tariffs"]["get"]
    assert "configuration file" in operation["description"]
