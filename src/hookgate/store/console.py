"""What the operator console reads that no other caller needs: why processing of an event
failed, and when it was processed; one authorization decision by its id. Written once for
both backends over a DB-API connection, run through `Store.sql_read`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from hookgate.domain.decisions import DecisionRecord
from hookgate.store.alerting import dialect_of
from hookgate.store.dialect import DIALECTS
from hookgate.timeutil import iso, parse_iso


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


def decision(conn: Any, decision_id: str) -> DecisionRecord | None:
    """The authorization decision with this id (None for an unknown id)."""
    cursor = conn.cursor()
    cursor.execute(
        DIALECTS[dialect_of(conn)].sql(
            "SELECT id, decided_at, source, event_id, charger_id, token, user_id, "
            "installation_id, result, reasons, session_id, fallback, latency_us "
            "FROM decisions WHERE id = ?"
        ),
        (decision_id,),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    if not isinstance(row, Mapping):
        row = dict(zip([d[0] for d in cursor.description], row, strict=True))
    reasons = row["reasons"]
    decided_at = row["decided_at"]
    return DecisionRecord(
        id=row["id"],
        decided_at=decided_at if isinstance(decided_at, str) else iso(decided_at),
        source=row["source"],
        event_id=row["event_id"],
        charger_id=row["charger_id"],
        token=row["token"],
        user_id=row["user_id"],
        installation_id=row["installation_id"],
        result=row["result"],
        reasons=msgspec.json.decode(reasons) if isinstance(reasons, str | bytes) else reasons,
        session_id=row["session_id"],
        fallback=bool(row["fallback"]),
        latency_us=row["latency_us"],
    )
