"""SqlViewTx and the view listings against real migrated databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hookgate.domain.errors import BadCursor
from hookgate.domain.queries import ViewFilter
from hookgate.ids import floor_id, new_id
from hookgate.store.viewtx import (
    Dialect,
    SqlViewTx,
    cursor_value,
    decode_row,
    encode_row,
    export_sql,
    fetch_page,
    fetch_rows,
    list_sql,
    page_cursor,
)
from support.viewdb import database, transaction

T0 = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Dialect]]:
    dialect: Dialect = request.param
    with database(dialect, tmp_path) as conn:
        yield conn, dialect


def session_row(key: str, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "source": "ampeco",
        "session_key": key,
        "id": new_id(),
        "provider": "ampeco",
        "status": "active",
        "charger_id": "117",
        "started_at": T0,
        "energy_kwh": "10.32",
        "flags": [],
        "event_ids": ["E1"],
        "versions": {"charger_id": "x|E1"},
        "updated_at": T0 + timedelta(minutes=1),
    }
    row.update(extra)
    return row


def test_a_row_comes_back_with_its_python_types(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    with transaction(conn, dialect):
        tx.upsert("charging_sessions", session_row("184210", flags=["unmatched"]))
    row = tx.get("charging_sessions", {"source": "ampeco", "session_key": "184210"})
    assert row is not None
    assert row["started_at"] == T0 and row["started_at"].tzinfo is not None
    assert row["ended_at"] is None
    assert row["flags"] == ["unmatched"]
    assert row["versions"] == {"charger_id": "x|E1"}
    assert row["energy_kwh"] == "10.32"
    assert tx.get("charging_sessions", {"source": "ampeco", "session_key": "nope"}) is None


def test_booleans_and_integers_round_trip(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    state = {
        "event_id": new_id(),
        "source": "ztlment",
        "object_type": "payment",
        "object_id": "48213",
        "state": "PROCESSED",
        "state_rank": 7,
        "final": True,
        "known": True,
        "received_at": T0,
        "applied": False,
        "out_of_order": True,
    }
    with transaction(conn, dialect):
        assert tx.insert("payment_states", state)
    assert tx.get("payment_states", {"event_id": state["event_id"]}) == state


def test_insert_keeps_the_existing_row(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    first = session_row("1")
    with transaction(conn, dialect):
        assert tx.insert("charging_sessions", first) is True
        assert tx.insert("charging_sessions", session_row("1", status="ended")) is False
    row = tx.get("charging_sessions", {"source": "ampeco", "session_key": "1"})
    assert row is not None and row["status"] == "active" and row["id"] == first["id"]


def test_upsert_updates_only_the_given_columns(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    with transaction(conn, dialect):
        tx.upsert("charging_sessions", session_row("1"))
        tx.upsert(
            "charging_sessions",
            {"source": "ampeco", "session_key": "1", "status": "ended", "ended_at": T0},
        )
    row = tx.get("charging_sessions", {"source": "ampeco", "session_key": "1"})
    assert row is not None
    assert (row["status"], row["ended_at"], row["charger_id"]) == ("ended", T0, "117")


def test_a_failed_transaction_leaves_nothing(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    with pytest.raises(RuntimeError), transaction(conn, dialect):
        tx.upsert("charging_sessions", session_row("1"))
        raise RuntimeError("handler failed")
    assert tx.get("charging_sessions", {"source": "ampeco", "session_key": "1"}) is None


def test_select_filters_orders_and_limits(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    with transaction(conn, dialect):
        for n in range(5):
            tx.upsert(
                "charging_sessions",
                session_row(
                    str(n),
                    external_id=None if n % 2 else f"x{n}",
                    started_at=T0 + timedelta(minutes=n),
                ),
            )
    found = tx.select("charging_sessions", {"source": "ampeco", "external_id": "x2"})
    assert [r["session_key"] for r in found] == ["2"]
    nulls = tx.select("charging_sessions", {"external_id": None}, order_by="started_at desc")
    assert [r["session_key"] for r in nulls] == ["3", "1"]
    first = tx.select("charging_sessions", {}, order_by="started_at", limit=2)
    assert [r["session_key"] for r in first] == ["0", "1"]


@pytest.mark.parametrize(
    "call",
    [
        lambda tx: tx.get("inbox", {"id": "1"}),
        lambda tx: tx.get("charging_sessions", {"source": "a"}),
        lambda tx: tx.upsert("charging_sessions", {"source": "a", "session_key": "b", "x; --": 1}),
        lambda tx: tx.select("charging_sessions", {"status = status OR 1": 1}),
        lambda tx: tx.select("charging_sessions", {}, order_by="id; DROP TABLE inbox"),
        lambda tx: tx.select("charging_sessions", {"flags": []}),
        lambda tx: tx.insert("charging_sessions", {"source": "a", "status": "active"}),
    ],
)
def test_unknown_names_never_reach_sql(db: tuple[Any, Dialect], call: Any) -> None:
    conn, dialect = db
    with pytest.raises((KeyError, ValueError)):
        call(SqlViewTx(conn, dialect))


def test_encode_and_decode_for_the_api() -> None:
    row = {"source": "s", "kind": "cdr", "ref_id": "R", "first_seen_at": T0, "event_ids": ["E"]}
    encoded = encode_row("provider_refs", row, "sqlite")
    assert encoded["first_seen_at"] == "2025-12-04T12:00:00.000000Z"
    assert encoded["event_ids"] == '["E"]'
    assert decode_row("provider_refs", encoded, "sqlite") == row
    api = decode_row("provider_refs", encoded, "sqlite", for_api=True)
    assert api["first_seen_at"] == "2025-12-04T12:00:00.000000Z"
    assert api["event_ids"] == ["E"]
    with pytest.raises(TypeError):
        encode_row("provider_refs", {"first_seen_at": "2025-12-04"}, "sqlite")


def refs(tx: SqlViewTx, count: int) -> list[str]:
    ids = []
    for n in range(count):
        ids.append(floor_id(T0 + timedelta(minutes=n)))
        tx.insert(
            "provider_refs",
            {
                "source": "ampeco",
                "kind": "cdr" if n % 2 else "transaction",
                "ref_id": f"R{n}",
                "id": ids[n],
                "action": "received",
                "first_seen_at": T0 + timedelta(minutes=n),
                "last_occurred_at": T0 + timedelta(minutes=n),
                "last_event_id": f"E{n}",
                "event_ids": [f"E{n}"],
            },
        )
    return ids


def test_listing_pages_newest_first(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    with transaction(conn, dialect):
        ids = refs(tx, 5)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        page = fetch_page(conn, "provider_refs", ViewFilter(), cursor, 2, dialect)
        seen += [item["id"] for item in page.items]
        assert all(isinstance(item["first_seen_at"], str) for item in page.items)
        cursor = page.next
        if cursor is None:
            break
    assert seen == ids[::-1]

    cdrs = fetch_page(conn, "provider_refs", ViewFilter(equal={"kind": "cdr"}), None, 10, dialect)
    assert [item["ref_id"] for item in cdrs.items] == ["R3", "R1"] and cdrs.next is None
    ranged = ViewFilter(
        time_column="first_seen_at",
        since=T0 + timedelta(minutes=1),
        until=T0 + timedelta(minutes=3),
    )
    assert [r["ref_id"] for r in fetch_rows(conn, "provider_refs", ranged, dialect)] == ["R1", "R2"]


def test_meter_values_page_by_time(db: tuple[Any, Dialect]) -> None:
    conn, dialect = db
    tx = SqlViewTx(conn, dialect)
    with transaction(conn, dialect):
        for minute in range(3):
            for measurand in ("Voltage", "Energy.Active.Import.Register"):
                tx.insert(
                    "meter_values",
                    {
                        "source": "ampeco",
                        "session_key": "184210",
                        "at": T0 + timedelta(minutes=minute),
                        "measurand": measurand,
                        "phase": "",
                        "value": str(minute),
                        "unit": "V",
                        "event_id": "E",
                    },
                )
    seen: list[tuple[str, str]] = []
    cursor = None
    while True:
        page = fetch_page(conn, "meter_values", ViewFilter(), cursor, 4, dialect)
        seen += [(item["at"][14:16], item["measurand"][0]) for item in page.items]
        cursor = page.next
        if cursor is None:
            break
    assert seen == [("02", "V"), ("02", "E"), ("01", "V"), ("01", "E"), ("00", "V"), ("00", "E")]
    oldest = fetch_rows(conn, "meter_values", ViewFilter(equal={"session_key": "184210"}), dialect)
    assert [r["at"][14:16] for r in oldest] == ["00", "00", "01", "01", "02", "02"]


def test_cursors_are_checked() -> None:
    row = {"id": new_id()}
    assert cursor_value("evses", page_cursor("evses", row)) == row["id"]
    meter = {"at": T0, "source": "s", "session_key": "k", "measurand": "m", "phase": ""}
    assert cursor_value("meter_values", page_cursor("meter_values", meter)).startswith('["2025')
    for bad in ("!!!", "YWJj", page_cursor("evses", {"id": "short"})):
        with pytest.raises(BadCursor):
            cursor_value("evses", bad)
    with pytest.raises(BadCursor):
        cursor_value("meter_values", page_cursor("evses", row))


def test_listing_sql_is_parameterised() -> None:
    where = ViewFilter(equal={"token": "AB'C"}, time_column="started_at", since=T0)
    sql, params = list_sql("charging_sessions", where, "01J0000000000000000000000A", 51, "sqlite")
    assert sql == (
        "SELECT * FROM charging_sessions WHERE token = ? AND started_at >= ? AND (id) < (?) "
        "ORDER BY id DESC LIMIT ?"
    )
    assert params == ["AB'C", "2025-12-04T12:00:00.000000Z", "01J0000000000000000000000A", 51]
    sql, params = export_sql("payment_states", ViewFilter(equal={"applied": True}), "postgresql")
    assert sql == "SELECT * FROM payment_states WHERE applied = %s ORDER BY event_id ASC"
    assert params == [True]
    with pytest.raises(KeyError):
        list_sql("charging_sessions", ViewFilter(time_column="token", since=T0), None, 5, "sqlite")
