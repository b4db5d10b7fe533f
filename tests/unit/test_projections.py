"""Domain views from realistic event sequences, against hand-computed rows.

Events are built by the real providers' `parse` over real bodies (the contract fixtures
and the AMPECO emulator samples), so their documents are exactly what the gateway
stores; facts come from the real `Provider.facts`, and projections run inside real
SQLite transactions (and PostgreSQL where marked) through `SqlViewTx`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate.config import AmpecoSource, EasyParkSource, ZaptecSource, ZtlmentSource
from hookgate.domain.events import StoredEvent
from hookgate.emulate.ampeco_samples import session_sequence
from hookgate.ids import floor_id
from hookgate.oauth import TokenIssuer
from hookgate.processing import project
from hookgate.providers.ampeco import Ampeco
from hookgate.providers.base import Call, Provider
from hookgate.providers.easypark import EasyPark
from hookgate.providers.zaptec import Zaptec
from hookgate.providers.ztlment import Ztlment
from hookgate.store.views import VIEWS
from hookgate.store.viewtx import Dialect, SqlViewTx
from support.viewdb import database, sqlite_db, transaction

FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"
BASE = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def fixture(provider: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / provider / f"{name}.json").read_bytes())
    return doc


def body(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


ZAPTEC = ZaptecSource(name="zaptec", username="u", password="p")
AMPECO = AmpecoSource(name="ampeco", secrets=["token"])
EASYPARK = EasyParkSource(name="easypark", username="u", password="p")
ZTLMENT = ZtlmentSource(name="ztlment", secrets=["secret"])
PROVIDERS: dict[str, tuple[Provider[Any], Any]] = {
    "zaptec": (Zaptec(TokenIssuer(b"k" * 32)), ZAPTEC),
    "ampeco": (Ampeco(), AMPECO),
    "easypark": (EasyPark(), EASYPARK),
    "ztlment": (Ztlment(), ZTLMENT),
}


class Inbox:
    """Parses bodies as the gateway does and numbers them in arrival order (event ids are
    time-ordered, one millisecond apart here)."""

    def __init__(self, start: datetime = BASE) -> None:
        self.clock = start

    def event(
        self,
        provider: str,
        document: dict[str, Any],
        route: str = "",
        *,
        received_at: datetime | None = None,
        flags: tuple[str, ...] = (),
        decision: dict[str, Any] | None = None,
    ) -> StoredEvent:
        receiver, source = PROVIDERS[provider]
        parsed = receiver.parse(source, Call(route, {}, body(document)))
        if received_at is None:
            self.clock += timedelta(seconds=1)
            received_at = self.clock
        return StoredEvent(
            id=floor_id(received_at),
            source=source.name,
            provider=provider,
            event_type=parsed.event_type,
            received_at=received_at,
            subject=parsed.subject,
            status=parsed.status,
            flags=[*parsed.flags, *flags],
            # The store keeps the document as JSON: read it back the same way.
            document=msgspec.json.decode(msgspec.json.encode(parsed.document)),
            decision=decision,
        )


def process(conn: Any, dialect: Dialect, events: list[StoredEvent]) -> None:
    """Each event in its own transaction, as the processing step runs them."""
    tx = SqlViewTx(conn, dialect)
    for event in events:
        receiver, _ = PROVIDERS[event.provider]
        facts = receiver.facts(event)
        with transaction(conn, dialect):
            project(tx, event, facts)


def rows(conn: Any, dialect: Dialect, table: str, **where: Any) -> list[dict[str, Any]]:
    return SqlViewTx(conn, dialect).select(table, where)


def dump(conn: Any, dialect: Dialect) -> dict[str, list[dict[str, Any]]]:
    tx = SqlViewTx(conn, dialect)
    return {
        table: sorted(tx.select(table, {}), key=lambda r, s=shape: [str(r[k]) for k in s.key])
        for table, shape in VIEWS.items()
    }


def stable(row: dict[str, Any]) -> dict[str, Any]:
    """A row without what differs between runs: its random id and wall-clock stamp."""
    return {k: v for k, v in row.items() if k not in ("id", "updated_at", "versions")}


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Any]:
    with sqlite_db(tmp_path / "views.db") as conn:
        yield conn


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Dialect]]:
    dialect: Dialect = request.param
    with database(dialect, tmp_path) as conn:
        yield conn, dialect


# -- Zaptec ---------------------------------------------------------------------------

ZAPTEC_CHARGER = "a3c1d9e2-5f4b-4e0a-9b7c-2d8e6f1a0b34"


def zaptec_session(
    inbox: Inbox, end_ids: dict[str, str], session_id: str = "S-1"
) -> tuple[StoredEvent, StoredEvent]:
    start = inbox.event(
        "zaptec",
        fixture("zaptec", "start_pascal"),
        "session-start",
        received_at=at("2025-12-04T12:02:37Z"),
        decision={"session_id": session_id, "result": "ALLOWED", "reasons": []},
    )
    end_doc = {**fixture("zaptec", "end_pascal"), **end_ids}
    end = inbox.event("zaptec", end_doc, "session-end", received_at=at("2025-12-04T14:10:09Z"))
    return start, end


ZAPTEC_ENDED = {
    "source": "zaptec",
    "session_key": "S-1",
    "provider": "zaptec",
    "status": "ended",
    "charger_id": ZAPTEC_CHARGER,
    # Both calls name the installation (a Zaptec site): tariffs can be assigned to it.
    "installation_id": "7f2e9c41-0d3b-4a68-b5e1-93c7d2a8f6e0",
    "evse_id": None,
    "connector_id": None,
    "token": "RFID-04A1B2C3",
    "user_id": "c0b5e8a2-41d7-4f93-8e26-5a1f0c9d3b77",
    "external_id": None,
    "started_at": at("2025-12-04T12:02:37Z"),
    "ended_at": at("2025-12-04T14:10:05Z"),
    "energy_kwh": "12.345",
    "cost": None,
    "cost_excl_vat": None,
    "currency": None,
    "flags": [],
    "last_occurred_at": at("2025-12-04T14:10:09Z"),  # when the end was received
    "cost_components": None,
    "plate": None,
}


def test_zaptec_start_then_end_is_one_ended_session(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    start, end = zaptec_session(Inbox(), {"SessionId": "S-1"})
    process(conn, dialect, [start])
    [active] = rows(conn, dialect, "charging_sessions")
    assert stable(active) == {
        **ZAPTEC_ENDED,
        "status": "active",
        "ended_at": None,
        "energy_kwh": None,
        "event_ids": [start.id],
        "last_occurred_at": start.received_at,
    }
    process(conn, dialect, [end])
    [ended] = rows(conn, dialect, "charging_sessions")
    assert stable(ended) == {**ZAPTEC_ENDED, "event_ids": [start.id, end.id]}
    assert ended["id"] == active["id"]


def test_zaptec_end_before_its_start_gives_the_same_row(lite: Any) -> None:
    start, end = zaptec_session(Inbox(), {"SessionId": "S-1"})
    process(lite, "sqlite", [end, start])
    [row] = rows(lite, "sqlite", "charging_sessions")
    assert stable(row) == {**ZAPTEC_ENDED, "event_ids": [start.id, end.id]}


@pytest.mark.parametrize("order", ["start first", "end first"])
def test_zaptec_end_naming_our_session_as_external_id(lite: Any, order: str) -> None:
    start, end = zaptec_session(Inbox(), {"SessionId": "Z-9001", "ExternalId": "S-1"})
    process(lite, "sqlite", [start, end] if order == "start first" else [end, start])
    [row] = rows(lite, "sqlite", "charging_sessions")
    assert row["status"] == "ended" and row["energy_kwh"] == "12.345"
    assert row["event_ids"] == [start.id, end.id]
    assert row["session_key"] in ("S-1", "Z-9001")


def test_a_denied_zaptec_start_is_no_session(lite: Any) -> None:
    denied = Inbox().event(
        "zaptec",
        fixture("zaptec", "start_camel"),
        "session-start",
        decision={"session_id": None, "result": "NOT_ALLOWED", "reasons": ["charger"]},
    )
    process(lite, "sqlite", [denied])
    assert rows(lite, "sqlite", "charging_sessions") == []


def test_an_unmatched_end_is_flagged_until_its_start_turns_up(lite: Any) -> None:
    inbox = Inbox()
    start, end = zaptec_session(inbox, {"SessionId": "S-1"})
    unmatched = inbox.event(
        "zaptec",
        {**fixture("zaptec", "end_pascal"), "SessionId": "S-1"},
        "session-end",
        received_at=end.received_at,
        flags=("unmatched",),
    )
    process(lite, "sqlite", [unmatched])
    [row] = rows(lite, "sqlite", "charging_sessions")
    assert row["flags"] == ["unmatched"] and row["status"] == "ended"
    process(lite, "sqlite", [start])  # a late audit of the start heals it
    [row] = rows(lite, "sqlite", "charging_sessions")
    assert row["flags"] == [] and row["status"] == "ended"


# -- AMPECO sessions ------------------------------------------------------------------

SESSION = 184210
# session_sequence(184210, ...): 10 320 Wh over an hour (184210 % 97 = 7), meter start
# 3 460 000 Wh, user 5210; EUR 1.00 connection + 0.39/kWh incl. 20 % VAT, rounded per part.
AMPECO_ENDED = {
    "source": "ampeco",
    "session_key": "184210",
    "provider": "ampeco",
    "status": "ended",
    "charger_id": "117",
    "installation_id": None,
    "evse_id": "341",
    "connector_id": "1",
    "token": "04A1B2C3D40000",
    "user_id": "5210",
    "external_id": None,
    "started_at": at("2025-12-04T12:00:00Z"),
    "ended_at": at("2025-12-04T13:00:00Z"),
    "energy_kwh": "10.32",
    "cost": "5.02",  # 1.00 + round(0.39 * 10.32, 2)
    "cost_excl_vat": "4.18",  # 0.83 + 3.35
    "currency": "EUR",
    "flags": [],
    "last_occurred_at": at("2025-12-04T13:00:00Z"),
    "cost_components": None,
    "plate": None,
}


def meter_rows(minute: int, register_kwh: str, temperature: str) -> list[dict[str, Any]]:
    moment = BASE + timedelta(minutes=minute)
    values = [
        ("Current Import", "15.9", "A"),
        ("Current Offered", "16", "A"),
        ("Energy Active Import Register", register_kwh, "kWh"),
        ("Temperature", temperature, "Celsius"),
        ("Voltage", "230.4", "V"),
    ]
    return [
        {
            "source": "ampeco",
            "session_key": "184210",
            "at": moment,
            "measurand": measurand,
            "phase": "",
            "value": value,
            "unit": unit,
        }
        for measurand, value, unit in values
    ]


# Register: 3 460 000 Wh + 10 320 * minute // 55.
AMPECO_METERS = [
    *meter_rows(15, "3462.814", "31.5"),
    *meter_rows(30, "3465.629", "33"),
    *meter_rows(45, "3468.443", "34.5"),
]


def ampeco_sequence(inbox: Inbox) -> list[StoredEvent]:
    """start, 3 meter values, update (active), update (finished), stop, CDR."""
    return [
        inbox.event("ampeco", doc) for doc in session_sequence(SESSION, 117, 341, "04A1B2C3D40000")
    ]


def session_view(conn: Any, dialect: Dialect) -> dict[str, Any]:
    [row] = rows(conn, dialect, "charging_sessions")
    return stable(row)


def meter_view(conn: Any, dialect: Dialect) -> list[dict[str, Any]]:
    found = [
        {k: v for k, v in r.items() if k != "event_id"} for r in rows(conn, dialect, "meter_values")
    ]
    return sorted(found, key=lambda r: (r["at"], r["measurand"]))


def test_ampeco_session_from_start_to_cdr(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    events = ampeco_sequence(Inbox())
    process(conn, dialect, events[:5])  # start, meter values, the active update
    assert (
        session_view(conn, dialect)
        == {
            **AMPECO_ENDED,
            "status": "active",
            "ended_at": None,
            "energy_kwh": "8.443",  # 10 320 * 45 // 55 Wh
            "cost": "4.29",  # 1.00 + round(0.39 * 8.443, 2)
            "cost_excl_vat": "3.57",  # 0.83 + 2.74
            "event_ids": [e.id for e in events[:5]],
            "last_occurred_at": at("2025-12-04T12:45:30Z"),
        }
    )
    process(conn, dialect, events[5:])
    assert session_view(conn, dialect) == {**AMPECO_ENDED, "event_ids": [e.id for e in events[:7]]}
    assert meter_view(conn, dialect) == AMPECO_METERS
    [cdr] = rows(conn, dialect, "provider_refs")
    assert stable(cdr) == {
        "source": "ampeco",
        "kind": "cdr",
        "ref_id": "DE-AMP-0000184210",
        "action": "received",
        "first_seen_at": events[7].received_at,
        "last_occurred_at": at("2025-12-04T13:01:00Z"),
        "last_event_id": events[7].id,
        "event_ids": [events[7].id],
    }


def test_the_deprecated_stop_alone_makes_an_ended_session(lite: Any) -> None:
    stop = Inbox().event("ampeco", fixture("ampeco", "SessionStartStopNotification"))
    process(lite, "sqlite", [stop])
    assert session_view(lite, "sqlite") == {
        **AMPECO_ENDED,
        "connector_id": None,
        "user_id": None,  # the deprecated stop never names the user
        "cost": None,
        "cost_excl_vat": None,
        "currency": None,
        "event_ids": [stop.id],
    }


def test_energy_never_decreases_but_a_newer_cost_wins(lite: Any) -> None:
    inbox = Inbox()
    finished = session_sequence(SESSION, 117, 341, "04A1B2C3D40000")[5]
    corrected = json.loads(json.dumps(finished))
    corrected["session"].update(energy=10000, lastUpdatedAt="2025-12-04T13:30:00Z")
    corrected["session"]["totalAmount"] = {"withTax": 4.9, "withoutTax": 4.08}
    process(lite, "sqlite", [inbox.event("ampeco", finished), inbox.event("ampeco", corrected)])
    row = session_view(lite, "sqlite")
    assert (row["energy_kwh"], row["cost"], row["cost_excl_vat"]) == ("10.32", "4.9", "4.08")


_PLAN = st.lists(st.integers(0, 7), min_size=0, max_size=4)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(8)), repeats=_PLAN, resent=_PLAN)
def test_ampeco_session_view_does_not_depend_on_order_or_duplicates(
    order: list[int], repeats: list[int], resent: list[int]
) -> None:
    inbox = Inbox()
    events = ampeco_sequence(inbox)
    bodies = session_sequence(SESSION, 117, 341, "04A1B2C3D40000")
    # Processed again (a replay), and sent again as new events (re-serialised bodies).
    again = [events[i] for i in repeats]
    copies = [inbox.event("ampeco", json.loads(json.dumps(bodies[i], indent=1))) for i in resent]
    schedule = [events[i] for i in order] + again + copies
    with tempfile.TemporaryDirectory() as tmp, sqlite_db(Path(tmp) / "v.db") as conn:
        process(conn, "sqlite", schedule)
        session_ids = sorted(
            {e.id for e in events[:7]} | {c.id for c in copies if c.event_type != "cdr.received"}
        )
        assert session_view(conn, "sqlite") == {**AMPECO_ENDED, "event_ids": session_ids}
        assert meter_view(conn, "sqlite") == AMPECO_METERS
        [cdr] = rows(conn, "sqlite", "provider_refs")
        assert cdr["action"] == "received"
        assert cdr["event_ids"] == sorted(
            {events[7].id} | {c.id for c in copies if c.event_type == "cdr.received"}
        )


def test_processing_everything_again_changes_nothing(lite: Any) -> None:
    inbox = Inbox()
    events = [
        *ampeco_sequence(inbox),
        *zaptec_session(inbox, {"SessionId": "S-1"}),
        *charge_point_events(inbox),
        inbox.event("easypark", fixture("easypark", "inconsistent")),
        *[inbox.event("ztlment", fixture("ztlment", s)) for s in ("PENDING_APPROVAL", "PROCESSED")],
        inbox.event("ztlment", fixture("ztlment", "PENDING_SIGNING")),
        inbox.event("ampeco", fixture("ampeco", "transaction.changed")),
    ]
    process(lite, "sqlite", events)
    before = dump(lite, "sqlite")
    process(lite, "sqlite", events)
    assert dump(lite, "sqlite") == before
    assert all(before[table] for table in VIEWS)


# -- charge points and EVSEs ----------------------------------------------------------


def charge_point_events(inbox: Inbox) -> list[StoredEvent]:
    """Boot 12:00, the full resource 12:01, the EVSE charging 12:02, network 12:03,
    thin changes 12:04; then a network report from 11:00 that arrives late."""
    full = fixture("ampeco", "ChargePointChangedNotification")
    full["lastUpdatedAt"] = "2025-12-04T12:01:00Z"
    late_network = {**fixture("ampeco", "NetworkStatusNotification")}
    late_network.update(timestamp="2025-12-04T11:00:00Z", networkStatus="temporarily unavailable")
    return [
        inbox.event("ampeco", fixture("ampeco", "BootNotification")),
        inbox.event("ampeco", full),
        inbox.event(
            "ampeco",
            {
                **fixture("ampeco", "HardwareStatusNotification"),
                "timestamp": "2025-12-04T12:02:00Z",
            },
        ),
        inbox.event(
            "ampeco",
            {**fixture("ampeco", "NetworkStatusNotification"), "timestamp": "2025-12-04T12:03:00Z"},
        ),
        inbox.event(
            "ampeco",
            {**fixture("ampeco", "chargePoint.changed"), "lastUpdatedAt": "2025-12-04T12:04:00Z"},
        ),
        inbox.event(
            "ampeco", {**fixture("ampeco", "evse.changed"), "lastUpdatedAt": "2025-12-04T12:04:00Z"}
        ),
        inbox.event("ampeco", late_network),
    ]


def test_charge_point_and_evse_keep_their_latest_status(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    events = charge_point_events(Inbox())
    process(conn, dialect, events)
    [cp] = rows(conn, dialect, "charge_points")
    assert stable(cp) == {
        "source": "ampeco",
        "charge_point_id": "117",
        "name": "Alexanderplatz P1 #117",
        "vendor": "ABB",
        "model": "Terra AC W22-T-RD-M-0",
        "serial_number": "TACW2242000000",
        "firmware_version": "1.8.27",
        "network_status": "available",  # the 11:00 report came late and changed nothing
        "hardware_status": "available",
        "status": "active",
        "location_id": "23",
        "last_boot_at": at("2025-12-04T12:00:00Z"),
        "deleted": False,
        "last_event_type": "chargePoint.changed",
        "last_action": "updated",
        "last_event_id": events[4].id,
        "last_occurred_at": at("2025-12-04T12:04:00Z"),
    }
    [evse] = rows(conn, dialect, "evses")
    assert stable(evse) == {
        "source": "ampeco",
        "evse_id": "341",
        "charge_point_id": "117",
        "status": "active",
        "hardware_status": "charging",
        "connectors": [{"id": 3411, "status": "active", "type": "type2", "format": "socket"}],
        "max_power_kw": "22",
        "deleted": False,
        "last_event_type": "evse.changed",
        "last_action": "updated",
        "last_event_id": events[5].id,
        "last_occurred_at": at("2025-12-04T12:04:00Z"),
    }


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(7)))
def test_charge_point_view_does_not_depend_on_order(order: list[int]) -> None:
    events = charge_point_events(Inbox())
    views = []
    for schedule in (events, [events[i] for i in order]):
        with tempfile.TemporaryDirectory() as tmp, sqlite_db(Path(tmp) / "v.db") as conn:
            process(conn, "sqlite", schedule)
            views.append(
                [
                    stable(r)
                    for r in rows(conn, "sqlite", "charge_points") + rows(conn, "sqlite", "evses")
                ]
            )
    assert views[0] == views[1]


def test_a_deleted_evse_is_marked(lite: Any) -> None:
    inbox = Inbox()
    gone = {
        **fixture("ampeco", "evse.changed"),
        "action": "deleted",
        "lastUpdatedAt": "2025-12-04T13:00:00Z",
    }
    process(lite, "sqlite", [*charge_point_events(inbox), inbox.event("ampeco", gone)])
    [evse] = rows(lite, "sqlite", "evses")
    assert (evse["deleted"], evse["last_action"], evse["hardware_status"]) == (
        True,
        "deleted",
        "charging",
    )


# -- EasyPark -------------------------------------------------------------------------


def test_parking_transactions_keep_decimals_and_the_consistency_flag(
    db: tuple[Any, Dialect],
) -> None:
    conn, dialect = db
    inbox = Inbox()
    bad = inbox.event("easypark", fixture("easypark", "inconsistent"))
    legacy = inbox.event("easypark", fixture("easypark", "legacy"))
    process(conn, dialect, [bad, legacy, bad])
    found = {r["parking_id"]: stable(r) for r in rows(conn, dialect, "parking_transactions")}
    assert found == {
        "2791402215": {
            "source": "easypark",
            "parking_id": "2791402215",
            "event_id": bad.id,
            "license_number": "XYZ789",
            "parking_user_id": "8993734",
            "started_at": at("2025-12-04T15:30:00Z"),
            "ended_at": at("2025-12-04T16:05:41Z"),
            "area_id": "291048",
            "area_name": "Nyköpings lasarett, besökande",
            "operator_id": "403",
            "operator_name": "EuroPark Svenska AB",
            "currency": "SEK",
            "price": "22.45",
            "price_vat": "4.49",
            "price_excl_vat": "19.96",  # 19.96 + 4.49 = 24.45, not 22.45
            "fee": "4.95",
            "fee_vat": "0.99",
            "fee_excl_vat": "3.96",
            "consistent": False,
            "flags": ["price_inconsistent"],
            "received_at": bad.received_at,
            "plate": "XYZ789",
        },
        "2790114207": {
            "source": "easypark",
            "parking_id": "2790114207",
            "event_id": legacy.id,
            "license_number": "KLM45P",
            "parking_user_id": None,
            "started_at": at("2025-12-03T08:15:00Z"),  # 09:15 at +01
            "ended_at": at("2025-12-03T10:47:12Z"),
            "area_id": "118202",
            "area_name": "Stockholm Centralstation P-hus",
            "operator_id": "17",
            "operator_name": "Q-Park AB",
            "currency": "SEK",
            "price": "118.75",
            "price_vat": "23.75",
            "price_excl_vat": "95.0",
            "fee": "4.95",
            "fee_vat": "0.99",
            "fee_excl_vat": "3.96",
            "consistent": True,
            "flags": ["legacy_feed"],
            "received_at": legacy.received_at,
            "plate": "KLM45P",
        },
    }


# -- ZTLment --------------------------------------------------------------------------

ARRIVALS = [
    "PENDING_COMPLIANCE_CHECKS",
    "PENDING_APPROVAL",
    "PENDING_SIGNING",
    "PROCESSED",
    "PENDING_PAYMENT",
    "INITIATED_PAYMENT",
    "PROCESSING_PAYMENT",
]


def payment_events(inbox: Inbox, states: list[str]) -> list[StoredEvent]:
    return [inbox.event("ztlment", fixture("ztlment", state)) for state in states]


def history(conn: Any, dialect: Dialect) -> list[tuple[str, bool, bool]]:
    found = rows(conn, dialect, "payment_states")
    return [
        (r["state"], r["applied"], r["out_of_order"])
        for r in sorted(found, key=lambda r: r["event_id"])
    ]


PAYMENT_HISTORY = [
    ("PENDING_COMPLIANCE_CHECKS", True, False),
    ("PENDING_APPROVAL", True, False),
    ("PENDING_SIGNING", True, False),
    ("PROCESSED", True, False),
    ("PENDING_PAYMENT", False, True),
    ("INITIATED_PAYMENT", False, True),
    ("PROCESSING_PAYMENT", False, True),
]


def test_a_late_pending_state_never_overwrites_processed(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    events = payment_events(Inbox(), ARRIVALS)
    process(conn, dialect, events)
    [payment] = rows(conn, dialect, "payment_objects")
    assert stable(payment) == {
        "source": "ztlment",
        "object_type": "payment",
        "object_id": "48213",
        "state": "PROCESSED",
        "final": True,
        "flags": ["out_of_order"],
        "first_seen_at": events[0].received_at,
        "last_event_id": events[3].id,
    }
    assert payment["updated_at"] == events[3].received_at
    assert history(conn, dialect) == PAYMENT_HISTORY


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(7)), repeats=st.lists(st.integers(0, 6), max_size=3))
def test_payment_view_reads_the_history_in_arrival_order(
    order: list[int], repeats: list[int]
) -> None:
    events = payment_events(Inbox(), ARRIVALS)
    with tempfile.TemporaryDirectory() as tmp, sqlite_db(Path(tmp) / "v.db") as conn:
        process(conn, "sqlite", [events[i] for i in order] + [events[i] for i in repeats])
        [payment] = rows(conn, "sqlite", "payment_objects")
        assert (payment["state"], payment["flags"], payment["last_event_id"]) == (
            "PROCESSED",
            ["out_of_order"],
            events[3].id,
        )
        assert history(conn, "sqlite") == PAYMENT_HISTORY


def test_a_reversal_follows_processed_and_a_second_final_state_is_a_conflict(lite: Any) -> None:
    inbox = Inbox()
    events = payment_events(inbox, ["PENDING_PAYMENT", "PROCESSED", "FAILED", "REVERSED"])
    process(lite, "sqlite", events)
    [payment] = rows(lite, "sqlite", "payment_objects")
    assert (payment["state"], payment["final"], payment["flags"]) == (
        "REVERSED",
        True,
        ["conflicting_final"],
    )
    assert history(lite, "sqlite") == [
        ("PENDING_PAYMENT", True, False),
        ("PROCESSED", True, False),
        ("FAILED", False, False),
        ("REVERSED", True, False),
    ]


def test_unknown_states_are_kept_and_flagged(lite: Any) -> None:
    inbox = Inbox()
    unknown = inbox.event("ztlment", fixture("ztlment", "unknown_state"))
    approval = inbox.event("ztlment", fixture("ztlment", "approval_object"))
    process(lite, "sqlite", [unknown, approval])
    found = {r["object_type"]: stable(r) for r in rows(lite, "sqlite", "payment_objects")}
    assert found["payment"] == {
        "source": "ztlment",
        "object_type": "payment",
        "object_id": "48214",
        "state": "PENDING_FX_SETTLEMENT",
        "final": False,
        "flags": ["unknown_state"],
        "first_seen_at": unknown.received_at,
        "last_event_id": unknown.id,
    }
    assert (found["approval"]["object_id"], found["approval"]["state"]) == (
        "9120",
        "PENDING_APPROVAL",
    )
    [state] = rows(lite, "sqlite", "payment_states", object_id="48214")
    assert (state["known"], state["state_rank"], state["applied"]) == (False, None, True)


# -- thin references ------------------------------------------------------------------


def test_transaction_references_keep_the_latest_action(lite: Any) -> None:
    inbox = Inbox()
    created = fixture("ampeco", "transaction.changed")
    updated = {**created, "action": "updated", "lastUpdatedAt": "2025-12-04T12:05:00Z"}
    first, second = inbox.event("ampeco", updated), inbox.event("ampeco", created)
    process(lite, "sqlite", [first, second, first])
    [ref] = rows(lite, "sqlite", "provider_refs")
    assert stable(ref) == {
        "source": "ampeco",
        "kind": "transaction",
        "ref_id": "448200",
        "action": "updated",  # the created notice arrived late
        "first_seen_at": first.received_at,
        "last_occurred_at": at("2025-12-04T12:05:00Z"),
        "last_event_id": first.id,
        "event_ids": [first.id, second.id],
    }


def test_events_without_view_facts_write_nothing(lite: Any) -> None:
    inbox = Inbox()
    events = [
        inbox.event("ampeco", fixture("ampeco", name))
        for name in ("UserChangedNotification", "TariffChangedNotification", "idTag.changed")
    ]
    process(lite, "sqlite", events)
    assert all(not found for found in dump(lite, "sqlite").values())


# -- facts at the edges ---------------------------------------------------------------


def facts_of(event: StoredEvent) -> list[Any]:
    receiver, _ = PROVIDERS[event.provider]
    return receiver.facts(event)


def test_facts_at_the_edges() -> None:
    inbox = Inbox()
    hardware = fixture("ampeco", "HardwareStatusNotification")
    del hardware["evseId"]
    [cp] = facts_of(inbox.event("ampeco", {**hardware, "hardwareStatus": "faulted"}))
    assert (cp.charge_point_id, cp.hardware_status, cp.evses) == ("117", "faulted", ())

    boot = fixture("ampeco", "BootNotification")
    del boot["chargePointId"]
    assert facts_of(inbox.event("ampeco", boot)) == []

    update = session_sequence(SESSION, 117, 341, "04A1B2C3D40000")[4]
    update["session"]["status"] = "failed"
    [failed] = facts_of(inbox.event("ampeco", update))
    assert (failed.status, failed.flags, failed.ended_at) == ("ended", ("session_failed",), None)

    meters = fixture("ampeco", "SessionMeterValuesNotification")
    meters["meterValues"] = [
        {
            "timestamp": "2025-12-04T12:30:00Z",
            "measurand": "Energy.Active.Import.Register",
            "value": 3465629,
            "unit": "Wh",
        },
        {
            "timestamp": "2025-12-04T12:31:00Z",
            "measurand": "Energy Active Import Register",
            "value": 3465.7,
            "unit": "kWh",
        },
        {"timestamp": "2025-12-04T12:32:00Z", "measurand": "Voltage", "value": None},
    ]
    session, *samples = facts_of(inbox.event("ampeco", meters))
    assert session.occurred_at == at("2025-12-04T12:31:00Z") and session.status is None
    assert [(s.value, s.unit) for s in samples] == [("3465.629", "kWh"), ("3465.7", "kWh")]

    unknown = inbox.event("ampeco", {"notification": "brandNew.thing", "id": 1})
    assert unknown.flags == ["unknown_type"] and facts_of(unknown) == []
    settlement = inbox.event("ampeco", fixture("ampeco", "settlementReport.created"))
    assert facts_of(settlement) == []

    quarantined = StoredEvent(
        id=floor_id(BASE),
        source="easypark",
        provider="easypark",
        event_type="invalid",
        received_at=BASE,
        subject=None,
        status="quarantined",
        flags=["schema_invalid"],
        document=None,
    )
    assert facts_of(quarantined) == []
