"""View rows written straight into a migrated SQLite file, with defaults for the NOT NULL
columns, so listing and export tests need no processing step."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hookgate.ids import new_id
from hookgate.store.viewtx import SqlViewTx

T0 = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)


def _defaults(table: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    if table == "charging_sessions":
        return {
            "source": "ampeco",
            "provider": "ampeco",
            "status": "ended",
            "flags": [],
            "event_ids": [],
            "versions": {},
            "updated_at": now,
        }
    if table == "parking_transactions":
        return {
            "source": "easypark",
            "event_id": new_id(),
            "license_number": "ABC123",
            "started_at": T0,
            "ended_at": T0,
            "currency": "SEK",
            "price": "100.00",
            "price_vat": "20.00",
            "price_excl_vat": "80.00",
            "consistent": True,
            "flags": [],
            "received_at": now,
        }
    if table == "payment_objects":
        return {
            "source": "ztlment",
            "object_type": "payment",
            "state": "PENDING_PAYMENT",
            "final": False,
            "flags": [],
            "first_seen_at": now,
            "updated_at": now,
            "last_event_id": new_id(),
        }
    if table == "charge_points":
        return {
            "source": "ampeco",
            "deleted": False,
            "last_event_id": new_id(),
            "versions": {},
            "updated_at": now,
        }
    if table == "evses":
        return {
            "source": "ampeco",
            "deleted": False,
            "last_event_id": new_id(),
            "versions": {},
            "updated_at": now,
        }
    if table == "payment_states":
        return {
            "source": "ztlment",
            "object_type": "payment",
            "received_at": now,
            "final": False,
            "known": True,
            "applied": True,
            "out_of_order": False,
        }
    if table == "meter_values":
        return {"source": "ampeco", "phase": "", "event_id": new_id()}
    return {}


def seed(db: Path | str, table: str, **row: Any) -> dict[str, Any]:
    """Insert one row (an `id` is made when the table has one); returns the row. `db` is
    a SQLite file or a storage URL of either backend."""
    full = {**_defaults(table), **row}
    if table not in ("meter_values", "payment_states") and "id" not in full:
        full["id"] = new_id()
    if isinstance(db, str) and db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as pg:
            assert SqlViewTx(pg, "postgresql").insert(table, full)
        return full
    path = db.removeprefix("sqlite:///") if isinstance(db, str) else db
    conn = sqlite3.connect(path)
    try:
        assert SqlViewTx(conn, "sqlite").insert(table, full)
        conn.commit()
    finally:
        conn.close()
    return full
