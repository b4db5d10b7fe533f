"""Embedded SQLite backend: WAL with full sync, one writer thread, group commit.

Every write is queued to a single writer thread. The thread drains whatever is queued
(up to `batch_max`), runs each write in its own SAVEPOINT inside one transaction and
commits once, so concurrent requests share one fsync. Futures resolve only after
COMMIT has returned; with `journal_mode=WAL` and `synchronous=FULL` that means the
WAL is on stable storage. Reads use per-thread connections and never block the writer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import structlog

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
from hookgate.store.base import Handler
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
    rejection_count_row,
    rejection_row,
    rejection_size,
)
from hookgate.timeutil import iso, parse_iso, utcnow

T = TypeVar("T")
log = structlog.get_logger("hookgate.store")
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]
# Put on the main queue when an urgent job is queued, to wake the writer.
_URGENT = object()
# A batch that has run this long commits what it has done as soon as urgent work arrives;
# the rest goes first into the next batch, behind the urgent work.
_CUT_AFTER = 0.02

_json = msgspec.json.Encoder()
_EVENT_COLUMNS = (
    "id, source, provider, event_type, received_at, dedup_key, subject, status, flags, "
    "headers, document, body_sha256, length(raw_body) AS body_size, request_id"
)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    deadline = time.monotonic() + 30
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Turning a new file to WAL takes an exclusive lock, and SQLite answers
            # "locked" at once instead of waiting when another process (several
            # `migrate` on a new file) holds any lock: wait here as busy_timeout would.
            if "locked" not in str(exc) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.005)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


# The WAL is rewound once it holds WAL_RESTART_BYTES; journal_size_limit cuts the file
# back to WAL_LIMIT_BYTES when it rewinds, should a long reader have let it grow past.
WAL_RESTART_BYTES = 8 * 2**20
WAL_LIMIT_BYTES = 32 * 2**20
# How long the writer waits for readers to leave the WAL during a RESTART checkpoint, and
# how long it leaves the WAL alone after readers kept it from rewinding.
RESTART_WAIT_MS = 200
RESTART_BACKOFF_SECONDS = 2.0

# The database holds raw provider bodies and the OAuth signing key: readable by its owner
# only, like the configuration file. SQLite gives the -wal and -shm files the mode of the
# database file, so creating that one private covers all three.
PRIVATE_MODE = 0o600
_COMPANIONS = ("", "-wal", "-shm")


def _create_private(path: str) -> None:
    """Create the database file with mode 600 before SQLite opens it (SQLite would create
    it 644 under the usual umask); an existing file is left as it is."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def loose_files(path: str) -> list[tuple[str, int]]:
    """The database file and its -wal/-shm companions that others than the owner can
    read or write, with their modes."""
    found = []
    for suffix in _COMPANIONS:
        try:
            mode = os.stat(path + suffix).st_mode & 0o777
        except FileNotFoundError:
            continue
        if mode & 0o077:
            found.append((path + suffix, mode))
    return found


def _storage_error(path: str, action: str, exc: sqlite3.Error) -> StoreError:
    """A StoreError that says what to fix for the failures an operator can fix."""
    text = str(exc)
    if "full" in text:
        hint = f"free space on the filesystem holding {path} (or move the database), then retry"
    elif "readonly" in text or "permission" in text.lower() or "unable to open" in text:
        hint = f"check that {path} and its directory are writable by this user"
    else:
        hint = ""
    return StoreError(f"{action} {path}: {text}" + (f": {hint}" if hint else ""))


def _json_text(value: Any) -> str:
    return _json.encode(value).decode()


class _Checkpointer(threading.Thread):
    """Copies the WAL into the database file from its own connection (PASSIVE: it never
    waits for readers or the writer), so commits never pay for copying. A PASSIVE
    checkpoint never lets the WAL start over while the writer is busy, though: SQLite
    rewinds the WAL only when a write transaction begins after a checkpoint copied every
    frame, and under sustained load the writer is always inside a transaction. So once
    the WAL holds more than `restart_bytes`, the writer is asked to run a RESTART
    checkpoint between two batches (see _Writer.checkpoint)."""

    def __init__(
        self,
        path: str,
        writer: _Writer,
        interval: float = 0.25,
        restart_bytes: int = WAL_RESTART_BYTES,
    ) -> None:
        super().__init__(name="hookgate-sqlite-checkpoint", daemon=True)
        self._path = path
        self._writer = writer
        self._interval = interval
        self._restart_bytes = restart_bytes
        self.stopping = threading.Event()

    def run(self) -> None:
        conn = _connect(self._path)
        try:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            while not self.stopping.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):
                    _busy, frames, _copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).fetchone()
                    if frames * page_size >= self._restart_bytes:
                        self._writer.checkpoint_due.set()
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


class _Isolate(Exception):
    """A batch must be redone with one savepoint per write."""


