"""Anomaly flags raised by processing on charging sessions and parking transactions:
times in the future or implausibly old, energy above the limits, overlapping sessions of
one token, amounts whose parts do not add up, an end reporting a start far from the
approved one, a vehicle parked while it charges (whichever arrives first, on both
backends); provider flags kept; a flag cleared when a newer report removes its cause;
the export shows the stored flags."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.config import EasyParkSource
from hookgate.delivery.router import Router
from hookgate.domain.anomalies import AnomalyRules
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import ChargingSessionFact, Fact, ParkingFact
from hookgate.domain.rules import AuthEntity
from hookgate.export import build_report, lines_csv
from hookgate.ids import floor_id
from hookgate.metrics import Metrics
from hookgate.processing import project
from hookgate.processing.worker import Processor
from hookgate.providers.base import Call
from hookgate.providers.easypark import EasyPark
from hookgate.store.sqlite import SqliteStore
from hookgate.store.viewtx import Dialect, SqlViewTx
from support.viewdb import database, sqlite_db, transaction
from support.views import seed

FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"
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


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Dialect]]:
    with database(request.param, tmp_path) as conn:
        yield conn, request.param


def put_token(conn: Any, dialect: Dialect, uid: str, vehicle: str) -> None:
    """A stored token entity, as `hookgate tokens add --vehicle` writes it."""
    mark = "?" if dialect == "sqlite" else "%s"
    doc = msgspec.json.encode({"uid": uid, "vehicle": vehicle}).decode()
    with transaction(conn, dialect):
        conn.execute(
            "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
            f"VALUES ('token', {mark}, {mark}, 'api', {mark})",
            [uid, doc, NOW.isoformat() if dialect == "sqlite" else NOW],
        )


class Vehicles:
    """Zaptec sessions and EasyPark transactions projected as processing does."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn, self.dialect = conn, dialect
        self.clock = NOW
        self.raised: list[str] = []

    def _project(self, source: str, fact: Fact) -> None:
        self.clock += timedelta(milliseconds=5)
        event = StoredEvent(
            id=floor_id(self.clock),
            source=source,
            provider=source,
            event_type=source,
            received_at=self.clock,
            subject=None,
            status="received",
            flags=[],
            document={},
        )
        with transaction(self.conn, self.dialect):
            tx = SqlViewTx(self.conn, self.dialect)
            self.raised += project(tx, event, [fact], RULES)

    def charge(self, key: str, token: str, start: timedelta, end: timedelta | None) -> None:
        """A session from NOW - start until NOW - end (running without an end)."""
        self._project(
            "zaptec",
            ChargingSessionFact(
                occurred_at=self.clock,
                keys=(key,),
                token=token,
                started_at=NOW - start,
                ended_at=None if end is None else NOW - end,
                status="active" if end is None else "ended",
            ),
        )

    def park(self, parking_id: str, plate: str, start: timedelta, end: timedelta) -> None:
        self._project(
            "easypark",
            ParkingFact(
                parking_id=parking_id,
                license_number=plate,
                started_at=NOW - start,
                ended_at=NOW - end,
                currency="SEK",
                price="10.00",
                price_vat="2.00",
                price_excl_vat="8.00",
                flags=("legacy_feed",),
            ),
        )

    def flags(self, table: str, key: str) -> list[str]:
        tx = SqlViewTx(self.conn, self.dialect)
        name = "session_key" if table == "charging_sessions" else "parking_id"
        row = tx.get(table, {"source": table_source(table), name: key})
        assert row is not None
        return list(row["flags"])


def table_source(table: str) -> str:
    return "zaptec" if table == "charging_sessions" else "easypark"


H = timedelta(hours=1)


def test_parked_while_charging_found_when_the_parking_arrives_second(
    db: tuple[Any, Dialect],
) -> None:
    conn, dialect = db
    put_token(conn, dialect, "TAG-1", "ab-123")
    vehicles = Vehicles(conn, dialect)
    vehicles.charge("s1", "tag-1", start=3 * H, end=2 * H)
    vehicles.charge("running", "TAG-1", start=H / 2, end=None)
    assert vehicles.flags("charging_sessions", "s1") == []
    vehicles.park("p1", "AB 123", start=150 * timedelta(minutes=1), end=H)  # overlaps s1
    vehicles.park("p2", "AB123", start=110 * timedelta(minutes=1), end=H)  # after s1 ended
    vehicles.park("p3", "CD456", start=3 * H, end=H)  # another vehicle
    assert vehicles.flags("parking_transactions", "p1") == ["legacy_feed", "parked_while_charging"]
    assert vehicles.flags("charging_sessions", "s1") == ["parked_while_charging"]
    assert vehicles.flags("parking_transactions", "p2") == ["legacy_feed"]
    assert vehicles.flags("parking_transactions", "p3") == ["legacy_feed"]
    # A running session is not compared until it ends.
    assert vehicles.flags("charging_sessions", "running") == []
    assert vehicles.raised == ["parked_while_charging"]


