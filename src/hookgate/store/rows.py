"""Helpers shared by the backends: opaque pagination cursors, the dict shapes rows
take on their way out (identical for every backend), and statements both run (written
with `?` placeholders; `for_postgres` turns them into psycopg's)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import msgspec

from hookgate.domain.errors import BadCursor
from hookgate.domain.events import Rejection

DECISION_INSERT = (
    "INSERT INTO decisions (id, decided_at, source, event_id, charger_id, token, "
    "user_id, installation_id, result, reasons, session_id, fallback, latency_us) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The end may have been recorded first (a fallback answer audited late): the row exists
# as `unmatched`; it becomes the ended session it really was.
SESSION_UPSERT = (
    "INSERT INTO authorized_sessions (session_id, source, status, charger_id, "
    "token, decision_id, started_at, start_event_id, group_id, reserved_kwh) "
    "VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (source, session_id) DO UPDATE SET "
    "status = CASE WHEN authorized_sessions.status = 'unmatched' THEN 'ended' "
    "ELSE authorized_sessions.status END, "
    "charger_id = excluded.charger_id, token = coalesce(authorized_sessions.token, "
    "excluded.token), decision_id = excluded.decision_id, "
    "started_at = excluded.started_at, start_event_id = excluded.start_event_id, "
    "group_id = coalesce(authorized_sessions.group_id, excluded.group_id), "
    "reserved_kwh = excluded.reserved_kwh"
)


def for_postgres(sql: str) -> str:
    """A shared statement with psycopg's `%s` placeholders (the texts hold no other `?`)."""
    return sql.replace("?", "%s")


def encode_cursor(last_id: str) -> str:
    """An opaque token for 'rows older than this one'."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The row id inside a cursor; BadCursor when it is not one of ours."""
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None
    if not value.isalnum() or len(value) != 26:
        raise BadCursor("cursor is not valid")
    return value


def event_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An inbox row as callers see it (JSON columns decoded, timestamps as ISO text)."""
    return {
        "id": row["id"],
        "source": row["source"],
        "provider": row["provider"],
        "type": row["event_type"],
        "received_at": row["received_at"],
        "dedup_key": row["dedup_key"],
        "subject": row["subject"],
        "status": row["status"],
        "flags": msgspec.json.decode(row["flags"]),
        "headers": msgspec.json.decode(row["headers"]),
        "document": msgspec.json.decode(row["document"]) if row["document"] else None,
        "body_sha256": row["body_sha256"],
        "body_size": row["body_size"],
        "request_id": row["request_id"],
    }


def rejection_size(rejection: Rejection) -> int:
    """What a rejection record costs in storage, for the log's size cap."""
    return (
        len(rejection.body)
        + len(rejection.replay or b"")
        + len(rejection.detail)
        + len(rejection.path)
        + sum(len(k) + len(v) for k, v in rejection.headers.items())
    )


# Rejection records beyond the newest `max_bytes`, oldest first (both dialects).
TRIM_REJECTIONS = (
    "DELETE FROM rejections WHERE id IN (SELECT id FROM (SELECT id, sum(stored_bytes) "
    "OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS running FROM rejections) AS t "
    "WHERE running > ?)"
)
REJECTION_COUNTS = (
    "SELECT source, reason, sum(total) AS total, sum(recorded) AS recorded, "
    "sum(body_bytes) AS body_bytes, min(minute) AS first_minute, max(minute) AS last_minute "
    "FROM rejection_counts WHERE {where} GROUP BY source, reason "
    "ORDER BY sum(total) DESC, source, reason"
)


def rejection_count_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A (source, reason) sum of `rejection_counts` as callers see it."""
    total, recorded = int(row["total"]), int(row["recorded"])
    return {
        "source": row["source"],
        "reason": row["reason"],
        "total": total,
        "recorded": recorded,
        "unrecorded": total - recorded,
        "body_bytes": int(row["body_bytes"]),
        "first_minute": row["first_minute"],
        "last_minute": row["last_minute"],
    }


def rejection_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A rejection as callers see it."""
    item = dict(row)
    item["headers"] = msgspec.json.decode(row["headers"])
    item["body"] = bytes(row["body"])
    return item


def decision_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A decision as callers see it."""
    item = dict(row)
    item["reasons"] = msgspec.json.decode(row["reasons"])
    item["fallback"] = bool(row["fallback"])
    return item