class _Writer(threading.Thread):
    """The only thread that writes; batches queued jobs into one commit. Urgent jobs
    (Zaptec decisions) wait in a lane of their own and open the next batch; a long batch
    is cut short for them (`_CUT_AFTER`)."""

    def __init__(
        self,
        path: str,
        batch_max: int,
        on_batch: Callable[[int], None],
        writes: WriteQueue,
        health: WriteHealth | None = None,
    ) -> None:
        super().__init__(name="hookgate-sqlite-writer", daemon=True)
        self._path = path
        self._batch_max = batch_max
        self._on_batch = on_batch
        self.health = health or WriteHealth()
        self._writes = writes
        self.jobs: queue.SimpleQueue[_Job | object | None] = queue.SimpleQueue()
        self.urgent: collections.deque[_Job] = collections.deque()
        # Jobs of a batch cut short, not yet run: they go before anything newer.
        self.carry: list[_Job] = []
        self.ready = threading.Event()
        self.failure: BaseException | None = None
        self.checkpoint_due = threading.Event()
        self._restart_after = 0.0

    def run(self) -> None:
        try:
            conn = _connect(self._path)
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        except sqlite3.Error as exc:
            self.failure = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            stopping = False
            while True:
                # Urgent work left over from a full batch goes first, without waiting.
                if self.urgent or self.carry:
                    first: _Job | object | None = _URGENT
                elif stopping:
                    return
                else:
                    first = self.jobs.get()
                if first is None:
                    stopping, first = True, _URGENT
                batch: list[_Job] = []
                self._take_urgent(batch)
                if self.carry:
                    room = self._batch_max - len(batch)
                    batch.extend(self.carry[:room])
                    del self.carry[:room]
                if first is not _URGENT:
                    batch.append(first)  # type: ignore[arg-type]
                while not stopping and not self.carry and len(batch) < self._batch_max:
                    try:
                        job = self.jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                    elif job is _URGENT:
                        self._take_urgent(batch)
                    else:
                        batch.append(job)  # type: ignore[arg-type]
                if batch:
                    self._run_batch(conn, batch)
                if self.checkpoint_due.is_set():
                    self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        """RESTART checkpoint between two batches, on the writer's own connection: it has
        the write lock to itself here, so it cannot be starved by the next batch. It
        waits at most RESTART_WAIT_MS for readers to leave the WAL; when a long reader
        (a backup, a large export) keeps it there, the WAL is left to grow for
        RESTART_BACKOFF_SECONDS rather than stalling every commit."""
        self.checkpoint_due.clear()
        if time.monotonic() < self._restart_after:
            return
        try:
            conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
            busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        finally:
            conn.execute("PRAGMA busy_timeout=30000")
        if busy:
            self._restart_after = time.monotonic() + RESTART_BACKOFF_SECONDS

    def _take_urgent(self, batch: list[_Job]) -> None:
        urgent = self.urgent
        while urgent and len(batch) < self._batch_max:
            batch.append(urgent.popleft())

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            try:
                outcomes = self._attempt(conn, batch, isolate=False, cut=True)
                if len(outcomes) < len(batch):
                    self.carry[:0] = batch[len(outcomes) :]
                    batch = batch[: len(outcomes)]
            except _Isolate:
                # One write failed: redo the batch with a savepoint per write, so only
                # the failing write is lost. Writes are closures over their inputs and
                # can run again.
                outcomes = self._attempt(conn, batch, isolate=True)
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StoreError(f"commit failed: {exc}")
            outcomes = [(fut, loop, None, failure) for _fn, fut, loop in batch]
        self._note_outcome(outcomes)
        self._on_batch(len(batch))
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[1], []).append(outcome)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle, items)
            except RuntimeError:
                # A closed loop: nobody waits for these any more.
                self._writes.leave(len(items))

    def _settle(self, items: list[Any]) -> None:
        """On the caller's loop: the writes leave the queue only now, so a loop too busy
        to resume its callers keeps counting them (and shedding) until it does."""
        self._writes.leave(len(items))
        _resolve(items)

    def _note_outcome(self, outcomes: list[Any]) -> None:
        """A batch failed as storage (not as one write's own error, such as a constraint)
        when its commit failed or SQLite itself refused a write: disk full, I/O error,
        read-only file."""
        for outcome in outcomes:
            exc = outcome[3]
            # Plain StoreError: the commit failed (its subclasses are a write's answer).
            if type(exc) is StoreError or (
                isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError)
                and not isinstance(exc, sqlite3.IntegrityError)
            ):
                self.health.failed(str(exc))
                return
        self.health.committed()

    def _attempt(
        self, conn: sqlite3.Connection, batch: list[_Job], *, isolate: bool, cut: bool = False
    ) -> list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Any]]:
        """Run the batch in one transaction. Without `isolate`, a failure in a batch of
        several rolls back everything and raises _Isolate; with it, each write has its own
        savepoint. With `cut`, urgent work arriving once the batch has run `_CUT_AFTER`
        ends it early: fewer outcomes than jobs, the rest not run."""
        outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        began = time.perf_counter()
        for fn, fut, loop in batch:
            if cut and self.urgent and outcomes and time.perf_counter() - began > _CUT_AFTER:
                break
            if isolate:
                conn.execute("SAVEPOINT job")
            try:
                result = fn(conn)
            except Exception as exc:
                if not isolate:
                    conn.execute("ROLLBACK")
                    if len(batch) > 1:
                        raise _Isolate from exc
                    return [(fut, loop, None, exc)]
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((fut, loop, None, exc))
                continue
            if isolate:
                conn.execute("RELEASE job")
            outcomes.append((fut, loop, result, None))
        conn.execute("COMMIT")
        return outcomes


def _resolve(items: list[Any]) -> None:
    for fut, _loop, result, exc in items:
        if fut.done():
            continue
        if exc is not None:
            # A write's own answer (a clash, a limit) goes back as it is; anything else is
            # storage failing.
            fut.set_exception(exc if isinstance(exc, HookgateError) else StoreError(repr(exc)))
        else:
            fut.set_result(result)


