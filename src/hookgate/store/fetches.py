"""SQL of the reference fetches (migration 0013, ADR 0026), written once for SQLite and
PostgreSQL over a DB-API connection and run through `Store.sql_write`/`sql_read`.

Processing queues a row per named object (through `ViewTx`, like every view row); the
fetch worker claims due rows here, moving their `next_at` past a lease so that another
instance skips them, and settles each with the facts read, a retry time or a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from hookgate.store.alerting import transaction
from hookgate.store.base import Store, ViewTx
from hookgate.store.dialect import DIALECTS, Dialect
from hookgate.store.viewtx import SqlViewTx, decode_row

_TABLE = "reference_fetches"


class Fetch(msgspec.Struct, kw_only=True, frozen=True):
    """One object to read: which, for which notification, and how often it was tried."""

    source: str
    kind: str
    ref_id: str
    event_id: str
    attempts: int


def _dialect(conn: Any) -> Dialect:
    return DIALECTS["sqlite" if type(conn).__module__.startswith("sqlite3") else "postgresql"]


def _rows(conn: Any, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    cursor.execute(_dialect(conn).sql(sql), list(params))
    rows = cursor.fetchall()
    if rows and not isinstance(rows[0], Mapping):
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in rows]
    return [dict(row) for row in rows]


def claim(
    conn: Any, sources: Sequence[str], now: datetime, lease: timedelta, limit: int
) -> list[Fetch]:
    """Up to `limit` pending fetches of `sources` that are due, oldest first; each one's
    `next_at` moves to `now + lease`, so a crash only delays it."""
    if not sources:
        return []
    d = _dialect(conn)
    within, params = d.any_of("source", list(sources))
    until = d.instant((now + lease).astimezone(UTC))
    with transaction(conn):
        rows = _rows(
            conn,
            f"SELECT source, kind, ref_id, event_id, attempts FROM {_TABLE} "
            f"WHERE status = 'pending' AND next_at <= ? AND {within} "
            f"ORDER BY next_at LIMIT ?{d.skip_locked}",
            [d.instant(now.astimezone(UTC)), *params, limit],
        )
        for row in rows:
            _rows_written(
                conn,
                f"UPDATE {_TABLE} SET next_at = ? WHERE source = ? AND kind = ? AND ref_id = ?",
                [until, row["source"], row["kind"], row["ref_id"]],
            )
    return [Fetch(**row) for row in rows]


def _rows_written(conn: Any, sql: str, params: Sequence[Any]) -> int:
    cursor = conn.cursor()
    cursor.execute(_dialect(conn).sql(sql), list(params))
    return int(cursor.rowcount)


def settle(
    conn: Any,
    fetch: Fetch,
    now: datetime,
    *,
    document: dict[str, Any] | None = None,
    apply: Callable[[ViewTx], None] | None = None,
    retry_at: datetime | None = None,
    error: str | None = None,
) -> bool:
    """Record the outcome of one read, in one transaction with `apply` (the projection of
    what was read). Done when `document` is given, pending again at `retry_at`, else
    failed. False (and nothing written) when a newer notification re-queued the object
    meanwhile: that one's read wins."""
    d = _dialect(conn)
    tx = SqlViewTx(conn, d)
    key = {"source": fetch.source, "kind": fetch.kind, "ref_id": fetch.ref_id}
    with transaction(conn):
        row = tx.get(_TABLE, key)
        if row is None or row["status"] != "pending" or row["event_id"] != fetch.event_id:
            return False
        if row["attempts"] != fetch.attempts:
            return False  # another instance took it after our lease ran out
        row["attempts"] = fetch.attempts + 1
        row["updated_at"] = now
        if document is not None:
            if apply is not None:
                apply(tx)
            row.update(status="done", fetched_at=now, document=document, last_error=None)
        elif retry_at is not None:
            row.update(next_at=retry_at, last_error=error)
        else:
            row.update(status="failed", last_error=error)
        tx.upsert(_TABLE, row)
    return True


def requeue_failed(conn: Any, source: str | None, now: datetime) -> int:
    """Failed fetches (of one source, or all) pending again from their first attempt."""
    d = _dialect(conn)
    sql = f"UPDATE {_TABLE} SET status = 'pending', attempts = 0, next_at = ?, updated_at = ? "
    sql += "WHERE status = 'failed'"
    params: list[Any] = [d.instant(now), d.instant(now)]
    if source is not None:
        sql += " AND source = ?"
        params.append(source)
    with transaction(conn):
        return _rows_written(conn, sql, params)


def listing(conn: Any, status: str | None, limit: int) -> list[dict[str, Any]]:
    """Fetch rows (without their documents), newest first; of one status, or all."""
    d = _dialect(conn)
    sql = (
        f"SELECT source, kind, ref_id, id, event_id, status, attempts, next_at, last_error, "
        f"fetched_at, updated_at FROM {_TABLE}"
    )
    params: list[Any] = []
    if status is not None:
        sql += " WHERE status = ?"
        params.append(status)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit)
    return [decode_row(_TABLE, row, d.name, for_api=True) for row in _rows(conn, sql, params)]


def counts(conn: Any) -> dict[str, int]:
    """Fetches per status."""
    rows = _rows(conn, f"SELECT status, COUNT(*) AS n FROM {_TABLE} GROUP BY status", [])
    return {str(row["status"]): int(row["n"]) for row in rows}


def get(conn: Any, source: str, kind: str, ref_id: str) -> dict[str, Any] | None:
    """One fetch row as the API shows it (instants as ISO text)."""
    d = _dialect(conn)
    rows = _rows(
        conn,
        f"SELECT * FROM {_TABLE} WHERE source = ? AND kind = ? AND ref_id = ?",
        [source, kind, ref_id],
    )
    return decode_row(_TABLE, rows[0], d.name, for_api=True) if rows else None


def documents(conn: Any, kind: str, limit: int) -> list[dict[str, Any]]:
    """The last document read of each fetched object of `kind` (newest first)."""
    d = _dialect(conn)
    rows = _rows(
        conn,
        f"SELECT source, kind, ref_id, event_id, document, fetched_at FROM {_TABLE} "
        "WHERE kind = ? AND document IS NOT NULL ORDER BY id DESC LIMIT ?",
        [kind, limit],
    )
    return [decode_row(_TABLE, row, d.name) for row in rows]


# -- thin delegates for callers holding a Store ----------------------------------------


async def claim_due(
    store: Store, sources: Sequence[str], now: datetime, lease: timedelta, limit: int
) -> list[Fetch]:
    return await store.sql_write(lambda conn: claim(conn, sources, now, lease, limit))


async def fetch_counts(store: Store) -> dict[str, int]:
    return await store.sql_read(counts)


async def fetch_row(store: Store, source: str, kind: str, ref_id: str) -> dict[str, Any] | None:
    return await store.sql_read(lambda conn: get(conn, source, kind, ref_id))


async def requeue(store: Store, source: str | None, now: datetime) -> int:
    return await store.sql_write(lambda conn: requeue_failed(conn, source, now))


async def fetched_documents(store: Store, kind: str, limit: int = 100_000) -> list[dict[str, Any]]:
    return await store.sql_read(lambda conn: documents(conn, kind, limit))


async def fetch_list(store: Store, status: str | None, limit: int) -> list[dict[str, Any]]:
    return await store.sql_read(lambda conn: listing(conn, status, limit))
