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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.errors import HookgateError, SchemaOutdated, StoreError
from hookgate.domain.events import InboundEvent, IngestResult
from hookgate.domain.outbox import ProcessResult
from hookgate.store import authz, outbox
from hookgate.store.admission import Lane, WriteQueue
from hookgate.store.base import Handler
from hookgate.store.dialect import SQLITE
from hookgate.store.health import WriteHealth
from hookgate.store.inbox import insert_event_statement
from hookgate.store.migrations import migrations
from hookgate.store.search import SearchIndex, index_queued
from hookgate.store.sqlstore import SqlStore
from hookgate.store.tx import DbApiTx, Work, run_sync
from hookgate.store.viewtx import SqlViewTx
from hookgate.timeutil import iso, utcnow

T = TypeVar("T")
log = structlog.get_logger("hookgate.store")
_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]
# Put on the main queue when an urgent job is queued, to wake the writer.
_URGENT = object()
# A batch that has run this long commits what it has done as soon as urgent work arrives;
# the rest goes first into the next batch, behind the urgent work.
_CUT_AFTER = 0.02


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


class SqliteStore(SqlStore):
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
        self.sql_dialect = SQLITE
        self.health = WriteHealth()
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
        writer = _Writer(self.path, self._batch_max, self._on_batch, self.writes, self.health)
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

    # -- the driver --------------------------------------------------------------------

    def _queue(
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

    def _write(
        self, work: Work[T], lane: Lane = Lane.INTERNAL, locks: Sequence[str] = ()
    ) -> Awaitable[T]:
        # One writer orders every commit: nothing to lock.
        return self._queue(lambda conn: run_sync(work(DbApiTx(conn, SQLITE))), lane)

    def _writer_alive(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    # Searches, aggregates and the alert history (store/queries.py, store/alerting.py)
    # run on a connection of their own.

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A search or aggregate on a reader connection."""
        return await self.sql_read(fn)

    async def sql_read(self, fn: Callable[[Any], T]) -> T:
        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

        return await asyncio.to_thread(run)

    async def sql_write(self, fn: Callable[[Any], T]) -> T:
        return await self._queue(fn)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, work: Work[T]) -> T:
        def run() -> T:
            try:
                return run_sync(work(DbApiTx(self._reader(), SQLITE)))
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

        return await asyncio.to_thread(run)

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        # The acknowledgement path: the shared statement, run directly on the writer.
        sql, params = insert_event_statement(SQLITE, event)

        def run(conn: sqlite3.Connection) -> IngestResult:
            if conn.execute(sql, params).rowcount == 1:
                if consumption is not None:
                    run_sync(authz.account(DbApiTx(conn, SQLITE), event.source, consumption))
                return IngestResult(True, event.id)
            row = conn.execute(
                "SELECT id FROM inbox WHERE source = ? AND dedup_key = ?",
                (event.source, event.dedup_key),
            ).fetchone()
            return IngestResult(False, str(row[0]) if row else event.id)

        return await self._queue(run, Lane.INGEST)

    async def process_pending(self, handler: Handler, limit: int) -> ProcessResult:
        def run(conn: sqlite3.Connection) -> ProcessResult:
            # The writer is shared with ingest: stop early rather than hold commits back.
            budget = (
                time.perf_counter() + self._process_budget
                if self._process_budget is not None
                else None
            )
            return run_sync(
                outbox.process_batch(
                    DbApiTx(conn, SQLITE),
                    SqlViewTx(conn, SQLITE),
                    handler,
                    limit,
                    chunk=_PROCESS_CHUNK,
                    budget=budget,
                    index=SearchIndex(conn, "sqlite"),
                )
            )

        return await self._queue(run)

    async def index_search(self, limit: int) -> int:
        # A short job, like processing's: the writer is shared with ingest.
        return await self._queue(lambda conn: index_queued(conn, SQLITE, min(limit, _INDEX_CHUNK)))


# Events indexed per writer job (a few milliseconds of work).
_INDEX_CHUNK = 64

# Events read per query while processing: in the gateway the time budget usually ends a job
# long before `limit` events, and reading (and decoding the decisions of) all of them was
# wasted work.
_PROCESS_CHUNK = 32


def sqlite_path(url: str) -> str:
    """`sqlite:///relative.db` or `sqlite:////absolute.db` to a filesystem path."""
    return url.removeprefix("sqlite:///")