class SqliteStore(QueryMethods):
    """The default store: a single SQLite file next to the gateway."""

    def __init__(
        self,
        path: str,
        *,
        batch_max: int = 512,
        auto_migrate: bool = False,
        on_batch: Callable[[int], None] | None = None,
        process_budget_ms: float | None = None,
        queue_max: int = 0,
        queue_reserve: int = 0,
    ) -> None:
        self.path = path
        self._batch_max = batch_max
        # Writes queued or in the running batch; ingest is refused beyond the bound
        # (0: unbounded) less the reserve kept for Zaptec decisions.
        self.writes = WriteQueue(queue_max, queue_reserve)
        # Time one processing job may hold the shared writer before it commits what it has
        # (None: the whole batch). The gateway sets it so ingest commits are not held back.
        self._process_budget = process_budget_ms / 1000 if process_budget_ms else None
        self._auto_migrate = auto_migrate
        self._on_batch = on_batch or (lambda size: None)
        self._writer: _Writer | None = None
        self._checkpointer: _Checkpointer | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        for name, mode in loose_files(self.path):
            log.warning(
                "database file readable by others",
                file=name,
                mode=f"{mode:o}",
                fix=f"chmod 600 {name}",
            )
        if self._auto_migrate:
            await self.migrate()
        elif not await asyncio.to_thread(Path(self.path).exists):
            # Only `migrate` (and `init`, or `auto_migrate`) creates the file: a command run
            # from the wrong directory must not leave an empty database behind.
            raise SchemaOutdated(
                f"there is no database at {self.path}: run `hookgate migrate` first"
            )
        pending = await self.pending_migrations()
        if pending:
            raise SchemaOutdated(
                f"database {self.path} lacks migrations {pending}: run `hookgate migrate`"
            )
        writer = _Writer(self.path, self._batch_max, self._on_batch, self.writes)
        writer.start()
        await asyncio.to_thread(writer.ready.wait)
        if writer.failure is not None:
            raise StoreError(f"cannot open {self.path}: {writer.failure}")
        self._writer = writer
        self._checkpointer = _Checkpointer(self.path, writer)
        self._checkpointer.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.jobs.put(None)
            await asyncio.to_thread(self._writer.join)
        if self._checkpointer is not None:
            self._checkpointer.stopping.set()
            await asyncio.to_thread(self._checkpointer.join)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def _migrate_sync(self) -> list[int]:
        conn = _connect(self.path)
        try:
            # In a write transaction from the start: a statement that reads first and
            # writes later gets SQLITE_BUSY at once, without the busy timeout, when another
            # process committed in between (several `migrate` at once on a new file).
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            conn.execute("COMMIT")
            applied_now = []
            for version, name, statements in migrations("sqlite"):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    done = conn.execute(
                        "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                    ).fetchone()
                    if done:
                        conn.execute("COMMIT")
                        continue
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (version, name, iso(utcnow())),
                    )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                applied_now.append(version)
            return applied_now
        finally:
            conn.close()

    def _prepare_file(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror or exc}") from exc

    async def migrate(self) -> list[int]:
        self._prepare_file()
        try:
            return await asyncio.to_thread(self._migrate_sync)
        except sqlite3.Error as exc:
            raise _storage_error(self.path, "cannot migrate", exc) from exc

    def _pending_sync(self) -> list[int]:
        if not Path(self.path).exists():  # looking must not create the file
            return [version for version, _, _ in migrations("sqlite")]
        conn = _connect(self.path)
        try:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
            ).fetchone()
            done = (
                {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                if exists
                else set()
            )
        finally:
            conn.close()
        return [version for version, _, _ in migrations("sqlite") if version not in done]

    async def pending_migrations(self) -> list[int]:
        try:
            return await asyncio.to_thread(self._pending_sync)
        except sqlite3.Error as exc:
            raise _storage_error(self.path, "cannot read", exc) from exc

    # -- plumbing ----------------------------------------------------------------------

    def _write(
        self, fn: Callable[[sqlite3.Connection], T], lane: Lane = Lane.INTERNAL
    ) -> asyncio.Future[T]:
        writer = self._writer
        if writer is None or self._closed or not writer.is_alive():
            raise StoreError("store is not open")
        self.writes.enter(lane)  # raises Overloaded when the lane is full
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if lane.urgent:
            writer.urgent.append((fn, fut, loop))
            writer.jobs.put(_URGENT)
        else:
            writer.jobs.put((fn, fut, loop))
        return fut

    def check_ingest_room(self) -> None:
        self.writes.check(Lane.INGEST)

    def queued_writes(self) -> int:
        return self.writes.depth

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

        return await asyncio.to_thread(run)

    dialect = "sqlite"

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A search or aggregate (store/queries.py) on a reader connection."""
        return await self._read(fn)

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        writer = self._writer
        if writer is None or not writer.is_alive():
            raise StoreError("writer thread is not running")
        if not writer.health.needs_probe():
            return

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (PROBE_KEY, iso(utcnow())),
            )

        try:
            await asyncio.wait_for(self._write(probe), PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise StoreError(
                f"writer did not commit a probe within {PROBE_TIMEOUT_SECONDS:g} s"
            ) from None

    # -- writes ------------------------------------------------------------------------

    async def secret(self, key: str, make: bytes) -> bytes:
        def run(conn: sqlite3.Connection) -> bytes:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, make.hex()),
            )
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return bytes.fromhex(row[0])

        return await self._write(run)

    @staticmethod
    def _insert_event(conn: sqlite3.Connection, event: InboundEvent) -> bool:
        cur = conn.execute(
            "INSERT INTO inbox (id, source, provider, event_type, received_at, dedup_key, "
            "subject, status, flags, headers, document, raw_body, body_sha256, request_id, "
            "trace_context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (
                event.id,
                event.source,
                event.provider,
                event.event_type,
                iso(event.received_at),
                event.dedup_key,
                event.subject,
                event.status,
                _json_text(event.flags),
                _json_text(event.headers),
                _json_text(event.document),
                event.raw_body,
                event.body_sha256,
                event.request_id,
                event.trace_context,
            ),
        )
        return cur.rowcount == 1

    @staticmethod
    def _existing_id(conn: sqlite3.Connection, event: InboundEvent) -> str:
        row = conn.execute(
            "SELECT id FROM inbox WHERE source = ? AND dedup_key = ?",
            (event.source, event.dedup_key),
        ).fetchone()
        return str(row[0]) if row else event.id

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        def run(conn: sqlite3.Connection) -> IngestResult:
            if self._insert_event(conn, event):
                if consumption is not None:
                    _account(conn, event.source, consumption)
                return IngestResult(True, event.id)
            return IngestResult(False, self._existing_id(conn, event))

        return await self._write(run, Lane.INGEST)

    async def record_rejection(self, rejection: Rejection) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO rejections (id, received_at, source, provider, method, path, "
                "status, reason, detail, headers, remote, body_sha256, body_size, body, replay, "
                "stored_bytes, request_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rejection.id,
                    iso(rejection.received_at),
                    rejection.source,
                    rejection.provider,
                    rejection.method,
                    rejection.path,
                    rejection.status,
                    rejection.reason,
                    rejection.detail,
                    _json_text(rejection.headers),
                    rejection.remote,
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
        rows = [
            (iso(c.minute), c.source, c.reason, c.total, c.recorded, c.body_bytes) for c in counts
        ]

        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO rejection_counts (minute, source, reason, total, recorded, "
                "body_bytes) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (minute, source, reason) "
                "DO UPDATE SET total = total + excluded.total, "
                "recorded = recorded + excluded.recorded, "
                "body_bytes = body_bytes + excluded.body_bytes",
                rows,
            )

        if rows:
            await self._write(run)

    async def trim_rejections(self, max_bytes: int) -> int:
        return await self._write(_changing(TRIM_REJECTIONS, (max_bytes,)))

    async def rejection_counts(
        self, source: str | None, since: datetime, until: datetime | None
    ) -> list[dict[str, Any]]:
        clauses, params = ["minute >= ?"], [iso(since)]
        if until is not None:
            clauses.append("minute < ?")
            params.append(iso(until))
        if source is not None:
            clauses.append("source = ?")
            params.append(source)
        query = REJECTION_COUNTS.format(where=" AND ".join(clauses))
        rows = await self._read(lambda conn: conn.execute(query, params).fetchall())
        return [rejection_count_row(row) for row in rows]

    @staticmethod
    def _insert_decision(conn: sqlite3.Connection, decision: Decision) -> None:
        conn.execute(
            DECISION_INSERT,
            (
                decision.id,
                iso(decision.decided_at),
                decision.source,
                decision.event_id,
                decision.charger_id,
                decision.token,
                decision.user_id,
                decision.installation_id,
                decision.result,
                _json_text(decision.reasons),
                decision.session_id,
                int(decision.fallback),
                decision.latency_us,
            ),
        )

    @staticmethod
    def _insert_session(conn: sqlite3.Connection, event: InboundEvent, decision: Decision) -> None:
        conn.execute(
            SESSION_UPSERT,
            (
                decision.session_id,
                decision.source,
                decision.charger_id,
                decision.token,
                decision.id,
                iso(decision.decided_at),
                event.id,
                decision.group_id,
                decision.reserved_kwh,
            ),
        )
        _changed(conn, "session", f"{decision.source}|{decision.session_id}")

    async def record_session_start(
        self,
        event: InboundEvent,
        decision: Decision,
        claim: Callable[[], bool] | None = None,
        limits: Sequence[Limit] = (),
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if claim is not None and not claim():
                raise Abandoned("the deadline fallback answered first")
            for limit in limits:
                _check_limit(conn, limit, decision.session_id)
            self._insert_event(conn, event)
            self._insert_decision(conn, decision)
            if decision.session_id is not None:
                self._insert_session(conn, event, decision)

        await self._write(run, Lane.DECISION)

    async def record_fallback(
        self, event: InboundEvent, decision: Decision, void_session: str | None
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            self._insert_event(conn, event)
            self._insert_decision(conn, decision)
            if decision.session_id is not None:
                self._insert_session(conn, event, decision)
            if void_session is not None:
                conn.execute(
                    "UPDATE authorized_sessions SET status = 'void' "
                    "WHERE source = ? AND session_id = ?",
                    (decision.source, void_session),
                )
                _changed(conn, "session", f"{decision.source}|{void_session}")

        await self._write(run, Lane.AUDIT)

    async def record_session_end(self, event: InboundEvent, end: SessionEnd) -> SessionEndResult:
        def run(conn: sqlite3.Connection) -> SessionEndResult:
            session_id, found = end.session_ids[0], None
            for candidate in end.session_ids:
                found = conn.execute(
                    "SELECT status, token, group_id FROM authorized_sessions "
                    "WHERE session_id = ? AND source = ?",
                    (candidate, event.source),
                ).fetchone()
                if found is not None:
                    session_id = candidate
                    break
            status = found["status"] if found else None
            matched = status in ("active", "ended")
            if not matched and "unmatched" not in event.flags:
                event.flags = [*event.flags, "unmatched"]
            if not self._insert_event(conn, event):
                return SessionEndResult(False, self._existing_id(conn, event), matched)
            ended_at = end.ended_at or event.received_at
            if status is None:
                conn.execute(
                    "INSERT INTO authorized_sessions (session_id, source, status, ended_at, "
                    "energy_kwh, end_event_id, token, group_id) "
                    "VALUES (?, ?, 'unmatched', ?, ?, ?, ?, ?)",
                    (
                        session_id,
                        event.source,
                        iso(ended_at),
                        end.energy_kwh,
                        event.id,
                        end.token,
                        end.group_id,
                    ),
                )
            elif status == "active":
                conn.execute(
                    "UPDATE authorized_sessions SET status = 'ended', ended_at = ?, "
                    "energy_kwh = ?, end_event_id = ? WHERE source = ? AND session_id = ?",
                    (iso(ended_at), end.energy_kwh, event.id, event.source, session_id),
                )
            _changed(conn, "session", f"{event.source}|{session_id}")
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
                _account(conn, event.source, report)
            return SessionEndResult(True, event.id, matched)

        return await self._write(run, Lane.DECISION)

    # -- retention ---------------------------------------------------------------------

    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> dict[str, int]:
        floor = floor_id(older_than)
        steps = [
            (
                "inbox_bodies",
                "SELECT count(*) FROM inbox WHERE id < ? AND length(raw_body) > 0 "
                "AND status = 'processed'",
                "UPDATE inbox SET raw_body = X'' WHERE rowid IN (SELECT rowid FROM inbox "
                "WHERE id < ? AND length(raw_body) > 0 AND status = 'processed' "
                "LIMIT 5000)",
                (floor,),
            ),
            (
                "rejections",
                "SELECT count(*) FROM rejections WHERE id < ?",
                "DELETE FROM rejections WHERE rowid IN (SELECT rowid FROM rejections "
                "WHERE id < ? LIMIT 5000)",
                (floor,),
            ),
            (
                "rejection_counts",
                "SELECT count(*) FROM rejection_counts WHERE minute < ?",
                "DELETE FROM rejection_counts WHERE minute < ?",
                (iso(older_than),),
            ),
            (
                "delivery_attempts",
                "SELECT count(*) FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM "
                "deliveries WHERE id < ? AND status IN ('delivered', 'dead'))",
                "DELETE FROM delivery_attempts WHERE id IN (SELECT id FROM delivery_attempts "
                "WHERE delivery_id IN (SELECT id FROM deliveries WHERE id < ? "
                "AND status IN ('delivered', 'dead')) LIMIT 5000)",
                (floor,),
            ),
            (
                "deliveries",
                "SELECT count(*) FROM deliveries WHERE id < ? AND status IN ('delivered', 'dead')",
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries "
                "WHERE id < ? AND status IN ('delivered', 'dead') LIMIT 5000)",
                (floor,),
            ),
            (
                "auth_changes",
                "SELECT count(*) FROM auth_changes WHERE changed_at < ? "
                "AND seq < (SELECT max(seq) FROM auth_changes)",
                "DELETE FROM auth_changes WHERE seq IN (SELECT seq FROM auth_changes "
                "WHERE changed_at < ? AND seq < (SELECT max(seq) FROM auth_changes) LIMIT 5000)",
                (iso(older_than),),
            ),
        ]
        done: dict[str, int] = {}
        for name, count_sql, change_sql, params in steps:
            if dry_run:
                done[name] = await self._read(_counting(count_sql, params))
                continue
            total = 0
            while True:
                # Small transactions: ingest keeps flowing between them.
                changed = await self._write(_changing(change_sql, params))
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
        convert: Callable[[Any], dict[str, Any]],
    ) -> Page:
        clauses = list(clauses)
        params = list(params)
        if cursor:
            clauses.append("id < ?")
            params.append(decode_cursor(cursor))
        sql = f"SELECT {columns} FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit + 1)

        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        items = [convert(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1]["id"]) if more and items else None)

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                f"SELECT {_EVENT_COLUMNS}, raw_body FROM inbox WHERE id = ?", (event_id,)
            ).fetchone()
            if row is None:
                return None
            item = event_row(row)
            item["raw_body"] = bytes(row["raw_body"])
            return item

        return await self._read(run)

    async def list_rejections(self, source: str | None, cursor: str | None, limit: int) -> Page:
        clauses, params = ([], []) if source is None else (["source = ?"], [source])
        columns = (
            "id, received_at, source, provider, method, path, status, reason, detail, "
            "headers, remote, body_sha256, body_size, body, rerun_event_id, request_id"
        )
        return await self._page(
            "rejections", columns, clauses, params, cursor, limit, rejection_row
        )

    async def get_rejection(self, rejection_id: str) -> dict[str, Any] | None:
        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT * FROM rejections WHERE id = ?", (rejection_id,)).fetchone()
            if row is None:
                return None
            item = rejection_row(row)
            item["replay"] = bytes(row["replay"]) if row["replay"] is not None else None
            return item

        return await self._read(run)

    async def mark_rejection_rerun(self, rejection_id: str, event_id: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE rejections SET rerun_event_id = ? WHERE id = ?", (event_id, rejection_id)
            )

        await self._write(run)

    async def find_event(self, source: str, dedup_key: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT id FROM inbox WHERE source = ? AND dedup_key = ?", (source, dedup_key)
            ).fetchone()
            return str(row[0]) if row else None

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
            clauses.append("decided_at < ?")
            params.append(iso(where.until))
        return await self._page("decisions", "*", clauses, params, cursor, limit, decision_row)

    async def get_session(self, source: str, session_id: str) -> dict[str, Any] | None:
        def run(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT * FROM authorized_sessions WHERE source = ? AND session_id = ?",
                (source, session_id),
            ).fetchone()
            return dict(row) if row else None

        return await self._read(run)

    # -- authorization -----------------------------------------------------------------

    async def auth_snapshot(self, since: datetime) -> AuthSnapshot:
        def run(conn: sqlite3.Connection) -> AuthSnapshot:
            conn.execute("BEGIN")
            try:
                seq = conn.execute("SELECT coalesce(max(seq), 0) FROM auth_changes").fetchone()
                entities = [
                    AuthEntity(kind=r[0], key=r[1], doc=r[2].encode(), managed_by=r[3])
                    for r in conn.execute("SELECT kind, key, doc, managed_by FROM auth_entities")
                ]
                sessions = [
                    dict(r)
                    for r in conn.execute(
                        "SELECT * FROM authorized_sessions WHERE status = 'active'"
                    )
                ]
                consumption = [
                    dict(r)
                    for r in conn.execute(
                        "SELECT * FROM consumption WHERE occurred_at >= ?", (iso(since),)
                    )
                ]
            finally:
                conn.execute("COMMIT")
            return AuthSnapshot(
                seq=int(seq[0]), entities=entities, sessions=sessions, consumption=consumption
            )

        return await self._read(run)

    async def auth_changes(self, after: int, limit: int) -> list[AuthChange]:
        def run(conn: sqlite3.Connection) -> list[AuthChange]:
            rows = conn.execute(
                "SELECT seq, kind, key FROM auth_changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
            current = _current(conn, {(kind, key) for _, kind, key in rows})
            return [
                AuthChange(seq=seq, kind=kind, key=key, row=current.get((kind, key)))
                for seq, kind, key in rows
            ]

        return await self._read(run)

    async def auth_put(self, entities: list[AuthEntity]) -> None:
        await self.auth_write(entities, [])

    async def auth_delete(self, kind: str, key: str) -> bool:
        return await self.auth_write([], [(kind, key)]) == 1

    async def auth_write(
        self, put: list[AuthEntity], delete: list[tuple[str, str]], *, create: bool = False
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = iso(utcnow())
            for entity in put:
                if create:
                    cur = conn.execute(
                        "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO NOTHING",
                        (entity.kind, entity.key, entity.doc.decode(), entity.managed_by, now),
                    )
                    if cur.rowcount != 1:
                        raise AlreadyExists(f"{entity.kind} {entity.key} already exists")
                else:
                    conn.execute(
                        "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
                        "doc = excluded.doc, managed_by = excluded.managed_by, "
                        "updated_at = excluded.updated_at",
                        (entity.kind, entity.key, entity.doc.decode(), entity.managed_by, now),
                    )
                _changed(conn, entity.kind, entity.key)
            deleted = 0
            for kind, key in delete:
                cur = conn.execute(
                    "DELETE FROM auth_entities WHERE kind = ? AND key = ?", (kind, key)
                )
                if cur.rowcount:
                    _changed(conn, kind, key)
                    deleted += 1
            return deleted

        return await self._write(run)

    async def auth_get(self, kind: str, key: str) -> AuthEntity | None:
        def run(conn: sqlite3.Connection) -> AuthEntity | None:
            row = conn.execute(
                "SELECT doc, managed_by FROM auth_entities WHERE kind = ? AND key = ?",
                (kind, key),
            ).fetchone()
            if row is None:
                return None
            return AuthEntity(kind=kind, key=key, doc=row[0].encode(), managed_by=row[1])

        return await self._read(run)

    async def auth_list(self, kind: str, after: str | None, limit: int) -> list[AuthEntity]:
        def run(conn: sqlite3.Connection) -> list[AuthEntity]:
            rows = conn.execute(
                "SELECT key, doc, managed_by FROM auth_entities WHERE kind = ? AND key > ? "
                "ORDER BY key LIMIT ?",
                (kind, after or "", limit),
            ).fetchall()
            return [
                AuthEntity(kind=kind, key=r[0], doc=r[1].encode(), managed_by=r[2]) for r in rows
            ]

        return await self._read(run)

    async def auth_sync_config(self, entities: list[AuthEntity]) -> int:
        def run(conn: sqlite3.Connection) -> int:
            wanted = {(e.kind, e.key): e for e in entities}
            changes = 0
            current = conn.execute(
                "SELECT kind, key, doc FROM auth_entities WHERE managed_by = 'config'"
            ).fetchall()
            for kind, key, doc in current:
                entity = wanted.get((kind, key))
                if entity is None:
                    conn.execute(
                        "DELETE FROM auth_entities WHERE kind = ? AND key = ?", (kind, key)
                    )
                    _changed(conn, kind, key)
                    changes += 1
                elif entity.doc.decode() == doc:
                    del wanted[(kind, key)]
            now = iso(utcnow())
            for entity in wanted.values():
                conn.execute(
                    "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                    "VALUES (?, ?, ?, 'config', ?) ON CONFLICT (kind, key) DO UPDATE SET "
                    "doc = excluded.doc, managed_by = 'config', updated_at = excluded.updated_at",
                    (entity.kind, entity.key, entity.doc.decode(), now),
                )
                _changed(conn, entity.kind, entity.key)
                changes += 1
            return changes

        return await self._write(run)

    # -- processing and delivery (docs/adr/0006) -----------------------------------------

    async def process_pending(self, handler: Handler, limit: int) -> ProcessResult:
        from hookgate.store.search import SearchIndex
        from hookgate.store.viewtx import SqlViewTx

        def run(conn: sqlite3.Connection) -> ProcessResult:
            tx = SqlViewTx(conn, "sqlite")
            index = SearchIndex(conn, "sqlite")
            now = iso(utcnow())
            processed = failed = deliveries = 0
            # The writer is shared with ingest: stop early rather than hold commits back.
            budget = (
                time.perf_counter() + self._process_budget
                if self._process_budget is not None
                else None
            )
            for row, decision in _pending_rows(conn, limit, budget):
                event = _stored_event(row, decision)
                conn.execute("SAVEPOINT process_event")
                try:
                    names = handler(tx, event)
                    for name in dict.fromkeys(names):
                        deliveries += _enqueue_delivery(conn, event.id, name, now)
                    conn.execute(
                        "UPDATE inbox SET status = 'processed', processed_at = ?, error = NULL "
                        "WHERE id = ?",
                        (now, event.id),
                    )
                    conn.execute("RELEASE process_event")
                    index.add(event, "processed")
                    processed += 1
                except Exception as exc:
                    conn.execute("ROLLBACK TO process_event")
                    conn.execute("RELEASE process_event")
                    conn.execute(
                        "UPDATE inbox SET status = 'failed', processed_at = ?, error = ? "
                        "WHERE id = ?",
                        (now, f"{type(exc).__name__}: {exc}"[:2000], event.id),
                    )
                    index.add(event, "failed")
                    failed += 1
                if budget is not None and time.perf_counter() > budget:
                    break
            index.flush()
            return ProcessResult(processed, failed, deliveries)

        return await self._write(run)

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

        def run(conn: sqlite3.Connection) -> list[DeliveryJob]:
            marks = ",".join("?" * len(destinations))
            at = iso(now)
            rows = conn.execute(
                "SELECT id, event_id, destination, attempts, created_at FROM deliveries "
                "WHERE status IN ('pending', 'failed') AND next_attempt_at <= ? "
                f"AND destination IN ({marks}) AND (lease_until IS NULL OR lease_until < ?) "
                "ORDER BY next_attempt_at, id LIMIT ?",
                (at, *destinations, at, limit),
            ).fetchall()
            if not rows:
                return []
            until = iso(datetime.fromtimestamp(now.timestamp() + lease_seconds, now.tzinfo))
            conn.executemany(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, until, row["id"]) for row in rows],
            )
            events = _events_by_id(conn, [row["event_id"] for row in rows])
            return [
                DeliveryJob(
                    id=row["id"],
                    destination=row["destination"],
                    attempt=int(row["attempts"]) + 1,
                    created_at=parse_iso(row["created_at"]),
                    event=events[row["event_id"]],
                )
                for row in rows
                if row["event_id"] in events
            ]

        return await self._write(run)

    async def finish_delivery(self, job: DeliveryJob, owner: str, outcome: DeliveryOutcome) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            now = iso(utcnow())
            conn.execute(
                "INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, "
                "duration_ms, outcome, status_code, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    new_id(),
                    job.id,
                    job.attempt,
                    iso(outcome.started_at),
                    outcome.duration_ms,
                    outcome.state,
                    outcome.status_code,
                    outcome.error,
                ),
            )
            cur = conn.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, "
                "next_attempt_at = coalesce(?, next_attempt_at), lease_owner = NULL, "
                "lease_until = NULL, last_status_code = ?, last_error = ?, updated_at = ?, "
                "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END "
                "WHERE id = ? AND lease_owner = ?",
                (
                    outcome.state,
                    job.attempt,
                    iso(outcome.retry_at) if outcome.retry_at else None,
                    outcome.status_code,
                    outcome.error,
                    now,
                    outcome.state,
                    now,
                    job.id,
                    owner,
                ),
            )
            return cur.rowcount == 1

        return await self._write(run)

    async def replay(self, where: ReplayFilter, *, dry_run: bool = False) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = iso(utcnow())
            queued = 0
            if where.event_ids:
                for event_id in where.event_ids:
                    queued += _replay_event(conn, event_id, where, now)
                return queued
            clauses, params = _delivery_selection(where)
            cur = conn.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, "
                "lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE " + clauses,
                (now, now, *params),
            )
            queued += cur.rowcount
            if where.status in (None, "failed") and where.destination is None:
                event_clauses = ["status = 'failed'"]
                event_params: list[Any] = []
                if where.source is not None:
                    event_clauses.append("source = ?")
                    event_params.append(where.source)
                if where.since is not None:
                    event_clauses.append("id >= ?")
                    event_params.append(floor_id(where.since))
                cur = conn.execute(
                    "UPDATE inbox SET status = 'received', error = NULL WHERE "
                    + " AND ".join(event_clauses),
                    event_params,
                )
                queued += cur.rowcount
            return queued

        def rehearse(conn: sqlite3.Connection) -> int:
            conn.execute("SAVEPOINT replay_dry_run")
            try:
                return run(conn)
            finally:
                conn.execute("ROLLBACK TO replay_dry_run")
                conn.execute("RELEASE replay_dry_run")

        return await self._write(rehearse if dry_run else run)

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
            clauses.append("created_at < ?")
            params.append(iso(where.until))
        return await self._page("deliveries", "*", clauses, params, cursor, limit, dict)

    async def delivery_attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [
                dict(row)
                for row in conn.execute(
                    "SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt, id",
                    (delivery_id,),
                )
            ]

        return await self._read(run)

    async def destination_states(self) -> dict[str, dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> dict[str, dict[str, Any]]:
            return {
                row["name"]: dict(row)
                for row in conn.execute(
                    "SELECT * FROM destination_state WHERE disabled_at IS NOT NULL"
                )
            }

        return await self._read(run)

    async def set_destination_disabled(self, name: str, reason: str | None) -> None:
        def run(conn: sqlite3.Connection) -> None:
            now = iso(utcnow())
            conn.execute(
                "INSERT INTO destination_state (name, disabled_at, reason, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "disabled_at = excluded.disabled_at, reason = excluded.reason, "
                "updated_at = excluded.updated_at",
                (name, now if reason is not None else None, reason, now),
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
        def run(conn: sqlite3.Connection) -> bool:
            conn.execute("SAVEPOINT requeue")
            try:
                cur = conn.execute(
                    "UPDATE inbox SET document = ?, event_type = ?, dedup_key = ?, subject = ?, "
                    "flags = ?, status = 'received', error = NULL WHERE id = ?",
                    (
                        _json_text(document),
                        event_type,
                        dedup_key,
                        subject,
                        _json_text(flags),
                        event_id,
                    ),
                )
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO requeue")
                conn.execute("RELEASE requeue")
                return False
            conn.execute("RELEASE requeue")
            return cur.rowcount == 1

        return await self._write(run)

    async def list_view(
        self, table: str, where: ViewFilter, cursor: str | None, limit: int
    ) -> Page:
        from hookgate.store.viewtx import fetch_page

        return await self._read(
            lambda conn: fetch_page(conn, table, where, cursor, limit, "sqlite")
        )

    async def sql_read(self, fn: Callable[[Any], T]) -> T:
        return await self._read(fn)

    async def sql_write(self, fn: Callable[[Any], T]) -> T:
        return await self._write(fn)

    async def view_rows(self, table: str, where: ViewFilter) -> list[dict[str, Any]]:
        from hookgate.store.viewtx import fetch_rows

        return await self._read(lambda conn: fetch_rows(conn, table, where, "sqlite"))


_STORED_COLUMNS = (
    "id, source, provider, event_type, received_at, subject, status, flags, document, trace_context"
)


# Events read per query while processing: in the gateway the time budget usually ends a job
# long before `limit` events, and reading (and decoding the decisions of) all of them was
# wasted work.
_PROCESS_CHUNK = 32


def _pending_rows(
    conn: sqlite3.Connection, limit: int, budget: float | None
) -> Iterator[tuple[sqlite3.Row, dict[str, Any] | None]]:
    """Received events in id order, `_PROCESS_CHUNK` at a time, up to `limit`; no further
    chunk is read once the `budget` (a perf_counter time; None: no budget) is spent."""
    after, left = "", limit
    while left > 0:
        rows = conn.execute(
            f"SELECT {_STORED_COLUMNS} FROM inbox WHERE status = 'received' AND id > ? "
            "ORDER BY id LIMIT ?",
            (after, min(left, _PROCESS_CHUNK)),
        ).fetchall()
        if not rows:
            return
        decisions = _decisions_of(conn, [row["id"] for row in rows])
        for row in rows:
            yield row, decisions.get(row["id"])
        after, left = rows[-1]["id"], left - len(rows)
        if len(rows) < _PROCESS_CHUNK or (budget is not None and time.perf_counter() > budget):
            return


def _stored_event(row: sqlite3.Row, decision: dict[str, Any] | None) -> StoredEvent:
    return StoredEvent(
        id=row["id"],
        source=row["source"],
        provider=row["provider"],
        event_type=row["event_type"],
        received_at=parse_iso(row["received_at"]),
        subject=row["subject"],
        status=row["status"],
        flags=msgspec.json.decode(row["flags"]),
        document=msgspec.json.decode(row["document"]) if row["document"] else None,
        decision=decision,
        trace_context=row["trace_context"],
    )


def _decisions_of(conn: sqlite3.Connection, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(event_ids), 400):
        chunk = event_ids[start : start + 400]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT * FROM decisions WHERE event_id IN ({marks}) ORDER BY id", chunk
        ):
            found[row["event_id"]] = decision_row(row)
    return found


def _events_by_id(conn: sqlite3.Connection, event_ids: list[str]) -> dict[str, StoredEvent]:
    unique = list(dict.fromkeys(event_ids))
    decisions = _decisions_of(conn, unique)
    found: dict[str, StoredEvent] = {}
    for start in range(0, len(unique), 400):
        chunk = unique[start : start + 400]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_STORED_COLUMNS} FROM inbox WHERE id IN ({marks})", chunk
        ):
            found[row["id"]] = _stored_event(row, decisions.get(row["id"]))
    return found


def _enqueue_delivery(conn: sqlite3.Connection, event_id: str, destination: str, now: str) -> int:
    cur = conn.execute(
        "INSERT INTO deliveries (id, event_id, destination, status, attempts, next_attempt_at, "
        "created_at, updated_at) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) "
        "ON CONFLICT (event_id, destination) DO NOTHING",
        (new_id(), event_id, destination, now, now, now),
    )
    return cur.rowcount


def _replay_event(conn: sqlite3.Connection, event_id: str, where: ReplayFilter, now: str) -> int:
    """Queue one event again: its failed processing, and its deliveries (or the one named)."""
    row = conn.execute("SELECT status FROM inbox WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        return 0
    queued = 0
    if row["status"] == "failed":
        conn.execute("UPDATE inbox SET status = 'received', error = NULL WHERE id = ?", (event_id,))
        queued += 1
    clauses = ["event_id = ?"]
    params: list[Any] = [event_id]
    if where.destination is not None:
        clauses.append("destination = ?")
        params.append(where.destination)
    if where.status is not None:
        clauses.append("status = ?")
        params.append(where.status)
    cur = conn.execute(
        "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, "
        "lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE " + " AND ".join(clauses),
        (now, now, *params),
    )
    queued += cur.rowcount
    if cur.rowcount == 0 and where.destination is not None and row["status"] == "processed":
        # A destination added after the event was processed: deliver it there now.
        queued += _enqueue_delivery(conn, event_id, where.destination, now)
    return queued


def _delivery_selection(where: ReplayFilter) -> tuple[str, list[Any]]:
    clauses = ["1 = 1"]
    params: list[Any] = []
    if where.status is not None:
        clauses.append("status = ?")
        params.append(where.status)
    if where.destination is not None:
        clauses.append("destination = ?")
        params.append(where.destination)
    if where.since is not None:
        clauses.append("id >= ?")
        params.append(floor_id(where.since))
    if where.source is not None:
        clauses.append("event_id IN (SELECT id FROM inbox WHERE source = ?)")
        params.append(where.source)
    return " AND ".join(clauses), params


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db` to a filesystem path."""
    return url.removeprefix("sqlite:///")


def _filters(
    equal: list[tuple[str, str | None]], time_column: str, since: datetime | None
) -> tuple[list[str], list[Any]]:
    """WHERE clauses for equality filters (None: any) and a lower time bound, which
    becomes an id range too (ids are time-ordered) so the primary key serves it."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in equal:
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append(f"id >= ? AND {time_column} >= ?")
        params.extend([floor_id(since), iso(since)])
    return clauses, params


def _counting(sql: str, params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: int(conn.execute(sql, params).fetchone()[0])


def _changing(sql: str, params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: conn.execute(sql, params).rowcount


def _check_limit(conn: sqlite3.Connection, limit: Limit, session_id: str | None) -> None:
    """Raise LimitReached when `limit` is broken by what is committed (the writer thread
    serialises every approval, so nothing can slip in between check and insert)."""
    column = "token" if limit.subject == "token" else "group_id"
    active = conn.execute(
        f"SELECT reserved_kwh FROM authorized_sessions WHERE {column} = ? "
        "AND status = 'active' AND started_at >= ? AND session_id IS NOT ?",
        (limit.subject_id, iso(limit.active_since), session_id),
    ).fetchall()
    held = sum((Decimal(r[0] or 0) for r in active), Decimal(0))
    check_sessions(limit, len(active))
    if limit.max_kwh is not None and limit.since is not None and limit.until is not None:
        used = sum(
            (
                Decimal(r[0])
                for r in conn.execute(
                    f"SELECT kwh FROM consumption WHERE {column} = ? "
                    "AND occurred_at >= ? AND occurred_at < ?",
                    (limit.subject_id, iso(limit.since), iso(limit.until)),
                )
            ),
            Decimal(0),
        )
        check_energy(limit, used, held)


def _changed(conn: sqlite3.Connection, kind: str, key: str) -> None:
    """Append to the change log that decision engines poll."""
    conn.execute(
        "INSERT INTO auth_changes (kind, key, changed_at) VALUES (?, ?, ?)",
        (kind, key, iso(utcnow())),
    )


def _account(conn: sqlite3.Connection, source: str, report: ConsumptionReport) -> None:
    """Record a session's consumption; a later report replaces a smaller earlier one."""
    row = conn.execute(
        "SELECT id, kwh, money FROM consumption WHERE source = ? AND session_key = ?",
        (source, report.session_key),
    ).fetchone()
    if row is None:
        row_id = new_id()
        conn.execute(
            "INSERT INTO consumption (id, source, session_key, origin, token, group_id, kwh, "
            "money, currency, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row_id,
                source,
                report.session_key,
                report.origin,
                report.token,
                report.group_id,
                report.kwh,
                report.money,
                report.currency,
                iso(report.occurred_at),
            ),
        )
    else:
        row_id = row[0]
        kwh = max(Decimal(row[1]), Decimal(report.kwh))
        money = report.money if report.money is not None else row[2]
        if kwh == Decimal(row[1]) and money == row[2]:
            return
        conn.execute(
            "UPDATE consumption SET kwh = ?, money = ?, currency = coalesce(?, currency), "
            "token = coalesce(token, ?), group_id = coalesce(group_id, ?), occurred_at = ? "
            "WHERE id = ?",
            (
                str(kwh),
                money,
                report.currency,
                report.token,
                report.group_id,
                iso(report.occurred_at),
                row_id,
            ),
        )
    _changed(conn, "consumption", row_id)


