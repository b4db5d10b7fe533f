"""The outbox: processing received events into the views, and deliveries to
destinations with their attempts (docs/adr/0006). Written once against `Tx`.

Processing runs on a synchronous connection on both backends (the projections' `ViewTx`
is synchronous): SQLite's writer thread, or a PostgreSQL connection in a worker thread;
the driver wraps the batch in its transaction and drives it with `run_sync`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec

from hookgate.domain.events import StoredEvent
from hookgate.domain.outbox import (
    Delivery,
    DeliveryAttempt,
    DeliveryJob,
    DeliveryOutcome,
    DestinationState,
    ProcessResult,
)
from hookgate.domain.queries import Page, ReplayFilter, ViewFilter
from hookgate.ids import floor_id, new_id
from hookgate.store.authz import decision_row
from hookgate.store.base import Handler, ViewTx
from hookgate.store.dialect import Dialect
from hookgate.store.paging import equal_filters, id_page
from hookgate.store.search import SearchIndex
from hookgate.store.tx import KeyTaken, Row, Tx
from hookgate.timeutil import utcnow

_STORED_COLUMNS = (
    "id, source, provider, event_type, received_at, subject, status, flags, document, trace_context"
)


def stored_event(d: Dialect, row: Row, decision: dict[str, Any] | None) -> StoredEvent:
    """An inbox row as the processing step and the delivery workers see it."""
    return StoredEvent(
        id=row["id"],
        source=row["source"],
        provider=row["provider"],
        event_type=row["event_type"],
        received_at=d.read_instant(row["received_at"]),
        subject=row["subject"],
        status=row["status"],
        flags=msgspec.json.decode(row["flags"]),
        document=msgspec.json.decode(row["document"]) if row["document"] else None,
        decision=decision,
        trace_context=row["trace_context"],
    )


async def _decisions_of(tx: Tx, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    d = tx.dialect
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(event_ids), 400):
        clause, params = d.any_of("event_id", event_ids[start : start + 400])
        for row in await tx.all(f"SELECT * FROM decisions WHERE {clause} ORDER BY id", params):
            # The processing step sees the decision as a document (StoredEvent.decision).
            found[row["event_id"]] = msgspec.structs.asdict(decision_row(d.plain(row)))
    return found


async def events_by_id(tx: Tx, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
    """Inbox events (without raw bodies) with their decisions."""
    d = tx.dialect
    unique = list(dict.fromkeys(event_ids))
    decisions = await _decisions_of(tx, unique)
    found: dict[str, StoredEvent] = {}
    for start in range(0, len(unique), 400):
        clause, params = d.any_of("id", unique[start : start + 400])
        for row in await tx.all(f"SELECT {_STORED_COLUMNS} FROM inbox WHERE {clause}", params):
            found[row["id"]] = stored_event(d, row, decisions.get(row["id"]))
    return found


async def enqueue_delivery(tx: Tx, event_id: str, destination: str, now: Any) -> int:
    """A pending delivery of an event to a destination, unless there is one (1 if new);
    `now` as the dialect's instant."""
    return await tx.execute(
        "INSERT INTO deliveries (id, event_id, destination, status, attempts, next_attempt_at, "
        "created_at, updated_at) VALUES (?, ?, ?, 'pending', 0, ?, ?, ?) "
        "ON CONFLICT (event_id, destination) DO NOTHING",
        (new_id(), event_id, destination, now, now, now),
    )


# -- processing ------------------------------------------------------------------------


class Isolate(Exception):
    """An event failed in a batch run without savepoints: everything is rolled back and
    the batch must run again with `isolate`."""


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyTaken) and exc.__cause__ is not None:
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}"[:2000]


