"""PostgreSQL backend: psycopg 3 async, a connection pool, group commit.

Writes are queued to a few writer tasks. Each takes whatever is queued (up to
`batch_max`) and runs it in one transaction on one pooled connection: plain inbox inserts
as one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING RETURNING id`, every other
write as a closure, and the batch's change-log entries last. Futures resolve only after
COMMIT has returned. Several instances can share the database:

- dedup rests on the unique key; a concurrent duplicate waits for the first insert's
  commit and then does nothing;
- change-log entries are appended under one transaction-scoped advisory lock taken just
  before COMMIT, so `seq` order is commit order and a reader never skips an entry that
  commits later with a smaller number;
- a budget or session-count limit is re-checked under a per-subject advisory lock, taken
  (sorted, for the whole batch) at the start of the transaction.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, Connection, errors
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.errors import HookgateError, SchemaOutdated, StoreError
from hookgate.domain.events import InboundEvent, IngestResult
from hookgate.domain.outbox import ProcessResult
from hookgate.store import outbox
from hookgate.store.admission import Lane, WriteQueue
from hookgate.store.authz import account_params, account_sql
from hookgate.store.base import Handler
from hookgate.store.dialect import POSTGRESQL
from hookgate.store.health import WriteHealth
from hookgate.store.inbox import json_text
from hookgate.store.migrations import migrations
from hookgate.store.search import SearchIndex, index_queued
from hookgate.store.sqlstore import SqlStore
from hookgate.store.tx import DbApiTx, KeyTaken, Row, Work, run_sync
from hookgate.store.viewtx import SqlViewTx
from hookgate.timeutil import utcnow

T = TypeVar("T")

# Errors after which the whole batch can simply run again.
_RETRY = (errors.DeadlockDetected, errors.SerializationFailure, errors.LockNotAvailable)
_text = POSTGRESQL.text
_ACCOUNT = POSTGRESQL.sql(account_sql(POSTGRESQL)).encode()


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


# Statements are prepared after a few runs, and PostgreSQL then settles on a generic plan
# costed from the tables' statistics, which for tables created empty are guesses until
# autovacuum's first ANALYZE: a lookup by the whole primary key was seen planned as a scan
# of a one-column index, slower with every row added. Custom plans see the real sizes.
_SESSION_SETUP = "SET plan_cache_mode = force_custom_plan"


async def _configure(conn: AsyncConnection[Any]) -> None:
    # JSON stays text (as in SQLite): the data layer decodes it, documents keep key order.
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    await conn.execute(_SESSION_SETUP)


def _configure_sync(conn: Connection[Any]) -> None:
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.execute(_SESSION_SETUP)


@functools.lru_cache(maxsize=2048)
def _query(sql: str) -> bytes:
    return POSTGRESQL.sql(sql).encode()


class _Tx:
    """`Tx` on one pooled connection: a write's share of the batch transaction (its
    change-log entries are written at the end of the batch, under the change-log lock),
    or a read."""

    __slots__ = ("changes", "conn")

    dialect = POSTGRESQL

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn
        self.changes: list[tuple[str, str]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        cur = await self.conn.execute(_query(sql), params)
        return cur.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        async with self.conn.cursor() as cur:
            await cur.executemany(_query(sql), rows)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = self.conn.cursor(row_factory=dict_row)
        await cur.execute(_query(sql), params)
        return await cur.fetchone()

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self.conn.cursor(row_factory=dict_row)
        await cur.execute(_query(sql), params)
        return list(await cur.fetchall())

    async def write_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        # Data-modifying CTEs: one statement, one round trip.
        *first, (last, last_params) = statements
        ctes = ", ".join(f"w{n} AS ({sql})" for n, (sql, _) in enumerate(first))
        params = [p for _, ps in first for p in ps]
        await self.execute(f"WITH {ctes} {last}" if first else last, [*params, *last_params])

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        try:
            async with self.conn.transaction():
                yield
        except errors.UniqueViolation as exc:
            raise KeyTaken(str(exc)) from exc

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            await self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    def changed(self, kind: str, key: str) -> None:
        self.changes.append((kind, key))


_Fn = Callable[[_Tx], Awaitable[Any]]


@dataclass(slots=True)
class _Job:
    fut: asyncio.Future[Any]
    fn: _Fn | None = None
    event: InboundEvent | None = None  # a plain ingest, inserted in bulk
    consumption: ConsumptionReport | None = None  # accounted when `event` is new
    locks: tuple[int, ...] = field(default_factory=tuple)


# Put on the main queue when an urgent job is queued, to wake a writer.
_URGENT = object()


class _Stale(Exception):
    """The connection was found dead at BEGIN: nothing of the batch reached the server."""


class _Isolate(Exception):
    """A batch must be redone with one savepoint per write."""


class PostgresStore(SqlStore):
    """The store for several instances: one PostgreSQL database shared by all."""

    def __init__(
        self,
        url: str,
        *,
        batch_max: int = 512,
        auto_migrate: bool = False,
        on_batch: Callable[[int], None] | None = None,
        pool_size: int = 10,
        writers: int = 2,
        queue_max: int = 0,
        queue_reserve: int = 0,
    ) -> None:
        self.url = url
        self.sql_dialect = POSTGRESQL
        self._batch_max = batch_max
        # Writes queued or in a running batch; ingest is refused beyond the bound
        # (0: unbounded) less the reserve kept for Zaptec decisions.
        self.writes = WriteQueue(queue_max, queue_reserve)
        self._auto_migrate = auto_migrate
        self._on_batch = on_batch or (lambda size: None)
        # One more connection for the writer of urgent work (below).
        self._pool_size = max(pool_size, writers + 2)
        self._writers = writers
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._queue: asyncio.Queue[_Job | object | None] = asyncio.Queue()
        self._urgent: collections.deque[_Job] = collections.deque()
        self._urgent_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._urgent_task: asyncio.Task[None] | None = None
        self._sync: ConnectionPool[Connection[Any]] | None = None
        self._namespace = ""
        self._closed = False
        self.health = WriteHealth()

    # -- lifecycle ---------------------------------------------------------------------

    async def _connect(self) -> AsyncConnection[Any]:
        try:
            conn = await AsyncConnection.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc
        await _configure(conn)
        return conn

    async def open(self) -> None:
        if self._auto_migrate:
            await self.migrate()
        pending = await self.pending_migrations()
        if pending:
            raise SchemaOutdated(f"the database lacks migrations {pending}: run `hookgate migrate`")
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.url,
            min_size=min(self._writers + 2, self._pool_size),
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
            name="hookgate",
        )
        try:
            await pool.open(wait=True, timeout=15)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(f"cannot connect to PostgreSQL: {exc}") from exc
        self._pool = pool
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT current_schema()")
            row = await cur.fetchone()
            self._namespace = str(row[0]) if row else ""
        self._tasks = [
            asyncio.create_task(self._writer(), name=f"hookgate-pg-writer-{n}")
            for n in range(self._writers)
        ]
        self._urgent_task = asyncio.create_task(self._urgent_writer(), name="hookgate-pg-urgent")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._tasks:
            self._queue.put_nowait(None)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._urgent_task is not None:
            self._urgent_ready.set()
            await asyncio.gather(self._urgent_task, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
        if self._sync is not None:
            await asyncio.to_thread(self._sync.close)

    def _lock(self, name: str) -> int:
        # Advisory locks are per database; the schema keeps instances of separate
        # deployments (or test runs) in one database from waiting on each other.
        return lock_key(f"{self._namespace}:{name}")

    async def migrate(self) -> list[int]:
        conn = await self._connect()
        try:
            cur = await conn.execute("SELECT current_schema()")
            row = await cur.fetchone()
            if row is None or row[0] is None:
                raise StoreError("no schema to migrate: the search_path names none that exists")
            # `hookgate migrate` run from several places at once: one applies, the rest wait.
            key = lock_key(f"{row[0]}:migrate")
            await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
                )
                done = {r[0] for r in await (await conn.execute(_APPLIED)).fetchall()}
                applied = []
                for version, name, statements in migrations("postgresql"):
                    if version in done:
                        continue
                    async with conn.transaction():
                        for statement in statements:
                            await conn.execute(statement.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                            (version, name, utcnow()),
                        )
                    applied.append(version)
                return applied
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except psycopg.Error as exc:
            raise StoreError(f"migration failed: {exc}") from exc
        finally:
            await conn.close()

    async def pending_migrations(self) -> list[int]:
        conn = await self._connect()
        try:
            cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            row = await cur.fetchone()
            done = (
                {r[0] for r in await (await conn.execute(_APPLIED)).fetchall()}
                if row and row[0]
                else set()
            )
        except psycopg.Error as exc:
            raise StoreError(str(exc)) from exc
        finally:
            await conn.close()
        return [v for v, _, _ in migrations("postgresql") if v not in done]

    # -- plumbing ----------------------------------------------------------------------

    def _submit(self, job: _Job, lane: Lane = Lane.INTERNAL) -> None:
        if self._pool is None or self._closed or not any(not t.done() for t in self._tasks):
            raise StoreError("store is not open")
        self.writes.enter(lane)  # raises Overloaded when the lane is full
        if lane.urgent:
            self._urgent.append(job)
            self._urgent_ready.set()
            self._queue.put_nowait(_URGENT)
        else:
            self._queue.put_nowait(job)

    def _write(
        self, work: Work[T], lane: Lane = Lane.INTERNAL, locks: Sequence[str] = ()
    ) -> Awaitable[T]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        keys = tuple(self._lock(name) for name in locks)
        self._submit(_Job(fut, fn=work, locks=keys), lane)
        return fut

    def _take_urgent(self, batch: list[_Job]) -> None:
        urgent = self._urgent
        while urgent and len(batch) < self._batch_max:
            batch.append(urgent.popleft())

    async def _urgent_writer(self) -> None:
        """Urgent jobs only, on a connection of their own: a Zaptec start never waits for
        the batches of ingest the other writers are committing (another transaction,
        other rows). Idle writers take urgent jobs too, first, whichever is free first."""
        while True:
            await self._urgent_ready.wait()
            self._urgent_ready.clear()
            batch: list[_Job] = []
            self._take_urgent(batch)
            if batch:
                await self._run_batch(batch)
                if self._urgent:
                    self._urgent_ready.set()
            elif self._closed:
                return

    async def _writer(self) -> None:
        """Take urgent jobs (Zaptec decisions) first, then whatever else is queued."""
        queue = self._queue
        stopping = False
        while True:
            if self._urgent:
                first: _Job | object | None = _URGENT
            elif stopping:
                return
            else:
                first = await queue.get()
            if first is None:
                stopping, first = True, _URGENT
            batch: list[_Job] = []
            self._take_urgent(batch)
            if isinstance(first, _Job):
                batch.append(first)
            while not stopping and len(batch) < self._batch_max:
                try:
                    job = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if job is None:
                    stopping = True
                elif isinstance(job, _Job):
                    batch.append(job)
                else:
                    self._take_urgent(batch)
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Job]) -> None:
        try:
            outcomes = await self._commit(batch)
        except BaseException as exc:
            # Nothing may be left waiting on a writer that stopped.
            failure = StoreError(f"commit failed: {exc!r}")
            outcomes = [(job, None, failure) for job in batch]
            if not isinstance(exc, Exception):
                self.writes.leave(len(batch))
                self._resolve(outcomes)
                raise
        self._note_outcome(outcomes)
        self.writes.leave(len(batch))
        self._on_batch(len(batch))
        # In batch order, urgent jobs first: their callers resume first.
        place = {id(job): index for index, job in enumerate(batch)}
        outcomes.sort(key=lambda outcome: place[id(outcome[0])])
        self._resolve(outcomes)

    def _note_outcome(self, outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        """A batch failed as storage (not as one write's own error, such as a constraint)
        when its commit failed or the server refused a write for want of a resource
        (disk full, out of memory, read-only, shutting down)."""
        for _job, _result, error in outcomes:
            # Plain StoreError: the commit failed (its subclasses are a write's answer).
            if type(error) is StoreError or isinstance(error, psycopg.OperationalError):
                self.health.failed(str(error))
                return
        self.health.committed()

    @staticmethod
    def _resolve(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        for job, result, error in outcomes:
            if job.fut.done():
                continue
            if error is not None:
                # A write's own answer (a clash, a limit) goes back as it is; anything
                # else is storage failing.
                job.fut.set_exception(
                    error if isinstance(error, HookgateError) else StoreError(repr(error))
                )
            else:
                job.fut.set_result(result)

    async def _commit(self, batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        assert self._pool is not None
        isolate = False
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        attempt = stale = 0
        while attempt < 6:
            try:
                async with self._pool.connection(timeout=10) as conn:
                    outcomes = await self._attempt(conn, batch, isolate=isolate)
                break
            except _Stale:
                # Dropped by the server (restart, failover) before BEGIN got through:
                # nothing of the batch was sent, so take another connection (the pool
                # discards the broken one).
                stale += 1
                if stale > self._pool_size:
                    failure = StoreError("commit failed: no live connection to PostgreSQL")
                    outcomes = [(job, None, failure) for job in batch]
                    break
            except _Isolate:
                isolate = True
            except _Single as single:
                outcomes = single.outcomes
                break
            except _RETRY as exc:
                attempt += 1
                if attempt == 6:
                    outcomes = [(job, None, StoreError(f"commit failed: {exc}")) for job in batch]
                    break
                await asyncio.sleep(0.005 * attempt)
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                outcomes = [(job, None, StoreError(f"commit failed: {exc}")) for job in batch]
                break
        return outcomes

    async def _attempt(
        self, conn: AsyncConnection[Any], batch: list[_Job], *, isolate: bool
    ) -> list[tuple[_Job, Any, BaseException | None]]:
        """Run the batch in one transaction. Without `isolate`, a failing write in a batch
        of several rolls back everything and raises _Isolate; with it, each closure has
        its own savepoint. Deadlocks and serialization failures propagate (retried)."""
        began = False
        try:
            async with conn.transaction():
                began = True
                return await self._run(conn, batch, isolate=isolate)
        except psycopg.OperationalError as exc:
            if not began:
                raise _Stale from exc
            raise

    async def _run(
        self, conn: AsyncConnection[Any], batch: list[_Job], *, isolate: bool
    ) -> list[tuple[_Job, Any, BaseException | None]]:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        changes: list[tuple[str, str]] = []
        locks = sorted({key for job in batch for key in job.locks})
        if locks:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%b::bigint[]) AS k", (locks,)
            )
        plain = [job for job in batch if job.event is not None]
        if plain:
            outcomes.extend(await self._bulk_ingest(conn, plain, changes))
        for job in batch:
            if job.fn is None:
                continue
            tx = _Tx(conn)
            try:
                if isolate:
                    async with conn.transaction():
                        result = await job.fn(tx)
                else:
                    result = await job.fn(tx)
            except _RETRY:
                raise
            except Exception as exc:
                if not isolate:
                    if len(batch) > 1:
                        raise _Isolate from exc
                    outcomes.append((job, None, exc))
                    raise _Single(outcomes) from exc
                outcomes.append((job, None, exc))
                continue
            changes.extend(tx.changes)
            outcomes.append((job, result, None))
        if changes:
            # The lock (held until COMMIT) is taken before the rows draw their `seq`:
            # the CTE with a volatile call is evaluated first and the rows join it.
            await conn.execute(
                "WITH l AS (SELECT pg_advisory_xact_lock(%s)) "
                "INSERT INTO auth_changes (kind, key, changed_at) "
                "SELECT k, key, %s FROM l, unnest(%b::text[], %b::text[]) AS c(k, key)",
                (
                    self._lock("changes"),
                    utcnow(),
                    [c[0] for c in changes],
                    [c[1] for c in changes],
                ),
            )
        return outcomes

    @staticmethod
    async def _bulk_ingest(
        conn: AsyncConnection[Any], jobs: list[_Job], changes: list[tuple[str, str]]
    ) -> list[tuple[_Job, Any, BaseException | None]]:
        """Insert many events in one statement; the unique key decides which are new.
        Arrays travel in binary (`%b`): the server parses them several times faster.
        The consumption the new events report is then accounted in one pipelined round
        trip (its change-log entries appended to `changes`)."""
        events = sorted(
            (job.event for job in jobs if job.event is not None),
            key=lambda e: (e.source, e.dedup_key),  # one lock order on every instance
        )
        cur = await conn.execute(
            "INSERT INTO inbox (id, source, provider, event_type, received_at, dedup_key, "
            "subject, status, flags, headers, document, raw_body, body_sha256, request_id, "
            "trace_context) "
            "SELECT i, s, p, t, r, d, sub, st, f::json, h::json, doc::json, b, sha, rid, tc "
            "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], "
            "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
            "%b::bytea[], %b::text[], %b::text[], %b::text[]) "
            "AS e(i, s, p, t, r, d, sub, st, f, h, doc, b, sha, rid, tc) "
            "WHERE NOT EXISTS (SELECT 1 FROM inbox x WHERE x.source = e.s AND x.dedup_key = e.d) "
            "ON CONFLICT DO NOTHING RETURNING id",
            (
                [e.id for e in events],
                [_text(e.source) for e in events],
                [e.provider for e in events],
                [_text(e.event_type) for e in events],
                [e.received_at for e in events],
                [_text(e.dedup_key) for e in events],
                [_text(e.subject) for e in events],
                [e.status for e in events],
                [json_text(e.flags) for e in events],
                [json_text(e.headers) for e in events],
                [json_text(e.document) for e in events],
                [e.raw_body for e in events],
                [e.body_sha256 for e in events],
                [e.request_id for e in events],
                [e.trace_context for e in events],
            ),
        )
        inserted = {row[0] for row in await cur.fetchall()}
        # Arrival order within a session (later reports win); sessions in key order, the
        # same lock order on every writer and instance.
        reports = sorted(
            (
                (job.event.source, job.consumption)
                for job in jobs
                if job.event is not None
                and job.consumption is not None
                and job.event.id in inserted
            ),
            key=lambda item: (item[0], item[1].session_key),
        )
        if reports:
            async with conn.cursor() as account:
                await account.executemany(
                    _ACCOUNT,
                    [account_params(POSTGRESQL, source, r) for source, r in reports],
                    returning=True,
                )
                while True:
                    changed = await account.fetchone()
                    if changed is not None:
                        changes.append(("consumption", changed[0]))
                    if not account.nextset():
                        break
        existing: dict[tuple[str | None, str | None], str] = {}
        missing = [e for e in events if e.id not in inserted]
        if missing:
            cur = await conn.execute(
                "SELECT source, dedup_key, id FROM inbox WHERE (source, dedup_key) IN "
                "(SELECT * FROM unnest(%b::text[], %b::text[]))",
                ([_text(e.source) for e in missing], [_text(e.dedup_key) for e in missing]),
            )
            existing = {(r[0], r[1]): r[2] for r in await cur.fetchall()}
        out: list[tuple[_Job, Any, BaseException | None]] = []
        for job in jobs:
            e = job.event
            assert e is not None
            if e.id in inserted:
                out.append((job, IngestResult(True, e.id), None))
            else:
                found = existing.get((_text(e.source), _text(e.dedup_key)), e.id)
                out.append((job, IngestResult(False, found), None))
        return out

    async def _read(self, work: Work[T]) -> T:
        if self._pool is None or self._closed:
            raise StoreError("store is not open")
        for _ in range(self._pool_size + 1):
            conn: AsyncConnection[Any] | None = None
            try:
                async with self._pool.connection(timeout=10) as conn:
                    return await work(_Tx(conn))
            except psycopg.OperationalError as exc:
                if conn is None or not conn.broken:
                    raise StoreError(str(exc)) from exc
                # A connection the server dropped: reads can simply run again.
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                raise StoreError(str(exc)) from exc
        raise StoreError("no live connection to PostgreSQL")

    def _writer_alive(self) -> bool:
        return any(not t.done() for t in self._tasks)

    # Searches, aggregates and the alert history (store/queries.py, store/alerting.py)
    # run on a synchronous connection of their own.

    async def _query(self, fn: Callable[[Connection[Any]], T]) -> T:
        """A search or aggregate on a synchronous connection."""
        return await self._in_thread(fn)

    async def sql_read(self, fn: Callable[[Any], T]) -> T:
        return await self._in_thread(fn)

    async def sql_write(self, fn: Callable[[Any], T]) -> T:
        return await self._in_thread(fn)

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        fut: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._submit(_Job(fut, event=event, consumption=consumption), Lane.INGEST)
        return await fut

    # -- processing ----------------------------------------------------------------------

    def _sync_pool(self) -> ConnectionPool[Connection[Any]]:
        """Synchronous connections for processing, whose projections' row access
        (`ViewTx`) is synchronous; used from worker threads."""
        if self._sync is None:
            self._sync = ConnectionPool(
                self.url,
                min_size=0,
                max_size=max(2, self._pool_size // 3),
                kwargs={"autocommit": True},
                # Processing is not on the answer path: the pool's own check (with its
                # back-off) replaces connections the server dropped.
                check=ConnectionPool.check_connection,
                configure=_configure_sync,
                open=True,
                name="hookgate-sync",
            )
        return self._sync

    async def _in_thread(self, fn: Callable[[Connection[Any]], T]) -> T:
        if self._pool is None or self._closed:
            raise StoreError("store is not open")

        def run() -> T:
            with self._sync_pool().connection(timeout=10) as conn:
                return fn(conn)

        try:
            return await asyncio.to_thread(run)
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            raise StoreError(str(exc)) from exc

    async def process_pending(self, handler: Handler, limit: int) -> ProcessResult:
        def batch(conn: Connection[Any], isolate: bool) -> ProcessResult:
            with conn.transaction():
                return run_sync(
                    outbox.process_batch(
                        DbApiTx(conn, POSTGRESQL, errors.UniqueViolation),
                        SqlViewTx(conn, POSTGRESQL),
                        handler,
                        limit,
                        chunk=max(limit, 1),
                        isolate=isolate,
                        transient=_RETRY,
                        index=SearchIndex(conn, "postgresql"),
                    )
                )

        def run(conn: Connection[Any]) -> ProcessResult:
            try:
                # Nothing in a savepoint while nothing fails: two round trips per event fewer.
                return batch(conn, isolate=False)
            except outbox.Isolate:
                # An event failed, or a lock conflict broke the transaction: everything
                # rolled back, so run the batch again with a savepoint per event.
                return batch(conn, isolate=True)

        return await self._in_thread(run)

    async def index_search(self, limit: int) -> int:
        def run(conn: Connection[Any]) -> int:
            with conn.transaction():
                return index_queued(conn, POSTGRESQL, limit)

        return await self._in_thread(run)


class _Single(Exception):
    """A lone write failed: its outcome is known, the transaction is rolled back."""

    def __init__(self, outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        super().__init__("single write failed")
        self.outcomes = outcomes


_APPLIED = "SELECT version FROM schema_migrations"
