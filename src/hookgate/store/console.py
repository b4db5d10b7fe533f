"""What the operator console reads that no other caller needs: why processing of an event
failed, and when it was processed; one authorization decision by its id; the signed-out
sessions every instance refuses (migration 0015). Written once for both backends over a
DB-API connection, run through `Store.sql_read` and `Store.sql_write`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from hookgate.domain.decisions import DecisionRecord
from hookgate.store.alerting import dialect_of, transaction
from hookgate.store.authz import decision_row
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
    reasons, decided_at = row["reasons"], row["decided_at"]
    # The one decision record authz makes, from this connection's own column types.
    return decision_row(
        {
            **row,
            "decided_at": decided_at if isinstance(decided_at, str) else iso(decided_at),
            "reasons": reasons
            if isinstance(reasons, str | bytes)
            else msgspec.json.encode(reasons),
        }
    )


def revoke(conn: Any, nonce: str, expires_at: datetime) -> None:
    """Refuse the session with this nonce everywhere until `expires_at`."""
    d = DIALECTS[dialect_of(conn)]
    with transaction(conn):
        conn.execute(
            d.sql(
                "INSERT INTO console_revocations (nonce, expires_at) VALUES (?, ?) "
                "ON CONFLICT (nonce) DO NOTHING"
            ),
            (nonce, d.instant(expires_at)),
        )


def revoked(conn: Any, nonce: str) -> bool:
    """Whether the session with this nonce was signed out (on any instance)."""
    cursor = conn.cursor()
    cursor.execute(
        DIALECTS[dialect_of(conn)].sql("SELECT 1 FROM console_revocations WHERE nonce = ?"),
        (nonce,),
    )
    return cursor.fetchone() is not None
