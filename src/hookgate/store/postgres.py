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
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg import AsyncConnection, Connection, errors, sql
from psycopg.rows import dict_row
from psycopg.types.string import TextLoader
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from hookgate.domain.decisions import (
    ConsumptionReport,
    Decision,
    Limit,
    SessionEnd,
    check_energy,
    check_sessions,
)
from hookgate.domain.errors import (
    Abandoned,
    AlreadyExists,
    HookgateError,
    SchemaOutdated,
    StoreError,
)
from hookgate.domain.events import (
    InboundEvent,
    IngestResult,
    Rejection,
    RejectionCount,
    SessionEndResult,
    StoredEvent,
)
from hookgate.domain.outbox import DeliveryJob, DeliveryOutcome, ProcessResult
from hookgate.domain.queries import DecisionFilter, EventFilter, Page, ReplayFilter, ViewFilter
from hookgate.domain.rules import AuthChange, AuthEntity, AuthSnapshot
from hookgate.ids import floor_id, new_id
from hookgate.store.admission import Lane, WriteQueue
from hookgate.store.base import Handler, ViewTx
from hookgate.store.health import PROBE_KEY, PROBE_TIMEOUT_SECONDS, WriteHealth
from hookgate.store.migrations import migrations
from hookgate.store.queries import QueryMethods
from hookgate.store.rows import (
    DECISION_INSERT,
    REJECTION_COUNTS,
    SESSION_UPSERT,
    TRIM_REJECTIONS,
    decision_row,
    decode_cursor,
    encode_cursor,
    event_row,
    for_postgres,
    rejection_count_row,
    rejection_row,
    rejection_size,
)
from hookgate.timeutil import iso, utcnow

T = TypeVar("T")
Row = dict[str, Any]

_json = msgspec.json.Encoder()
_EVENT_COLUMNS = (
    "id, source, provider, event_type, received_at, dedup_key, subject, status, flags, "
    "headers, document, body_sha256, octet_length(raw_body) AS body_size, request_id"
)
# Inserts skip keys already committed, read from the snapshot without waiting: ON CONFLICT
# alone would wait for any transaction holding the stored row (a processing batch updating
# its status) before it can tell a duplicate. Keys only in flight still meet ON CONFLICT.
_NOT_STORED = "NOT EXISTS (SELECT 1 FROM inbox x WHERE x.source = {source} AND x.dedup_key = {key})"
_INSERT_EVENT = (
    "INSERT INTO inbox (id, source, provider, event_type, received_at, dedup_key, "
    "subject, status, flags, headers, document, raw_body, body_sha256, request_id, "
    "trace_context) "
    "SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s::json, %s::json, %s::json, %s, %s, %s, %s "
    f"WHERE {_NOT_STORED.format(source='%s', key='%s')} "
    "ON CONFLICT DO NOTHING"
)
_INSERT_DECISION = for_postgres(DECISION_INSERT)
_INSERT_SESSION = for_postgres(SESSION_UPSERT)
# Errors after which the whole batch can simply run again.
_RETRY = (errors.DeadlockDetected, errors.SerializationFailure, errors.LockNotAvailable)


def _json_text(value: Any) -> str:
    return _json.encode(value).decode()


def _text(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; anything a provider sends must still be stored."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


# Statements are prepared after a few runs, and PostgreSQL then settles on a generic plan
# costed from the tables' statistics, which for tables created empty are guesses until
# autovacuum's first ANALYZE: a lookup by the whole primary key was seen planned as a scan
# of a one-column index, slower with every row added. Custom plans see the real sizes.
_SESSION_SETUP = "SET plan_cache_mode = force_custom_plan"


async def _configure(conn: AsyncConnection[Any]) -> None:
    # JSON stays text (as in SQLite): callers decode it, and documents keep key order.
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    await conn.execute(_SESSION_SETUP)


def _configure_sync(conn: Connection[Any]) -> None:
    conn.execute(_SESSION_SETUP)


def _plain(row: Mapping[str, Any]) -> Row:
    """A row with timestamps as ISO text, the shape every backend returns."""
    return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}


