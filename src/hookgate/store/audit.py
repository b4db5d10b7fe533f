"""The audit log's SQL, written once for SQLite and PostgreSQL over a DB-API connection
(sqlite3, or a synchronous psycopg 3 connection), run through `Store.sql_write` and
`Store.sql_read`: the backends know nothing of it.

Instants are ISO text in SQLite and TIMESTAMPTZ in PostgreSQL; `detail` is JSON text in
SQLite and JSON in PostgreSQL (read back as text by the store's pools, or decoded).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from hookgate.domain.queries import Page
from hookgate.store.alerting import dialect_of
from hookgate.store.base import Store
from hookgate.store.paging import decode_id_cursor, encode_cursor
from hookgate.store.viewtx import Dialect
from hookgate.timeutil import iso

Outcome = Literal["ok", "refused", "failed"]
_COLUMNS = "id, at, actor, channel, action, target, detail, outcome, status"


class AuditRecord(msgspec.Struct, kw_only=True):
    """One change (or refused attempt at one), as the audit log keeps it."""

    id: str
    at: datetime
    actor: str
    channel: Literal["api", "cli"]
    action: str
    target: str | None = None
    detail: dict[str, Any] = {}
    outcome: Outcome = "ok"
    status: int | None = None


class AuditFilter(msgspec.Struct, kw_only=True):
    """Filters of the audit listing; None means any."""

    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _mark(dialect: Dialect) -> str:
    return "?" if dialect == "sqlite" else "%s"


def _instant(value: datetime, dialect: Dialect) -> Any:
    return iso(value) if dialect == "sqlite" else value.astimezone(UTC)


def _clean(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; an audited value must still be stored."""
    return text.replace("\x00", "\ufffd") if text is not None and "\x00" in text else text


def insert_audit(conn: Any, record: AuditRecord, dialect: Dialect) -> None:
    """Add one entry (inside the caller's transaction; it does not commit)."""
    mark = _mark(dialect)
    detail = msgspec.json.encode(record.detail).decode().replace("\\u0000", "\\ufffd")
    json_mark = mark if dialect == "sqlite" else f"{mark}::json"
    marks = ", ".join([mark] * 6 + [json_mark] + [mark] * 2)
    conn.cursor().execute(
        f"INSERT INTO audit_log ({_COLUMNS}) VALUES ({marks})",
        [
            record.id,
            _instant(record.at, dialect),
            _clean(record.actor),
            record.channel,
            _clean(record.action),
            _clean(record.target),
            detail,
            record.outcome,
            record.status,
        ],
    )


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    at = row["at"]
    detail = row["detail"]
    return {
        "id": row["id"],
        "at": at if isinstance(at, str) else iso(at),
        "actor": row["actor"],
        "channel": row["channel"],
        "action": row["action"],
        "target": row["target"],
        "detail": msgspec.json.decode(detail) if isinstance(detail, str | bytes) else detail,
        "outcome": row["outcome"],
        "status": row["status"],
    }


def list_audit(
    conn: Any, where: AuditFilter, cursor: str | None, limit: int, dialect: Dialect
) -> Page:
    """One page of entries, newest first."""
    mark = _mark(dialect)
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("actor", where.actor),
        ("action", where.action),
        ("outcome", where.outcome),
    ):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(_clean(value))
    if where.since is not None:
        clauses.append(f"at >= {mark}")
        params.append(_instant(where.since, dialect))
    if where.until is not None:
        clauses.append(f"at < {mark}")
        params.append(_instant(where.until, dialect))
    if cursor:
        clauses.append(f"id < {mark}")
        params.append(decode_id_cursor(cursor))
    sql = f"SELECT {_COLUMNS} FROM audit_log"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += f" ORDER BY id DESC LIMIT {mark}"
    params.append(limit + 1)
    db_cursor = conn.cursor()
    db_cursor.execute(sql, params)
    rows = db_cursor.fetchall()
    if rows and not isinstance(rows[0], Mapping):
        names = [d[0] for d in db_cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in rows]
    items = [_row(row) for row in rows[:limit]]
    more = len(rows) > limit and bool(items)
    return Page(items, encode_cursor(items[-1]["id"]) if more else None)


async def record(store: Store, entry: AuditRecord) -> None:
    """Add `entry` to the audit log, committed before this returns."""
    await store.sql_write(lambda conn: insert_audit(conn, entry, dialect_of(conn)))


async def page(store: Store, where: AuditFilter, cursor: str | None, limit: int) -> Page:
    """One page of the audit log, newest first."""
    return await store.sql_read(
        lambda conn: list_audit(conn, where, cursor, limit, dialect_of(conn))
    )