def test_parked_while_charging_found_when_the_session_arrives_second(
    db: tuple[Any, Dialect],
) -> None:
    conn, dialect = db
    put_token(conn, dialect, "TAG-1", "AB-123")
    vehicles = Vehicles(conn, dialect)
    vehicles.park("p1", "ab 123", start=3 * H, end=H)
    vehicles.charge("s1", "TAG-1", start=2 * H, end=None)
    assert vehicles.flags("parking_transactions", "p1") == ["legacy_feed"]
    vehicles.charge("s1", "TAG-1", start=2 * H, end=90 * timedelta(minutes=1))
    vehicles.charge("other", "TAG-2", start=2 * H, end=90 * timedelta(minutes=1))
    assert vehicles.flags("charging_sessions", "s1") == ["parked_while_charging"]
    assert vehicles.flags("parking_transactions", "p1") == ["legacy_feed", "parked_while_charging"]
    assert vehicles.flags("charging_sessions", "other") == []
    # Processing the same end again neither adds nor counts anything.
    vehicles.charge("s1", "TAG-1", start=2 * H, end=90 * timedelta(minutes=1))
    assert vehicles.flags("charging_sessions", "s1") == ["parked_while_charging"]
    assert vehicles.raised == ["parked_while_charging"]


def test_a_late_session_finds_its_parking_behind_many_later_ones(db: tuple[Any, Dialect]) -> None:
    """The lookup reads only rows that started before the session ended, so a long later
    history of the vehicle does not hide the parking that overlaps it."""
    conn, dialect = db
    put_token(conn, dialect, "TAG-1", "AB123")
    vehicles = Vehicles(conn, dialect)
    day = timedelta(days=1)
    vehicles.park("first", "AB123", start=40 * day, end=40 * day - 2 * H)
    for n in range(30):
        vehicles.park(f"later{n}", "AB123", start=(30 - n) * day, end=(30 - n) * day - H)
    vehicles.charge("late", "TAG-1", start=40 * day - H, end=40 * day - 3 * H)
    assert vehicles.flags("charging_sessions", "late") == ["parked_while_charging"]
    assert vehicles.flags("parking_transactions", "first") == [
        "legacy_feed",
        "parked_while_charging",
    ]


async def test_the_export_shows_the_stored_flags_of_both_kinds(tmp_path: Path) -> None:
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
            flags=["energy_above_max", "parked_while_charging", "session_failed"],
        )
        parked = seed(
            path,
            "parking_transactions",
            parking_id="p1",
            license_number="ab 123",
            started_at=NOW - timedelta(hours=3),
            ended_at=NOW - timedelta(minutes=90),
            flags=["legacy_feed", "parked_while_charging"],
        )
        # Overlapping, but processing flagged nothing: the export computes no flag itself.
        apart = seed(
            path,
            "parking_transactions",
            parking_id="p2",
            license_number="AB123",
            started_at=NOW - timedelta(minutes=100),
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
    assert {row["id"]: row["flags"] for row in table}[parked["id"]] == "parked_while_charging"


def test_processing_counts_a_parked_vehicle_in_the_metrics(tmp_path: Path) -> None:
    """An EasyPark delivery through the real provider and the processing step: the flag
    it raises is counted under the parking source."""
    provider, source = EasyPark(), EasyParkSource(name="easypark", username="u", password="p")
    raw = (FIXTURES / "easypark" / "current.json").read_bytes()  # ABC123, 12:02 to 13:12
    parsed = provider.parse(source, Call("", {}, raw))
    metrics = Metrics()
    processor = Processor({"easypark": provider}, Router([], {}), RULES, metrics)
    with sqlite_db(tmp_path / "views.db") as conn:
        put_token(conn, "sqlite", "TAG-1", "abc-123")
        vehicles = Vehicles(conn, "sqlite")
        noon = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
        vehicles.charge("s1", "TAG-1", start=NOW - noon, end=NOW - noon - H)
        event = StoredEvent(
            id=floor_id(NOW),
            source="easypark",
            provider="easypark",
            event_type=parsed.event_type,
            received_at=NOW,
            subject=parsed.subject,
            status=parsed.status,
            flags=list(parsed.flags),
            document=msgspec.json.decode(msgspec.json.encode(parsed.document)),
        )
        with transaction(conn, "sqlite"):
            processor(SqlViewTx(conn, "sqlite"), event)
        assert vehicles.flags("charging_sessions", "s1") == ["parked_while_charging"]
    counted = metrics.registry.get_sample_value(
        "hookgate_anomalies_total", {"source": "easypark", "flag": "parked_while_charging"}
    )
    assert counted == 1