class _Tx:
    """One write's view of the batch transaction: the connection, and the change-log
    entries it appends (written at the end of the batch, under the change-log lock)."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn
        self.changes: list[tuple[str, str]] = []

    async def execute(self, query: Any, params: Sequence[Any] | None = None) -> int:
        cur = await self.conn.execute(query, params)
        return cur.rowcount

    async def one(self, query: Any, params: Sequence[Any] | None = None) -> Row | None:
        cur = self.conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return await cur.fetchone()

    async def all(self, query: Any, params: Sequence[Any] | None = None) -> list[Row]:
        cur = self.conn.cursor(row_factory=dict_row)
        await cur.execute(query, params)
        return await cur.fetchall()

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


class PostgresStore(QueryMethods):
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
        self, fn: _Fn, locks: Sequence[int] = (), lane: Lane = Lane.INTERNAL
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Job(fut, fn=fn, locks=tuple(locks)), lane)
        return fut

    def check_ingest_room(self) -> None:
        self.writes.check(Lane.INGEST)

    def queued_writes(self) -> int:
        return self.writes.depth

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
            f"WHERE {_NOT_STORED.format(source='e.s', key='e.d')} "
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
                [_json_text(e.flags) for e in events],
                [_json_text(e.headers) for e in events],
                [_json_text(e.document) for e in events],
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
                    _ACCOUNT, [_account_params(source, r) for source, r in reports], returning=True
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

    async def _read(self, fn: Callable[[_Tx], Awaitable[T]]) -> T:
        if self._pool is None or self._closed:
            raise StoreError("store is not open")
        for _ in range(self._pool_size + 1):
            conn: AsyncConnection[Any] | None = None
            try:
                async with self._pool.connection(timeout=10) as conn:
                    return await fn(_Tx(conn))
            except psycopg.OperationalError as exc:
                if conn is None or not conn.broken:
                    raise StoreError(str(exc)) from exc
                # A connection the server dropped: reads can simply run again.
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                raise StoreError(str(exc)) from exc
        raise StoreError("no live connection to PostgreSQL")

    async def ping(self) -> None:
        await self._read(lambda tx: tx.execute("SELECT 1"))
        if not any(not t.done() for t in self._tasks):
            raise StoreError("writer tasks are not running")
        if not self.health.needs_probe():
            return

        async def probe(tx: _Tx) -> None:
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (PROBE_KEY, iso(utcnow())),
            )

        try:
            await asyncio.wait_for(self._write(probe), PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise StoreError(
                f"writers did not commit a probe within {PROBE_TIMEOUT_SECONDS:g} s"
            ) from None

    # -- writes ------------------------------------------------------------------------

    async def secret(self, key: str, make: bytes) -> bytes:
        async def run(tx: _Tx) -> bytes:
            await tx.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING",
                (key, make.hex()),
            )
            row = await tx.one("SELECT value FROM meta WHERE key = %s", (key,))
            assert row is not None
            return bytes.fromhex(row["value"])

        result: bytes = await self._write(run)
        return result

    @staticmethod
    async def _insert_event(tx: _Tx, event: InboundEvent) -> bool:
        return await tx.execute(_INSERT_EVENT, _event_params(event)) == 1

    @staticmethod
    async def _existing_id(tx: _Tx, event: InboundEvent) -> str:
        row = await tx.one(
            "SELECT id FROM inbox WHERE source = %s AND dedup_key = %s",
            (_text(event.source), _text(event.dedup_key)),
        )
        return str(row["id"]) if row else event.id

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        fut: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._submit(_Job(fut, event=event, consumption=consumption), Lane.INGEST)
        return await fut

    async def record_rejection(self, rejection: Rejection) -> None:
        async def run(tx: _Tx) -> None:
            await tx.execute(
                "INSERT INTO rejections (id, received_at, source, provider, method, path, "
                "status, reason, detail, headers, remote, body_sha256, body_size, body, replay, "
                "stored_bytes, request_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    rejection.id,
                    rejection.received_at,
                    _text(rejection.source),
                    rejection.provider,
                    _text(rejection.method),
                    _text(rejection.path),
                    rejection.status,
                    rejection.reason,
                    _text(rejection.detail),
                    _json_text(rejection.headers),
                    _text(rejection.remote),
                    rejection.body_sha256,
                    rejection.body_size,
                    rejection.body,
                    rejection.replay,
                    rejection_size(rejection),
                    rejection.request_id,
                ),
            )

        await self._write(run)

    async def count_rejections(self, counts: Sequence[RejectionCount]) -> None:
        # Sorted: two instances adding to the same rows lock them in the same order.
        rows = sorted(
            (c.minute, _text(c.source), c.reason, c.total, c.recorded, c.body_bytes) for c in counts
        )

        async def run(tx: _Tx) -> None:
            async with tx.conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO rejection_counts (minute, source, reason, total, recorded, "
                    "body_bytes) VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (minute, source, reason) DO UPDATE SET "
                    "total = rejection_counts.total + excluded.total, "
                    "recorded = rejection_counts.recorded + excluded.recorded, "
                    "body_bytes = rejection_counts.body_bytes + excluded.body_bytes",
                    rows,
                )

        if rows:
            await self._write(run)

    async def trim_rejections(self, max_bytes: int) -> int:
        changed: int = await self._write(_exec(for_postgres(TRIM_REJECTIONS), (max_bytes,)))
        return changed

    async def rejection_counts(
        self, source: str | None, since: datetime, until: datetime | None
    ) -> list[dict[str, Any]]:
        clauses = ["minute >= %s"]
        params: list[Any] = [since]
        if until is not None:
            clauses.append("minute < %s")
            params.append(until)
        if source is not None:
            clauses.append("source = %s")
            params.append(source)
        query = REJECTION_COUNTS.format(where=" AND ".join(clauses))
        rows = await self._read(lambda tx: tx.all(query.encode(), params))
        return [rejection_count_row(_plain(row)) for row in rows]

    @staticmethod
    async def _insert_start(tx: _Tx, event: InboundEvent, decision: Decision) -> None:
        """A start's event, decision and (when approved) session: one statement."""
        if decision.session_id is None:
            await tx.execute(
                f"WITH e AS ({_INSERT_EVENT}) {_INSERT_DECISION}",
                (*_event_params(event), *_decision_params(decision)),
            )
            return
        await tx.execute(
            f"WITH e AS ({_INSERT_EVENT}), d AS ({_INSERT_DECISION}) {_INSERT_SESSION}",
            (
                *_event_params(event),
                *_decision_params(decision),
                *_session_params(event, decision),
            ),
        )
        tx.changed("session", f"{decision.source}|{decision.session_id}")

    async def record_session_start(
        self,
        event: InboundEvent,
        decision: Decision,
        claim: Callable[[], bool] | None = None,
        limits: Sequence[Limit] = (),
    ) -> None:
        async def run(tx: _Tx) -> None:
            if claim is not None and not claim():
                raise Abandoned("the deadline fallback answered first")
            for limit in limits:
                await _check_limit(tx, limit, decision.session_id)
            await self._insert_start(tx, event, decision)

        locks = [self._lock(f"limit:{lim.subject}:{lim.subject_id}") for lim in limits]
        await self._write(run, locks, Lane.DECISION)

    async def record_fallback(
        self, event: InboundEvent, decision: Decision, void_session: str | None
    ) -> None:
        async def run(tx: _Tx) -> None:
            await self._insert_start(tx, event, decision)
            if void_session is not None:
                await tx.execute(
                    "UPDATE authorized_sessions SET status = 'void' "
                    "WHERE source = %s AND session_id = %s",
                    (decision.source, _text(void_session)),
                )
                tx.changed("session", f"{decision.source}|{void_session}")

        await self._write(run, lane=Lane.AUDIT)

    async def record_session_end(self, event: InboundEvent, end: SessionEnd) -> SessionEndResult:
        async def run(tx: _Tx) -> SessionEndResult:
            session_id, found = end.session_ids[0], None
            for candidate in end.session_ids:
                found = await tx.one(
                    "SELECT status, token, group_id FROM authorized_sessions "
                    "WHERE session_id = %s AND source = %s FOR UPDATE",
                    (_text(candidate), event.source),
                )
                if found is not None:
                    session_id = candidate
                    break
            status = found["status"] if found else None
            matched = status in ("active", "ended")
            flags = event.flags
            if not matched and "unmatched" not in flags:
                event.flags = [*flags, "unmatched"]
            if not await self._insert_event(tx, event):
                return SessionEndResult(False, await self._existing_id(tx, event), matched)
            ended_at = end.ended_at or event.received_at
            if status is None:
                await tx.execute(
                    "INSERT INTO authorized_sessions (session_id, source, status, ended_at, "
                    "energy_kwh, end_event_id, token, group_id) "
                    "VALUES (%s, %s, 'unmatched', %s, %s, %s, %s, %s)",
                    (
                        _text(session_id),
                        event.source,
                        ended_at,
                        end.energy_kwh,
                        event.id,
                        _text(end.token),
                        _text(end.group_id),
                    ),
                )
            elif status == "active":
                await tx.execute(
                    "UPDATE authorized_sessions SET status = 'ended', ended_at = %s, "
                    "energy_kwh = %s, end_event_id = %s WHERE source = %s AND session_id = %s",
                    (ended_at, end.energy_kwh, event.id, event.source, _text(session_id)),
                )
            tx.changed("session", f"{event.source}|{session_id}")
            if end.energy_kwh is not None:
                token = (found["token"] if found else None) or end.token
                group = (found["group_id"] if found else None) or end.group_id
                report = ConsumptionReport(
                    session_key=f"session:{session_id}",
                    origin="zaptec",
                    token=token,
                    group_id=group,
                    kwh=end.energy_kwh,
                    occurred_at=ended_at,
                )
                await _account(tx, event.source, report)
            return SessionEndResult(True, event.id, matched)

        result: SessionEndResult = await self._write(run, lane=Lane.DECISION)
        return result

    # -- retention ---------------------------------------------------------------------

    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> dict[str, int]:
        floor = floor_id(older_than)
        steps: list[tuple[str, str, str, tuple[Any, ...]]] = [
            (
                "inbox_bodies",
                "SELECT count(*) FROM inbox WHERE id < %s AND octet_length(raw_body) > 0 "
                "AND status = 'processed'",
                "UPDATE inbox SET raw_body = '' WHERE id IN (SELECT id FROM inbox "
                "WHERE id < %s AND octet_length(raw_body) > 0 AND status = 'processed' "
                "LIMIT 5000)",
                (floor,),
            ),
            (
                "rejections",
                "SELECT count(*) FROM rejections WHERE id < %s",
                "DELETE FROM rejections WHERE id IN (SELECT id FROM rejections "
                "WHERE id < %s LIMIT 5000)",
                (floor,),
            ),
            (
                "rejection_counts",
                "SELECT count(*) FROM rejection_counts WHERE minute < %s",
                "DELETE FROM rejection_counts WHERE minute < %s",
                (older_than,),
            ),
            (
                "delivery_attempts",
                "SELECT count(*) FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM "
                "deliveries WHERE id < %s AND status IN ('delivered', 'dead'))",
                "DELETE FROM delivery_attempts WHERE id IN (SELECT id FROM delivery_attempts "
                "WHERE delivery_id IN (SELECT id FROM deliveries WHERE id < %s "
                "AND status IN ('delivered', 'dead')) LIMIT 5000)",
                (floor,),
            ),
            (
                "deliveries",
                "SELECT count(*) FROM deliveries WHERE id < %s AND status IN ('delivered', 'dead')",
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
                "WHERE id < %s AND status IN ('delivered', 'dead') LIMIT 5000)",
                (floor,),
            ),
            (
                "auth_changes",
                "SELECT count(*) FROM auth_changes WHERE changed_at < %s "
                "AND seq < (SELECT max(seq) FROM auth_changes)",
                "DELETE FROM auth_changes WHERE seq IN (SELECT seq FROM auth_changes "
                "WHERE changed_at < %s AND seq < (SELECT max(seq) FROM auth_changes) "
                "LIMIT 5000)",
                (older_than,),
            ),
        ]
        done: dict[str, int] = {}
        for name, count_sql, change_sql, params in steps:
            if dry_run:
                row = await self._read(_one(count_sql, params))
                done[name] = int(next(iter(row.values()))) if row else 0
                continue
            total = 0
            while True:
                # Small transactions: ingest keeps flowing between them.
                changed: int = await self._write(_exec(change_sql, params))
                total += changed
                if changed < 5000:
                    break
            done[name] = total
        return done

    # -- reads -------------------------------------------------------------------------

    async def list_events(self, where: EventFilter, cursor: str | None, limit: int) -> Page:
        clauses, params = _filters(
            [
                ("source", where.source),
                ("provider", where.provider),
                ("event_type", where.event_type),
                ("status", where.status),
            ],
            "received_at",
            where.since,
        )
        return await self._page("inbox", _EVENT_COLUMNS, clauses, params, cursor, limit, event_row)

    async def _page(
        self,
        table: str,
        columns: str,
        clauses: list[str],
        params: list[Any],
        cursor: str | None,
        limit: int,
        convert: Callable[[Row], dict[str, Any]],
    ) -> Page:
        clauses = list(clauses)
        params = list(params)
        if cursor:
            clauses.append("id < %s")
            params.append(decode_cursor(cursor))
        query = f"SELECT {columns} FROM {table}"
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        query += " ORDER BY id DESC LIMIT %s"
        params.append(limit + 1)

        rows = await self._read(lambda tx: tx.all(query.encode(), params))
        items = [convert(_plain(row)) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1]["id"]) if more and items else None)

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        async def run(tx: _Tx) -> dict[str, Any] | None:
            row = await tx.one(
                f"SELECT {_EVENT_COLUMNS}, raw_body FROM inbox WHERE id = %s".encode(),
                (event_id,),
            )
            if row is None:
                return None
            item = event_row(_plain(row))
            item["raw_body"] = bytes(row["raw_body"])
            return item

        return await self._read(run)

    async def list_rejections(self, source: str | None, cursor: str | None, limit: int) -> Page:
        clauses, params = ([], []) if source is None else (["source = %s"], [source])
        columns = (
            "id, received_at, source, provider, method, path, status, reason, detail, "
            "headers, remote, body_sha256, body_size, body, rerun_event_id, request_id"
        )
        return await self._page(
            "rejections", columns, clauses, params, cursor, limit, rejection_row
        )

    async def get_rejection(self, rejection_id: str) -> dict[str, Any] | None:
        async def run(tx: _Tx) -> dict[str, Any] | None:
            row = await tx.one("SELECT * FROM rejections WHERE id = %s", (rejection_id,))
            if row is None:
                return None
            item = rejection_row(_plain(row))
            item["replay"] = bytes(row["replay"]) if row["replay"] is not None else None
            return item

        return await self._read(run)

    async def mark_rejection_rerun(self, rejection_id: str, event_id: str) -> None:
        async def run(tx: _Tx) -> None:
            await tx.execute(
                "UPDATE rejections SET rerun_event_id = %s WHERE id = %s", (event_id, rejection_id)
            )

        await self._write(run)

    async def find_event(self, source: str, dedup_key: str) -> str | None:
        async def run(tx: _Tx) -> str | None:
            row = await tx.one(
                "SELECT id FROM inbox WHERE source = %s AND dedup_key = %s",
                (_text(source), _text(dedup_key)),
            )
            return str(row["id"]) if row else None

        return await self._read(run)

    async def list_decisions(self, where: DecisionFilter, cursor: str | None, limit: int) -> Page:
        clauses, params = _filters(
            [
                ("source", where.source),
                ("token", where.token.strip().upper() if where.token else None),
                ("result", where.result),
            ],
            "decided_at",
            where.since,
        )
        if where.until is not None:
            clauses.append("decided_at < %s")
            params.append(where.until)
        return await self._page("decisions", "*", clauses, params, cursor, limit, decision_row)

    async def get_session(self, source: str, session_id: str) -> dict[str, Any] | None:
        async def run(tx: _Tx) -> dict[str, Any] | None:
            row = await tx.one(
                "SELECT * FROM authorized_sessions WHERE source = %s AND session_id = %s",
                (source, _text(session_id)),
            )
            return _plain(row) if row else None

        return await self._read(run)

    # -- authorization -----------------------------------------------------------------

    async def auth_snapshot(self, since: datetime) -> AuthSnapshot:
        async def run(tx: _Tx) -> AuthSnapshot:
            async with tx.conn.transaction():
                # One snapshot: the change-log position matches the rows read with it.
                await tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                seq = await tx.one("SELECT coalesce(max(seq), 0) AS seq FROM auth_changes")
                entities = [
                    AuthEntity(
                        kind=r["kind"],
                        key=r["key"],
                        doc=r["doc"].encode(),
                        managed_by=r["managed_by"],
                    )
                    for r in await tx.all("SELECT kind, key, doc, managed_by FROM auth_entities")
                ]
                sessions = [
                    _plain(r)
                    for r in await tx.all(
                        "SELECT * FROM authorized_sessions WHERE status = 'active'"
                    )
                ]
                consumption = [
                    _plain(r)
                    for r in await tx.all(
                        "SELECT * FROM consumption WHERE occurred_at >= %s", (since,)
                    )
                ]
            assert seq is not None
            return AuthSnapshot(
                seq=int(seq["seq"]), entities=entities, sessions=sessions, consumption=consumption
            )

        return await self._read(run)

    async def auth_changes(self, after: int, limit: int) -> list[AuthChange]:
        async def run(tx: _Tx) -> list[AuthChange]:
            rows = await tx.all(
                "SELECT seq, kind, key FROM auth_changes WHERE seq > %s ORDER BY seq LIMIT %s",
                (after, limit),
            )
            current = await _current(tx, {(r["kind"], r["key"]) for r in rows})
            return [
                AuthChange(
                    seq=r["seq"],
                    kind=r["kind"],
                    key=r["key"],
                    row=current.get((r["kind"], r["key"])),
                )
                for r in rows
            ]

        return await self._read(run)

    async def auth_put(self, entities: list[AuthEntity]) -> None:
        await self.auth_write(entities, [])

    async def auth_delete(self, kind: str, key: str) -> bool:
        return await self.auth_write([], [(kind, key)]) == 1

    async def auth_write(
        self, put: list[AuthEntity], delete: list[tuple[str, str]], *, create: bool = False
    ) -> int:
        async def run(tx: _Tx) -> int:
            now = utcnow()
            for entity in put:
                values = (entity.kind, entity.key, entity.doc.decode(), entity.managed_by, now)
                if create:
                    changed = await tx.execute(
                        "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, key) DO NOTHING",
                        values,
                    )
                    if changed != 1:
                        raise AlreadyExists(f"{entity.kind} {entity.key} already exists")
                else:
                    await tx.execute(
                        "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (kind, key) DO UPDATE SET "
                        "doc = excluded.doc, managed_by = excluded.managed_by, "
                        "updated_at = excluded.updated_at",
                        values,
                    )
                tx.changed(entity.kind, entity.key)
            deleted = 0
            for kind, key in delete:
                if await tx.execute(
                    "DELETE FROM auth_entities WHERE kind = %s AND key = %s", (kind, key)
                ):
                    tx.changed(kind, key)
                    deleted += 1
            return deleted

        result: int = await self._write(run)
        return result

    async def auth_get(self, kind: str, key: str) -> AuthEntity | None:
        async def run(tx: _Tx) -> AuthEntity | None:
            row = await tx.one(
                "SELECT doc, managed_by FROM auth_entities WHERE kind = %s AND key = %s",
                (kind, key),
            )
            if row is None:
                return None
            return AuthEntity(
                kind=kind, key=key, doc=row["doc"].encode(), managed_by=row["managed_by"]
            )

        return await self._read(run)

    async def auth_list(self, kind: str, after: str | None, limit: int) -> list[AuthEntity]:
        async def run(tx: _Tx) -> list[AuthEntity]:
            rows = await tx.all(
                "SELECT key, doc, managed_by FROM auth_entities WHERE kind = %s "
                'AND key COLLATE "C" > %s ORDER BY key COLLATE "C" LIMIT %s',
                (kind, after or "", limit),
            )
            return [
                AuthEntity(
                    kind=kind, key=r["key"], doc=r["doc"].encode(), managed_by=r["managed_by"]
                )
                for r in rows
            ]

        return await self._read(run)

    async def auth_sync_config(self, entities: list[AuthEntity]) -> int:
        async def run(tx: _Tx) -> int:
            # Instances starting together write the same rows: one at a time.
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock("sync_config"),))
            wanted = {(e.kind, e.key): e for e in entities}
            changes = 0
            current = await tx.all(
                "SELECT kind, key, doc FROM auth_entities WHERE managed_by = 'config'"
            )
            for row in current:
                kind, key, doc = row["kind"], row["key"], row["doc"]
                entity = wanted.get((kind, key))
                if entity is None:
                    await tx.execute(
                        "DELETE FROM auth_entities WHERE kind = %s AND key = %s", (kind, key)
                    )
                    tx.changed(kind, key)
                    changes += 1
                elif entity.doc.decode() == doc:
                    del wanted[(kind, key)]
            now = utcnow()
            for entity in wanted.values():
                await tx.execute(
                    "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                    "VALUES (%s, %s, %s, 'config', %s) ON CONFLICT (kind, key) DO UPDATE SET "
                    "doc = excluded.doc, managed_by = 'config', updated_at = excluded.updated_at",
                    (entity.kind, entity.key, entity.doc.decode(), now),
                )
                tx.changed(entity.kind, entity.key)
                changes += 1
            return changes

        result: int = await self._write(run)
        return result

    # -- processing and delivery (docs/adr/0006) -----------------------------------------

    def _sync_pool(self) -> ConnectionPool[Connection[Any]]:
        """Synchronous connections for the processing handlers and view listings, whose
        row access (`ViewTx`) is synchronous; used from worker threads."""
        if self._sync is None:
            self._sync = ConnectionPool(
                self.url,
                min_size=0,
                max_size=max(2, self._pool_size // 3),
                kwargs={"autocommit": True},
                # Views and processing are not on the answer path: the pool's own check
                # (with its back-off) replaces connections the server dropped.
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

    dialect = "postgresql"

    async def _query(self, fn: Callable[[Connection[Any]], T]) -> T:
        """A search or aggregate (store/queries.py) on a synchronous connection."""
        return await self._in_thread(fn)

    async def process_pending(self, handler: Handler, limit: int) -> ProcessResult:
        def run(conn: Connection[Any]) -> ProcessResult:
            try:
                return _process_batch(conn, handler, limit, isolate=False)
            except _Isolate:
                # An event failed, or a lock conflict broke the transaction: everything
                # rolled back, so run the batch again with a savepoint per event.
                return _process_batch(conn, handler, limit, isolate=True)

        return await self._in_thread(run)

    async def claim_deliveries(
        self,
        owner: str,
        now: datetime,
        limit: int,
        lease_seconds: float,
        destinations: list[str],
    ) -> list[DeliveryJob]:
        if not destinations or limit <= 0:
            return []

        async def run(tx: _Tx) -> list[DeliveryJob]:
            until = now + timedelta(seconds=lease_seconds)
            rows = await tx.all(
                "WITH due AS (SELECT id FROM deliveries "
                "WHERE status IN ('pending', 'failed') AND next_attempt_at <= %s "
                "AND destination = ANY(%s) AND (lease_until IS NULL OR lease_until < %s) "
                "ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "UPDATE deliveries d SET lease_owner = %s, lease_until = %s FROM due "
                "WHERE d.id = due.id "
                "RETURNING d.id, d.event_id, d.destination, d.attempts, d.created_at, "
                "d.next_attempt_at",
                (now, destinations, now, limit, owner, until),
            )
            rows.sort(key=lambda r: (r["next_attempt_at"], r["id"]))
            events = await _events_by_id(tx, [row["event_id"] for row in rows])
            return [
                DeliveryJob(
                    id=row["id"],
                    destination=row["destination"],
                    attempt=int(row["attempts"]) + 1,
                    created_at=row["created_at"].astimezone(UTC),
                    event=events[row["event_id"]],
                )
                for row in rows
                if row["event_id"] in events
            ]

        result: list[DeliveryJob] = await self._write(run)
        return result

    async def finish_delivery(self, job: DeliveryJob, owner: str, outcome: DeliveryOutcome) -> bool:
        async def run(tx: _Tx) -> bool:
            now = utcnow()
            changed = await tx.execute(
                "UPDATE deliveries SET status = %s, attempts = %s, "
                "next_attempt_at = coalesce(%s, next_attempt_at), lease_owner = NULL, "
                "lease_until = NULL, last_status_code = %s, last_error = %s, updated_at = %s, "
                "delivered_at = CASE WHEN %s = 'delivered' THEN %s ELSE delivered_at END "
                "WHERE id = %s AND lease_owner = %s",
                (
                    outcome.state,
                    job.attempt,
                    outcome.retry_at,
                    outcome.status_code,
                    _text(outcome.error),
                    now,
                    outcome.state,
                    now,
                    job.id,
                    owner,
                ),
            )
            await tx.execute(
                "INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, "
                "duration_ms, outcome, status_code, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    new_id(),
                    job.id,
                    job.attempt,
                    outcome.started_at,
                    outcome.duration_ms,
                    outcome.state,
                    outcome.status_code,
                    _text(outcome.error),
                ),
            )
            return changed == 1

        result: bool = await self._write(run)
        return result

    async def replay(self, where: ReplayFilter, *, dry_run: bool = False) -> int:
        async def run(tx: _Tx) -> int:
            now = utcnow()
            queued = 0
            if where.event_ids:
                for event_id in where.event_ids:
                    queued += await _replay_event(tx, event_id, where, now)
                return queued
            clauses, params = _delivery_selection(where)
            queued += await tx.execute(
                (
                    "UPDATE deliveries SET status = 'pending', attempts = 0, "
                    "next_attempt_at = %s, lease_owner = NULL, lease_until = NULL, "
                    "updated_at = %s WHERE " + clauses
                ).encode(),
                (now, now, *params),
            )
            if where.status in (None, "failed") and where.destination is None:
                event_clauses = ["status = 'failed'"]
                event_params: list[Any] = []
                if where.source is not None:
                    event_clauses.append("source = %s")
                    event_params.append(where.source)
                if where.since is not None:
                    event_clauses.append("id >= %s")
                    event_params.append(floor_id(where.since))
                queued += await tx.execute(
                    (
                        "UPDATE inbox SET status = 'received', error = NULL WHERE "
                        + " AND ".join(event_clauses)
                    ).encode(),
                    event_params,
                )
            return queued

        async def rehearse(tx: _Tx) -> int:
            await tx.execute(b"SAVEPOINT replay_dry_run")
            try:
                return await run(tx)
            finally:
                await tx.execute(b"ROLLBACK TO SAVEPOINT replay_dry_run")
                await tx.execute(b"RELEASE SAVEPOINT replay_dry_run")

        result: int = await self._write(rehearse if dry_run else run)
        return result

    async def list_deliveries(self, where: ViewFilter, cursor: str | None, limit: int) -> Page:
        clauses, params = _filters(
            [
                (column, where.equal.get(column))
                for column in ("id", "event_id", "destination", "status")
            ],
            "created_at",
            where.since,
        )
        if where.until is not None:
            clauses.append("created_at < %s")
            params.append(where.until)
        return await self._page("deliveries", "*", clauses, params, cursor, limit, dict)

    async def delivery_attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        async def run(tx: _Tx) -> list[dict[str, Any]]:
            rows = await tx.all(
                "SELECT * FROM delivery_attempts WHERE delivery_id = %s ORDER BY attempt, id",
                (delivery_id,),
            )
            return [_plain(row) for row in rows]

        return await self._read(run)

    async def destination_states(self) -> dict[str, dict[str, Any]]:
        async def run(tx: _Tx) -> dict[str, dict[str, Any]]:
            rows = await tx.all("SELECT * FROM destination_state WHERE disabled_at IS NOT NULL")
            return {row["name"]: _plain(row) for row in rows}

        return await self._read(run)

    async def set_destination_disabled(self, name: str, reason: str | None) -> None:
        async def run(tx: _Tx) -> None:
            now = utcnow()
            await tx.execute(
                "INSERT INTO destination_state (name, disabled_at, reason, updated_at) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                "disabled_at = excluded.disabled_at, reason = excluded.reason, "
                "updated_at = excluded.updated_at",
                (name, now if reason is not None else None, _text(reason), now),
            )

        await self._write(run)

    async def requeue_event(
        self,
        event_id: str,
        document: Any,
        event_type: str,
        dedup_key: str,
        subject: str | None,
        flags: list[str],
    ) -> bool:
        async def run(tx: _Tx) -> bool:
            try:
                async with tx.conn.transaction():
                    changed = await tx.execute(
                        "UPDATE inbox SET document = %s, event_type = %s, dedup_key = %s, "
                        "subject = %s, flags = %s, status = 'received', error = NULL "
                        "WHERE id = %s",
                        (
                            _json_text(document),
                            _text(event_type),
                            _text(dedup_key),
                            _text(subject),
                            _json_text(flags),
                            event_id,
                        ),
                    )
            except errors.UniqueViolation:
                return False
            return changed == 1

        result: bool = await self._write(run)
        return result

    async def list_view(
        self, table: str, where: ViewFilter, cursor: str | None, limit: int
    ) -> Page:
        from hookgate.store.viewtx import fetch_page

        return await self._in_thread(
            lambda conn: fetch_page(conn, table, where, cursor, limit, "postgresql")
        )

    async def view_rows(self, table: str, where: ViewFilter) -> list[dict[str, Any]]:
        from hookgate.store.viewtx import fetch_rows

        return await self._in_thread(lambda conn: fetch_rows(conn, table, where, "postgresql"))

    async def sql_read(self, fn: Callable[[Any], T]) -> T:
        return await self._in_thread(fn)

    async def sql_write(self, fn: Callable[[Any], T]) -> T:
        return await self._in_thread(fn)


class _Single(Exception):
    """A lone write failed: its outcome is known, the transaction is rolled back."""

    def __init__(self, outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        super().__init__("single write failed")
        self.outcomes = outcomes


_STORED_COLUMNS = (
    "id, source, provider, event_type, received_at, subject, status, flags, document, trace_context"
)


def _stored_event(
    row: Mapping[str, Any], decision: dict[str, Any] | None, *, decoded: bool = False
) -> StoredEvent:
    """`decoded`: the JSON columns come from a connection that decodes them (the
    synchronous ones, shared with the views); otherwise they are text."""
    flags, document = row["flags"], row["document"]
    if not decoded:
        flags = msgspec.json.decode(flags)
        document = msgspec.json.decode(document) if document else None
    return StoredEvent(
        id=row["id"],
        source=row["source"],
        provider=row["provider"],
        event_type=row["event_type"],
        received_at=row["received_at"].astimezone(UTC),
        subject=row["subject"],
        status=row["status"],
        flags=flags,
        document=document,
        decision=decision,
        trace_context=row["trace_context"],
    )


def _decisions_of_sync(conn: Connection[Any], event_ids: list[str]) -> dict[str, dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    cur.execute("SELECT * FROM decisions WHERE event_id = ANY(%s) ORDER BY id", (event_ids,))
    found = {}
    for row in cur.fetchall():
        item = _plain(row)  # JSON arrives decoded on these connections
        item["fallback"] = bool(item["fallback"])
        found[row["event_id"]] = item
    return found


def _event_params(event: InboundEvent) -> tuple[Any, ...]:
    return (
        event.id,
        _text(event.source),
        event.provider,
        _text(event.event_type),
        event.received_at,
        _text(event.dedup_key),
        _text(event.subject),
        event.status,
        _json_text(event.flags),
        _json_text(event.headers),
        _json_text(event.document),
        event.raw_body,
        event.body_sha256,
        event.request_id,
        event.trace_context,
        _text(event.source),
        _text(event.dedup_key),
    )


def _decision_params(decision: Decision) -> tuple[Any, ...]:
    return (
        decision.id,
        decision.decided_at,
        decision.source,
        decision.event_id,
        _text(decision.charger_id),
        _text(decision.token),
        _text(decision.user_id),
        _text(decision.installation_id),
        decision.result,
        _json_text(decision.reasons),
        _text(decision.session_id),
        decision.fallback,
        decision.latency_us,
    )


def _session_params(event: InboundEvent, decision: Decision) -> tuple[Any, ...]:
    return (
        _text(decision.session_id),
        decision.source,
        _text(decision.charger_id),
        _text(decision.token),
        decision.id,
        decision.decided_at,
        event.id,
        _text(decision.group_id),
        decision.reserved_kwh,
    )


def _process_batch(
    conn: Connection[Any], handler: Handler, limit: int, *, isolate: bool
) -> ProcessResult:
    """Project up to `limit` received events in one transaction.

    Rows another instance is processing are locked: they are skipped, and a killed
    instance's rows are free again when its connection dies. Without `isolate` nothing
    runs in a savepoint (two round trips per event fewer) and any failure raises
    `_Isolate` after rolling everything back; with it, each event has its own savepoint,
    a failing event is marked failed, and a lock conflict with another instance leaves
    the event (and the rest of the batch) received for the next batch.
    """
    from hookgate.store.search import SearchIndex
    from hookgate.store.viewtx import SqlViewTx

    with conn.transaction():
        index = SearchIndex(conn, "postgresql")
        cur = conn.cursor(row_factory=dict_row)
        cur.execute(
            f"SELECT {_STORED_COLUMNS} FROM inbox WHERE status = 'received' "
            "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        )
        rows = cur.fetchall()
        if not rows:
            return ProcessResult(0, 0, 0)
        decisions = _decisions_of_sync(conn, [row["id"] for row in rows])
        tx = SqlViewTx(conn, "postgresql")
        now = utcnow()
        done: list[str] = []
        failed = deliveries = 0
        # Instances lock view rows in one order, by subject (projections do not depend on
        # the order events are applied in), so their batches do not wait in a circle.
        rows.sort(key=lambda row: (row["subject"] or "", row["id"]))
        for row in rows:
            event = _stored_event(row, decisions.get(row["id"]), decoded=True)
            if not isolate:
                try:
                    deliveries += _apply(conn, tx, handler, event, now)
                except Exception as exc:
                    raise _Isolate from exc  # leaving the block rolls everything back
                done.append(event.id)
                index.add(event, "processed")
                continue
            try:
                with conn.transaction():
                    deliveries += _apply(conn, tx, handler, event, now)
                done.append(event.id)
                index.add(event, "processed")
            except _RETRY:
                # A lock conflict with another instance is not the event's fault: it
                # stays received; commit what is done and let the next batch take it.
                break
            except Exception as exc:
                conn.execute(
                    "UPDATE inbox SET status = 'failed', processed_at = %s, error = %s "
                    "WHERE id = %s",
                    (now, _text(f"{type(exc).__name__}: {exc}"[:2000]), event.id),
                )
                index.add(event, "failed")
                failed += 1
        index.flush()
        if done:
            conn.execute(
                "UPDATE inbox SET status = 'processed', processed_at = %s, error = NULL "
                "WHERE id = ANY(%s)",
                (now, done),
            )
        return ProcessResult(len(done), failed, deliveries)


def _apply(
    conn: Connection[Any], tx: ViewTx, handler: Handler, event: StoredEvent, now: datetime
) -> int:
    """One event's projection and its deliveries; how many deliveries were created."""
    return sum(
        _enqueue_delivery_sync(conn, event.id, name, now)
        for name in dict.fromkeys(handler(tx, event))
    )


def _enqueue_delivery_sync(
    conn: Connection[Any], event_id: str, destination: str, now: datetime
) -> int:
    cur = conn.execute(
        "INSERT INTO deliveries (id, event_id, destination, status, attempts, next_attempt_at, "
        "created_at, updated_at) VALUES (%s, %s, %s, 'pending', 0, %s, %s, %s) "
        "ON CONFLICT (event_id, destination) DO NOTHING",
        (new_id(), event_id, destination, now, now, now),
    )
    return cur.rowcount


async def _events_by_id(tx: _Tx, event_ids: list[str]) -> dict[str, StoredEvent]:
    unique = list(dict.fromkeys(event_ids))
    if not unique:
        return {}
    decisions = {
        row["event_id"]: decision_row(_plain(row))
        for row in await tx.all(
            "SELECT * FROM decisions WHERE event_id = ANY(%s) ORDER BY id", (unique,)
        )
    }
    return {
        row["id"]: _stored_event(row, decisions.get(row["id"]))
        for row in await tx.all(
            f"SELECT {_STORED_COLUMNS} FROM inbox WHERE id = ANY(%s)".encode(), (unique,)
        )
    }


async def _replay_event(tx: _Tx, event_id: str, where: ReplayFilter, now: datetime) -> int:
    """Queue one event again: its failed processing, and its deliveries (or the one named)."""
    row = await tx.one("SELECT status FROM inbox WHERE id = %s", (event_id,))
    if row is None:
        return 0
    queued = 0
    if row["status"] == "failed":
        await tx.execute(
            "UPDATE inbox SET status = 'received', error = NULL WHERE id = %s", (event_id,)
        )
        queued += 1
    clauses = ["event_id = %s"]
    params: list[Any] = [event_id]
    if where.destination is not None:
        clauses.append("destination = %s")
        params.append(where.destination)
    if where.status is not None:
        clauses.append("status = %s")
        params.append(where.status)
    changed = await tx.execute(
        (
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = %s, "
            "lease_owner = NULL, lease_until = NULL, updated_at = %s WHERE " + " AND ".join(clauses)
        ).encode(),
        (now, now, *params),
    )
    queued += changed
    if changed == 0 and where.destination is not None and row["status"] == "processed":
        # A destination added after the event was processed: deliver it there now.
        queued += await tx.execute(
            "INSERT INTO deliveries (id, event_id, destination, status, attempts, "
            "next_attempt_at, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'pending', 0, %s, %s, %s) "
            "ON CONFLICT (event_id, destination) DO NOTHING",
            (new_id(), event_id, where.destination, now, now, now),
        )
    return queued


def _delivery_selection(where: ReplayFilter) -> tuple[str, list[Any]]:
    clauses = ["1 = 1"]
    params: list[Any] = []
    if where.status is not None:
        clauses.append("status = %s")
        params.append(where.status)
    if where.destination is not None:
        clauses.append("destination = %s")
        params.append(where.destination)
    if where.since is not None:
        clauses.append("id >= %s")
        params.append(floor_id(where.since))
    if where.source is not None:
        clauses.append("event_id IN (SELECT id FROM inbox WHERE source = %s)")
        params.append(where.source)
    return " AND ".join(clauses), params


_APPLIED = "SELECT version FROM schema_migrations"


def _one(query: str, params: tuple[Any, ...]) -> Callable[[_Tx], Awaitable[Row | None]]:
    return lambda tx: tx.one(query.encode(), params)


def _exec(query: str, params: tuple[Any, ...]) -> Callable[[_Tx], Awaitable[int]]:
    return lambda tx: tx.execute(query.encode(), params)


def _filters(
    equal: list[tuple[str, str | None]], time_column: str, since: datetime | None
) -> tuple[list[str], list[Any]]:
    """WHERE clauses for equality filters and a lower time bound, which becomes an id
    range too (ids are time-ordered) so the primary key serves it."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in equal:
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        clauses.append(f"id >= %s AND {time_column} >= %s")
        params.extend([floor_id(since), since])
    return clauses, params


async def _check_limit(tx: _Tx, limit: Limit, session_id: str | None) -> None:
    """Raise LimitReached when `limit` is broken by what every instance has committed.
    The caller holds the subject's advisory lock, so no other approval for it can commit
    between this check and this transaction's commit."""
    column = sql.Identifier("token" if limit.subject == "token" else "group_id")
    active = await tx.one(
        sql.SQL(
            "SELECT count(*) AS n, coalesce(sum(coalesce(reserved_kwh, '0')::numeric), 0) AS kwh "
            "FROM authorized_sessions WHERE {} = %s AND status = 'active' "
            "AND started_at >= %s AND session_id IS DISTINCT FROM %s"
        ).format(column),
        (limit.subject_id, limit.active_since, session_id),
    )
    assert active is not None
    check_sessions(limit, active["n"])
    if limit.max_kwh is not None and limit.since is not None and limit.until is not None:
        used = await tx.one(
            sql.SQL(
                "SELECT coalesce(sum(kwh::numeric), 0) AS kwh FROM consumption "
                "WHERE {} = %s AND occurred_at >= %s AND occurred_at < %s"
            ).format(column),
            (limit.subject_id, limit.since, limit.until),
        )
        assert used is not None
        check_energy(limit, Decimal(used["kwh"]), Decimal(active["kwh"]))


# A session's consumption: the first report inserts it; a later one replaces the energy
# only when larger, the money when it names some, and changes nothing (returns no row, so
# no change-log entry) when it would change neither. kwh is decimal text.
_ACCOUNT = (
    "INSERT INTO consumption AS c (id, source, session_key, origin, token, group_id, kwh, "
    "money, currency, occurred_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (source, session_key) DO UPDATE SET "
    "kwh = CASE WHEN excluded.kwh::numeric > c.kwh::numeric THEN excluded.kwh ELSE c.kwh END, "
    "money = coalesce(excluded.money, c.money), "
    "currency = coalesce(excluded.currency, c.currency), "
    "token = coalesce(c.token, excluded.token), "
    "group_id = coalesce(c.group_id, excluded.group_id), "
    "occurred_at = excluded.occurred_at "
    "WHERE excluded.kwh::numeric > c.kwh::numeric "
    "OR (excluded.money IS NOT NULL AND excluded.money IS DISTINCT FROM c.money) "
    "RETURNING id"
)


def _account_params(source: str, report: ConsumptionReport) -> tuple[Any, ...]:
    return (
        new_id(),
        source,
        _text(report.session_key),
        report.origin,
        _text(report.token),
        _text(report.group_id),
        report.kwh,
        report.money,
        _text(report.currency),
        report.occurred_at,
    )


async def _account(tx: _Tx, source: str, report: ConsumptionReport) -> None:
    """Record a session's consumption; a later report replaces a smaller earlier one."""
    changed = await tx.one(_ACCOUNT, _account_params(source, report))
    if changed is not None:
        tx.changed("consumption", changed["id"])


async def _current(tx: _Tx, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], Row]:
    """The rows change-log entries point at, as they are now."""
    by_kind: dict[str, list[str]] = {}
    for kind, key in wanted:
        if kind == "session":  # keyed "source|session_id": group by source for the index
            source, _, session_id = key.partition("|")
            by_kind.setdefault(f"session|{source}", []).append(session_id)
        else:
            by_kind.setdefault(kind, []).append(key)
    found: dict[tuple[str, str], Row] = {}
    for kind, keys in by_kind.items():
        if kind.startswith("session|"):
            source = kind.partition("|")[2]
            for row in await tx.all(
                "SELECT * FROM authorized_sessions WHERE source = %s AND session_id = ANY(%s)",
                (source, keys),
            ):
                found[("session", f"{source}|{row['session_id']}")] = _plain(row)
        elif kind == "consumption":
            for row in await tx.all("SELECT * FROM consumption WHERE id = ANY(%s)", (keys,)):
                found[(kind, row["id"])] = _plain(row)
        else:
            for row in await tx.all(
                "SELECT key, doc FROM auth_entities WHERE kind = %s AND key = ANY(%s)",
                (kind, keys),
            ):
                found[(kind, row["key"])] = {"doc": row["doc"].encode()}
    return found