async def process_batch(
    tx: Tx,
    views: ViewTx,
    handler: Handler,
    limit: int,
    *,
    chunk: int,
    budget: float | None = None,
    isolate: bool = True,
    transient: tuple[type[BaseException], ...] = (),
    index: SearchIndex | None = None,
) -> ProcessResult:
    """Project up to `limit` received events, oldest first, `chunk` read at a time, in
    the caller's transaction; stop once the `budget` (a perf_counter time) is spent.

    Rows another instance is processing are skipped (PostgreSQL: SKIP LOCKED). With
    `isolate` each event has its own savepoint: a failing event is marked failed, and a
    `transient` error (a lock conflict with another instance) leaves it and the rest
    received for the next batch. Without it a failure raises `Isolate` (two round trips
    per event fewer while nothing fails). Events of one chunk are applied in subject
    order where rows are locked (PostgreSQL), so instances do not wait in a circle.
    Settled events go into the search `index` (flushed at the end) on the same
    transaction.
    """
    d = tx.dialect
    now = d.instant(utcnow())
    done: list[str] = []
    failed = deliveries = 0
    after, left = "", limit
    while left > 0:
        rows = await tx.all(
            f"SELECT {_STORED_COLUMNS} FROM inbox WHERE status = 'received' AND id > ? "
            f"ORDER BY id LIMIT ?{d.skip_locked}",
            (after, min(left, chunk)),
        )
        if not rows:
            break
        after, left = rows[-1]["id"], left - len(rows)
        decisions = await _decisions_of(tx, [row["id"] for row in rows])
        if d.skip_locked:
            rows = sorted(rows, key=lambda row: (row["subject"] or "", row["id"]))
        stop = False
        for row in rows:
            event = stored_event(d, row, decisions.get(row["id"]))
            if not isolate:
                try:
                    deliveries += await _apply(tx, views, handler, event, now)
                except Exception as exc:
                    raise Isolate from exc
                done.append(event.id)
                if index is not None:
                    index.add(event, "processed")
                continue
            try:
                async with tx.savepoint():
                    deliveries += await _apply(tx, views, handler, event, now)
                done.append(event.id)
                if index is not None:
                    index.add(event, "processed")
            except transient:
                stop = True
                break
            except Exception as exc:
                await tx.execute(
                    "UPDATE inbox SET status = 'failed', processed_at = ?, error = ? WHERE id = ?",
                    (now, d.text(_error_text(exc)), event.id),
                )
                if index is not None:
                    index.add(event, "failed")
                failed += 1
            if budget is not None and time.perf_counter() > budget:
                stop = True
                break
        if stop or len(rows) < chunk:
            break
    if index is not None:
        index.flush()
    for start in range(0, len(done), 400):
        clause, params = d.any_of("id", done[start : start + 400])
        await tx.execute(
            f"UPDATE inbox SET status = 'processed', processed_at = ?, error = NULL WHERE {clause}",
            [now, *params],
        )
    return ProcessResult(len(done), failed, deliveries)


async def _apply(tx: Tx, views: ViewTx, handler: Handler, event: StoredEvent, now: Any) -> int:
    """One event's projection and its deliveries; how many deliveries were created."""
    created = 0
    for name in dict.fromkeys(handler(views, event)):
        created += await enqueue_delivery(tx, event.id, name, now)
    return created


# -- deliveries ------------------------------------------------------------------------


async def claim_deliveries(
    tx: Tx, owner: str, now: datetime, limit: int, lease_seconds: float, destinations: list[str]
) -> list[DeliveryJob]:
    """Lease up to `limit` due deliveries of `destinations`, oldest first; rows another
    instance is claiming are skipped."""
    d = tx.dialect
    at = d.instant(now)
    clause, params = d.any_of("destination", destinations)
    rows = await tx.all(
        "SELECT id, event_id, destination, attempts, created_at FROM deliveries "
        f"WHERE status IN ('pending', 'failed') AND next_attempt_at <= ? AND {clause} "
        "AND (lease_until IS NULL OR lease_until < ?) "
        f"ORDER BY next_attempt_at, id LIMIT ?{d.skip_locked}",
        (at, *params, at, limit),
    )
    if not rows:
        return []
    until = d.instant(now + timedelta(seconds=lease_seconds))
    for start in range(0, len(rows), 400):
        clause, params = d.any_of("id", [row["id"] for row in rows[start : start + 400]])
        await tx.execute(
            f"UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE {clause}",
            (owner, until, *params),
        )
    events = await events_by_id(tx, [row["event_id"] for row in rows])
    return [
        DeliveryJob(
            id=row["id"],
            destination=row["destination"],
            attempt=int(row["attempts"]) + 1,
            created_at=d.read_instant(row["created_at"]),
            event=events[row["event_id"]],
        )
        for row in rows
        if row["event_id"] in events
    ]


async def finish_delivery(tx: Tx, job: DeliveryJob, owner: str, outcome: DeliveryOutcome) -> bool:
    """Record the attempt and the delivery's new state if `owner` still holds the lease."""
    d = tx.dialect
    now = d.instant(utcnow())
    error = d.text(outcome.error)
    changed = await tx.execute(
        "UPDATE deliveries SET status = ?, attempts = ?, "
        "next_attempt_at = coalesce(?, next_attempt_at), lease_owner = NULL, "
        "lease_until = NULL, last_status_code = ?, last_error = ?, updated_at = ?, "
        "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END "
        "WHERE id = ? AND lease_owner = ?",
        (
            outcome.state,
            job.attempt,
            d.instant(outcome.retry_at),
            outcome.status_code,
            error,
            now,
            outcome.state,
            now,
            job.id,
            owner,
        ),
    )
    await tx.execute(
        "INSERT INTO delivery_attempts (id, delivery_id, attempt, started_at, "
        "duration_ms, outcome, status_code, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            new_id(),
            job.id,
            job.attempt,
            d.instant(outcome.started_at),
            outcome.duration_ms,
            outcome.state,
            outcome.status_code,
            error,
        ),
    )
    return changed == 1


_REQUEUE = (
    "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?, "
    "lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE "
)


