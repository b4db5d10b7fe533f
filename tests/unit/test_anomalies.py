"""Anomaly flags raised by processing on charging sessions: times in the future or
implausibly old, energy above the limits, overlapping sessions of one token, amounts
whose parts do not add up, an end reporting a start far from the approved one; provider
flags kept; a flag cleared when a newer report removes its cause."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.domain.anomalies import AnomalyRules
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import ChargingSessionFact
from hookgate.domain.rules import AuthEntity
from hookgate.export import build_report, lines_csv
from hookgate.ids import floor_id
from hookgate.processing import project
from hookgate.store.sqlite import SqliteStore
from hookgate.store.viewtx import SqlViewTx
from support.viewdb import sqlite_db, transaction
from support.views import seed

NOW = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
RULES = AnomalyRules(
    max_energy_kwh="80", charger_max_energy_kwh={"HOME-1": "22"}, start_drift_seconds=600
)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Any]:
    with sqlite_db(tmp_path / "views.db") as db:
        yield db


class Feed:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.clock = NOW
        self.raised: list[str] = []

    def __call__(self, received_at: datetime | None = None, **values: Any) -> None:
        self.clock += timedelta(milliseconds=5)
        received = received_at or self.clock
        event = StoredEvent(
            id=floor_id(self.clock),
            source="zaptec",
            provider="zaptec",
            event_type="session",
            received_at=received,
            subject=None,
            status="received",
            flags=[],
            document={},
        )
        fact = ChargingSessionFact(occurred_at=received, **values)
        with transaction(self.conn, "sqlite"):
            self.raised += project(SqlViewTx(self.conn, "sqlite"), event, [fact], RULES)

    def flags(self, key: str) -> list[str]:
        row = SqlViewTx(self.conn, "sqlite").get(
            "charging_sessions", {"source": "zaptec", "session_key": key}
        )
        assert row is not None
        return list(row["flags"])


def test_times_in_the_future_or_implausibly_old(conn: Any) -> None:
    feed = Feed(conn)
    feed(keys=("future",), started_at=NOW + timedelta(hours=2), token="A")
    feed(keys=("old",), started_at=NOW - timedelta(days=500), token="B")
    feed(keys=("fine",), started_at=NOW - timedelta(hours=2), token="C")
    assert feed.flags("future") == ["time_in_future"]
    assert feed.flags("old") == ["time_implausibly_old"]
    assert feed.flags("fine") == []
    assert sorted(feed.raised) == ["time_implausibly_old", "time_in_future"]


def test_energy_above_the_limit_of_the_charger_or_the_default(conn: Any) -> None:
    feed = Feed(conn)
    start = NOW - timedelta(hours=3)
    feed(keys=("home",), charger_id="HOME-1", started_at=start, energy_kwh="30", token="A")
    feed(keys=("depot",), charger_id="DEPOT", started_at=start, energy_kwh="30", token="B")
    feed(keys=("huge",), charger_id="DEPOT", started_at=start, energy_kwh="120", token="C")
    assert feed.flags("home") == ["energy_above_max"]
    assert feed.flags("depot") == []
    assert feed.flags("huge") == ["energy_above_max"]


def test_overlapping_sessions_of_one_token_are_both_flagged(conn: Any) -> None:
    feed = Feed(conn)
    feed(
        keys=("first",),
        token="TAG",
        started_at=NOW - timedelta(hours=3),
        ended_at=NOW - timedelta(hours=1),
    )
    feed(keys=("apart",), token="TAG", started_at=NOW - timedelta(minutes=50))
    assert feed.flags("first") == [] and feed.flags("apart") == []
    feed(keys=("second",), token="TAG", started_at=NOW - timedelta(hours=2))
    assert feed.flags("second") == ["overlapping_session"]
    assert feed.flags("first") == ["overlapping_session"]


def test_amounts_whose_parts_do_not_add_up(conn: Any) -> None:
    feed = Feed(conn)
    start = NOW - timedelta(hours=1)
    parts = [{"type": "energy", "amount": "6.45"}, {"type": "fixed", "amount": "0.50"}]
    feed(keys=("ok",), token="A", started_at=start, cost="6.95", cost_components=parts)
    feed(keys=("bad",), token="B", started_at=start, cost="9.95", cost_components=parts)
    feed(keys=("vat",), token="C", started_at=start, cost="5.00", cost_excl_vat="6.00")
    assert feed.flags("ok") == []
    assert feed.flags("bad") == ["amounts_do_not_add_up"]
    assert feed.flags("vat") == ["amounts_do_not_add_up"]
    # A corrected total clears the flag; a provider's own flag stays.
    feed(keys=("bad",), cost="6.95", flags=("session_failed",))
    assert feed.flags("bad") == ["session_failed"]


def test_an_end_reporting_a_start_far_from_the_approved_one(conn: Any) -> None:
    feed = Feed(conn)
    approved = NOW - timedelta(hours=2)
    feed(received_at=approved, keys=("near",), token="A", started_at=approved, opens=True)
    feed(keys=("near",), started_at=approved + timedelta(minutes=4), ended_at=NOW)
    feed(received_at=approved, keys=("far",), token="B", started_at=approved, opens=True)
    feed(keys=("far",), started_at=approved - timedelta(hours=1), ended_at=NOW)
    assert feed.flags("near") == []
    assert feed.flags("far") == ["start_far_from_approved"]


async def test_the_export_shows_flags_and_a_vehicle_parked_while_charging(tmp_path: Path) -> None:
    db = SqliteStore(str(tmp_path / "export.db"), auto_migrate=True)
    await db.open()
    try:
        await db.auth_put(
            [
                AuthEntity(
                    kind="token",
                    key="TAG-1",
                    doc=msgspec.json.encode({"uid": "TAG-1", "vehicle": "AB-123"}),
                )
            ]
        )
        path = tmp_path / "export.db"
        charging = seed(
            path,
            "charging_sessions",
            source="zaptec",
            provider="zaptec",
            session_key="z1",
            status="ended",
            token="TAG-1",
            started_at=NOW - timedelta(hours=2),
            ended_at=NOW - timedelta(hours=1),
            energy_kwh="10",
            flags=["energy_above_max", "session_failed"],
        )
        parked = seed(
            path,
            "parking_transactions",
            parking_id="p1",
            license_number="ab 123",
            started_at=NOW - timedelta(hours=3),
            ended_at=NOW - timedelta(minutes=90),
        )
        apart = seed(
            path,
            "parking_transactions",
            parking_id="p2",
            license_number="AB123",
            started_at=NOW - timedelta(minutes=50),
            ended_at=NOW - timedelta(minutes=10),
        )
        report = await build_report(db, "2026-11", "UTC")
    finally:
        await db.close()
    flags = {line.id: line.flags for line in report.lines}
    assert flags[charging["id"]] == ["energy_above_max", "parked_while_charging"]
    assert flags[parked["id"]] == ["parked_while_charging"]
    assert flags[apart["id"]] == []
    table = list(csv.DictReader(io.StringIO(lines_csv(report))))
    assert {row["id"]: row["flags"] for row in table}[charging["id"]] == (
        "energy_above_max parked_while_charging"
    )
