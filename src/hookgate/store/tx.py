"""The transaction interface the data layer is written against.

Each area (inbox.py, authz.py, outbox.py, reports.py, retention.py) is a set of
`async def f(tx, ...)` functions over a `Tx`; a backend driver runs them inside its own
transactions: SQLite on its writer thread (or a reader thread), PostgreSQL on its writer
tasks (or a pooled connection). Statements are written once with `?` placeholders; the
`Tx` turns them into the backend's style (`tx.dialect.sql`).

SQLite's driver is synchronous: its `Tx` never suspends, and `run_sync` drives a
coroutine written against it to completion in one step, on the thread that holds the
connection. So one text of each query serves both backends without a thread hop or an
event loop in SQLite's writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from hookgate.store.dialect import Dialect
from hookgate.timeutil import utcnow

T = TypeVar("T")

# A row: read its columns by name (SQLite hands back sqlite3.Row, PostgreSQL dicts);
# `dict(row)` for a copy.
Row = Mapping[str, Any]


class KeyTaken(Exception):
    """A write inside `Tx.savepoint()` broke a unique key; the savepoint was rolled back
    and the rest of the transaction goes on."""


class Tx(Protocol):
    """One transaction (or one read) on one connection."""

    @property
    def dialect(self) -> Dialect:
        """The backend's spelling."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, or None."""

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query."""

    async def write_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Independent writes (no RETURNING, different rows): PostgreSQL sends them as one
        statement (data-modifying CTEs), one round trip."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A nested transaction: rolled back alone when its block raises; a unique-key
        violation inside it comes out as `KeyTaken`."""

    def snapshot(self) -> AbstractAsyncContextManager[None]:
        """Reads inside the block see one consistent state of the database."""

    def changed(self, kind: str, key: str) -> None:
        """Append a change-log entry (auth_changes) for this transaction."""


# A unit of work of the data layer.
Work = Callable[[Tx], Coroutine[Any, Any, T]]


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a coroutine that never suspends (its Tx is synchronous) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a synchronous transaction suspended")


class DbApiTx:
    """`Tx` over a synchronous DB-API connection inside the caller's transaction: a
    sqlite3 connection (SQLite's writer and readers), or a synchronous psycopg one
    (PostgreSQL's processing thread). It never suspends (see `run_sync`) and never
    commits; change-log entries are inserted at once, which is right where one writer
    orders every commit (SQLite)."""

    __slots__ = ("_dialect", "conn", "integrity")

    def __init__(
        self, conn: Any, dialect: Dialect, integrity: type[BaseException] = sqlite3.IntegrityError
    ) -> None:
        self.conn = conn
        self._dialect = dialect
        self.integrity = integrity

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self.conn.execute(self._dialect.sql(sql), params).rowcount)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.cursor().executemany(self._dialect.sql(sql), rows)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cursor = self.conn.execute(self._dialect.sql(sql), params)
        row = cursor.fetchone()
        if type(row) is tuple:
            return dict(zip([d[0] for d in cursor.description], row, strict=True))
        return row  # type: ignore[no-any-return]

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self.conn.execute(self._dialect.sql(sql), params)
        rows = cursor.fetchall()
        if rows and type(rows[0]) is tuple:
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in rows]
        return rows  # type: ignore[no-any-return]

    async def write_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        for sql, params in statements:
            self.conn.execute(self._dialect.sql(sql), params)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        self.conn.execute("SAVEPOINT tx_savepoint")
        try:
            yield
        except BaseException as exc:
            self.conn.execute("ROLLBACK TO SAVEPOINT tx_savepoint")
            self.conn.execute("RELEASE SAVEPOINT tx_savepoint")
            if isinstance(exc, self.integrity):
                raise KeyTaken(str(exc)) from exc
            raise
        self.conn.execute("RELEASE SAVEPOINT tx_savepoint")

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        if getattr(self.conn, "in_transaction", True):
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def changed(self, kind: str, key: str) -> None:
        self.conn.execute(
            self._dialect.sql("INSERT INTO auth_changes (kind, key, changed_at) VALUES (?, ?, ?)"),
            (kind, key, self._dialect.instant(utcnow())),
        )