async def _replay_event(tx: Tx, event_id: str, where: ReplayFilter, now: Any) -> int:
    """Queue one event again: its failed processing, and its deliveries (or the one named)."""
    row = await tx.one("SELECT status FROM inbox WHERE id = ?", (event_id,))
    if row is None:
        return 0
    queued = 0
    if row["status"] == "failed":
        await tx.execute(
            "UPDATE inbox SET status = 'received', error = NULL WHERE id = ?", (event_id,)
        )
        queued += 1
    clauses = ["event_id = ?"]
    params: list[Any] = [event_id]
    if where.destination is not None:
        clauses.append("destination = ?")
        params.append(where.destination)
    if where.status is not None:
        clauses.append("status = ?")
        params.append(where.status)
    changed = await tx.execute(_REQUEUE + " AND ".join(clauses), (now, now, *params))
    queued += changed
    if changed == 0 and where.destination is not None and row["status"] == "processed":
        # A destination added after the event was processed: deliver it there now.
        queued += await enqueue_delivery(tx, event_id, where.destination, now)
    return queued


class _Rehearsed(Exception):
    def __init__(self, queued: int) -> None:
        super().__init__("dry run")
        self.queued = queued


async def replay(tx: Tx, where: ReplayFilter, *, dry_run: bool = False) -> int:
    """Make matching deliveries due now with a fresh retry budget; failed processing is
    queued again. How many deliveries (and events) were queued; with `dry_run` the same
    work is rolled back, so the count is what a real replay would queue now."""
    if not dry_run:
        return await _replay(tx, where)
    try:
        async with tx.savepoint():
            raise _Rehearsed(await _replay(tx, where))
    except _Rehearsed as done:
        return done.queued


async def _replay(tx: Tx, where: ReplayFilter) -> int:
    now = tx.dialect.instant(utcnow())
    if where.event_ids:
        queued = 0
        for event_id in where.event_ids:
            queued += await _replay_event(tx, event_id, where, now)
        return queued
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
    queued = await tx.execute(_REQUEUE + " AND ".join(clauses), (now, now, *params))
    if where.status in (None, "failed") and where.destination is None:
        event_clauses = ["status = 'failed'"]
        event_params: list[Any] = []
        if where.source is not None:
            event_clauses.append("source = ?")
            event_params.append(where.source)
        if where.since is not None:
            event_clauses.append("id >= ?")
            event_params.append(floor_id(where.since))
        queued += await tx.execute(
            "UPDATE inbox SET status = 'received', error = NULL WHERE "
            + " AND ".join(event_clauses),
            event_params,
        )
    return queued


async def list_deliveries(
    tx: Tx, where: ViewFilter, cursor: str | None, limit: int
) -> Page[Delivery]:
    """Deliveries newest first (filters on id, event_id, destination, status)."""
    clauses, params = equal_filters(
        tx,
        [
            (column, where.equal.get(column))
            for column in ("id", "event_id", "destination", "status")
        ],
        "created_at",
        where.since,
    )
    if where.until is not None:
        clauses.append("created_at < ?")
        params.append(tx.dialect.instant(where.until))
    return await id_page(
        tx, "deliveries", _DELIVERY_COLUMNS, clauses, params, cursor, limit, _delivery
    )


_DELIVERY_COLUMNS = (
    "id, event_id, destination, status, attempts, next_attempt_at, lease_owner, lease_until, "
    "last_status_code, last_error, created_at, updated_at, delivered_at"
)


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row["id"],
        event_id=row["event_id"],
        destination=row["destination"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        delivered_at=row["delivered_at"],
    )


async def delivery_attempts(tx: Tx, delivery_id: str) -> list[DeliveryAttempt]:
    """Every attempt of one delivery, oldest first."""
    rows = await tx.all(
        "SELECT id, delivery_id, attempt, started_at, duration_ms, outcome, status_code, error "
        "FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt, id",
        (delivery_id,),
    )
    return [DeliveryAttempt(**tx.dialect.plain(row)) for row in rows]


async def destination_states(tx: Tx) -> dict[str, DestinationState]:
    """Destinations that were disabled, by name."""
    rows = await tx.all(
        "SELECT name, disabled_at, reason, updated_at FROM destination_state "
        "WHERE disabled_at IS NOT NULL"
    )
    return {row["name"]: DestinationState(**tx.dialect.plain(row)) for row in rows}


async def set_destination_disabled(tx: Tx, name: str, reason: str | None) -> None:
    """Disable a destination (`reason`), or enable it again (None)."""
    d = tx.dialect
    now = d.instant(utcnow())
    await tx.execute(
        "INSERT INTO destination_state (name, disabled_at, reason, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
        "disabled_at = excluded.disabled_at, reason = excluded.reason, "
        "updated_at = excluded.updated_at",
        (name, now if reason is not None else None, d.text(reason), now),
    )