def _current(
    conn: sqlite3.Connection, wanted: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows change-log entries point at, as they are now, fetched a few hundred at a
    time (under load the log grows by thousands of entries a second)."""
    by_kind: dict[str, list[str]] = {}
    for kind, key in wanted:
        if kind == "session":  # keyed "source|session_id": group by source for the index
            source, _, session_id = key.partition("|")
            by_kind.setdefault(f"session|{source}", []).append(session_id)
        else:
            by_kind.setdefault(kind, []).append(key)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, keys in by_kind.items():
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            marks = ",".join("?" * len(chunk))
            if kind.startswith("session|"):
                source = kind.partition("|")[2]
                for row in conn.execute(
                    "SELECT * FROM authorized_sessions WHERE source = ? "
                    f"AND session_id IN ({marks})",
                    [source, *chunk],
                ):
                    found[("session", f"{source}|{row['session_id']}")] = dict(row)
            elif kind == "consumption":
                for row in conn.execute(f"SELECT * FROM consumption WHERE id IN ({marks})", chunk):
                    found[(kind, row["id"])] = dict(row)
            else:
                for row in conn.execute(
                    f"SELECT key, doc FROM auth_entities WHERE kind = ? AND key IN ({marks})",
                    [kind, *chunk],
                ):
                    found[(kind, row[0])] = {"doc": row[1].encode()}
    return found
