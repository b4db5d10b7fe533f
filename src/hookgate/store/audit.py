"""The audit log's SQL, written once for SQLite and PostgreSQL over a DB-API connection
(sqlite3, or a synchronous psycopg 3 connection), run through `Store.sql_write` and
`Store.sql_read`: the backends know nothing of it.

What differs between the backends is asked of the data layer's dialect object
(store/dialect.py): placeholders, instants, JSON parameters, text without NUL.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from hookgate.domain.queries import Page
from hookgate.store.base import Store
from hookgate.store.dialect import DIALECTS, Dialect
from hookgate.store.paging import decode_id_cursor, encode_cursor
from hookgate.timeutil import iso

Outcome = Literal["ok", "refused", "failed"]
_COLUMNS = "id, at, actor, channel, action, target, detail, outcome, status"


class AuditRecord(msgspec.Struct, kw_only=True):
    """One change (or refused attempt at one), as the audit log keeps it."""

    id: str
    at: datetime
    actor: str
    channel: Literal["api", "cli", "console"]
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


def _dialect(conn: Any) -> Dialect:
    """The dialect of a DB-API connection (sqlite3, or psycopg)."""
    return DIALECTS["sqlite" if type(conn).__module__.startswith("sqlite3") else "postgresql"]


def insert_audit(conn: Any, record: AuditRecord, dialect: Dialect) -> None:
    """Add one entry (inside the caller's transaction; it does not commit)."""
    detail = msgspec.json.encode(record.detail).decode().replace("\\u0000", "\\ufffd")
    marks = ", ".join(["?"] * 6 + [dialect.json_mark] + ["?"] * 2)
    conn.cursor().execute(
        dialect.sql(f"INSERT INTO audit_log ({_COLUMNS}) VALUES ({marks})"),
        [
            record.id,
            dialect.instant(record.at.astimezone(UTC)),
            dialect.text(record.actor),
            record.channel,
            dialect.text(record.action),
            dialect.text(record.target),
            detail,
            record.outcome,
            record.status,
        ],
    )


def _row(row: Mapping[str, Any], dialect: Dialect) -> dict[str, Any]:
    detail = row["detail"]
    return {
        "id": row["id"],
        "at": iso(dialect.read_instant(row["at"])),
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
) -> Page[dict[str, Any]]:
    """One page of entries, newest first."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("actor", where.actor),
        ("action", where.action),
        ("outcome", where.outcome),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(dialect.text(value))
    if where.since is not None:
        clauses.append("at >= ?")
        params.append(dialect.instant(where.since.astimezone(UTC)))
    if where.until is not None:
        clauses.append("at < ?")
        params.append(dialect.instant(where.until.astimezone(UTC)))
    if cursor:
        clauses.append("id < ?")
        params.append(decode_id_cursor(cursor))
    sql = f"SELECT {_COLUMNS} FROM audit_log"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit + 1)
    db_cursor = conn.cursor()
    db_cursor.execute(dialect.sql(sql), params)
    rows = db_cursor.fetchall()
    if rows and not isinstance(rows[0], Mapping):
        names = [d[0] for d in db_cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in rows]
    items = [_row(row, dialect) for row in rows[:limit]]
    more = len(rows) > limit and bool(items)
    return Page(items, encode_cursor(items[-1]["id"]) if more else None)


async def record(store: Store, entry: AuditRecord) -> None:
    """Add `entry` to the audit log, committed before this returns."""
    await store.sql_write(lambda conn: insert_audit(conn, entry, _dialect(conn)))


async def page(
    store: Store, where: AuditFilter, cursor: str | None, limit: int
) -> Page[dict[str, Any]]:
    """One page of the audit log, newest first."""
    return await store.sql_read(lambda conn: list_audit(conn, where, cursor, limit, _dialect(conn)))
