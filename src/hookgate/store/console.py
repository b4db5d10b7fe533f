"""What the operator console reads that no other caller needs: why processing of an event
failed, and when it was processed. Written once for both backends over a DB-API
connection, run through `Store.sql_read`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hookgate.store.alerting import dialect_of
from hookgate.store.dialect import DIALECTS
from hookgate.timeutil import parse_iso


def processing_outcome(conn: Any, event_id: str) -> dict[str, Any] | None:
    """The processing error kept with an event (None when it has none) and when
    processing finished; None for an unknown id."""
    cursor = conn.cursor()
    cursor.execute(
        DIALECTS[dialect_of(conn)].sql("SELECT error, processed_at FROM inbox WHERE id = ?"),
        (event_id,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    error, processed_at = (row["error"], row["processed_at"]) if isinstance(row, Mapping) else row
    if isinstance(processed_at, str):
        processed_at = parse_iso(processed_at)
    elif isinstance(processed_at, datetime):
        processed_at = processed_at.astimezone(UTC)
    return {"error": error, "processed_at": processed_at}
