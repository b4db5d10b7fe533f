"""The `Store` both backends are: every method written once over the data layer
(inbox.py, authz.py, outbox.py, viewtx.py, retention.py), run by the backend's driver.

A driver (sqlite.py, postgres.py) supplies connections and transactions only: `_read`
runs a unit of work on a reader, `_write` queues it for the writer (group commit, lanes,
locks), `process_pending` wraps the processing batch in its own transaction, and the
PostgreSQL driver inserts plain ingest in bulk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from hookgate.domain.decisions import (
    AuthorizedSession,
    ConsumptionReport,
    Decision,
    DecisionRecord,
    Limit,
    SessionEnd,
)
from hookgate.domain.errors import StoreError
from hookgate.domain.events import (
    Event,
    EventWithBody,
    InboundEvent,
    IngestResult,
    Rejection,
    RejectionCount,
    SessionEndResult,
    StoredRejection,
    StoredRejectionDetail,
)
from hookgate.domain.outbox import (
    Delivery,
    DeliveryAttempt,
    DeliveryJob,
    DeliveryOutcome,
    DestinationState,
)
from hookgate.domain.queries import DecisionFilter, EventFilter, Page, ReplayFilter, ViewFilter
from hookgate.domain.rules import AuthChange, AuthEntity, AuthSnapshot
from hookgate.domain.tariffs import Pricing
from hookgate.store import authz, inbox, outbox, retention, viewtx
from hookgate.store.admission import Lane, WriteQueue
from hookgate.store.dialect import Dialect
from hookgate.store.health import PROBE_KEY, PROBE_TIMEOUT_SECONDS, WriteHealth
from hookgate.store.queries import QueryMethods
from hookgate.store.tx import Work
from hookgate.timeutil import iso, utcnow

T = TypeVar("T")


class SqlStore(QueryMethods):
    """The store's methods over a driver's `_read` and `_write`."""

    sql_dialect: Dialect
    writes: WriteQueue
    health: WriteHealth

    # -- what a driver supplies --------------------------------------------------------

    async def _read(self, work: Work[T]) -> T:
        """Run `work` on a reader connection (no writer queue)."""
        raise NotImplementedError

    def _write(
        self, work: Work[T], lane: Lane = Lane.INTERNAL, locks: Sequence[str] = ()
    ) -> Awaitable[T]:
        """Queue `work` for the writer; resolves after COMMIT. `locks` name what must be
        serialised across instances (PostgreSQL: advisory locks for the batch)."""
        raise NotImplementedError

    def _writer_alive(self) -> bool:
        raise NotImplementedError

    # -- admission ---------------------------------------------------------------------

    def check_ingest_room(self) -> None:
        self.writes.check(Lane.INGEST)

    def queued_writes(self) -> int:
        return self.writes.depth

    async def ping(self) -> None:
        await self._read(_select_one)
        if not self._writer_alive():
            raise StoreError("the writer is not running")
        if not self.health.needs_probe():
            return

        async def probe(tx: Any) -> None:
            await inbox.put_meta(tx, PROBE_KEY, iso(utcnow()))

        try:
            await asyncio.wait_for(self._write(probe), PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise StoreError(
                f"the writer did not commit a probe within {PROBE_TIMEOUT_SECONDS:g} s"
            ) from None

    # -- inbox and rejections ----------------------------------------------------------

    async def secret(self, key: str, make: bytes) -> bytes:
        return await self._write(lambda tx: inbox.secret(tx, key, make))

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        return await self._write(lambda tx: inbox.ingest(tx, event, consumption), Lane.INGEST)

    async def record_rejection(self, rejection: Rejection) -> None:
        await self._write(lambda tx: inbox.record_rejection(tx, rejection))

    async def count_rejections(self, counts: Sequence[RejectionCount]) -> None:
        if counts:
            await self._write(lambda tx: inbox.count_rejections(tx, counts))

    async def trim_rejections(self, max_bytes: int) -> int:
        return await self._write(lambda tx: inbox.trim_rejections(tx, max_bytes))

    async def rejection_counts(
        self, source: str | None, since: datetime, until: datetime | None
    ) -> list[dict[str, Any]]:
        return await self._read(lambda tx: inbox.rejection_counts(tx, source, since, until))

    async def list_events(self, where: EventFilter, cursor: str | None, limit: int) -> Page[Event]:
        return await self._read(lambda tx: inbox.list_events(tx, where, cursor, limit))

    async def get_event(self, event_id: str) -> EventWithBody | None:
        return await self._read(lambda tx: inbox.get_event(tx, event_id))

    async def list_rejections(
        self, source: str | None, cursor: str | None, limit: int
    ) -> Page[StoredRejection]:
        return await self._read(lambda tx: inbox.list_rejections(tx, source, cursor, limit))

    async def get_rejection(self, rejection_id: str) -> StoredRejectionDetail | None:
        return await self._read(lambda tx: inbox.get_rejection(tx, rejection_id))

    async def mark_rejection_rerun(self, rejection_id: str, event_id: str) -> None:
        await self._write(lambda tx: inbox.mark_rejection_rerun(tx, rejection_id, event_id))

    async def find_event(self, source: str, dedup_key: str) -> str | None:
        return await self._read(lambda tx: inbox.find_event(tx, source, dedup_key))

    async def requeue_event(
        self,
        event_id: str,
        document: Any,
        event_type: str,
        dedup_key: str,
        subject: str | None,
        flags: list[str],
    ) -> bool:
        return await self._write(
            lambda tx: inbox.requeue_event(
                tx, event_id, document, event_type, dedup_key, subject, flags
            )
        )

    # -- decisions, sessions and rules -------------------------------------------------

    async def record_session_start(
        self,
        event: InboundEvent,
        decision: Decision,
        claim: Callable[[], bool] | None = None,
        limits: Sequence[Limit] = (),
    ) -> None:
        await self._write(
            lambda tx: authz.record_session_start(tx, event, decision, claim, limits),
            Lane.DECISION,
            authz.limit_locks(limits),
        )

    async def record_fallback(
        self, event: InboundEvent, decision: Decision, void_session: str | None
    ) -> None:
        await self._write(
            lambda tx: authz.record_fallback(tx, event, decision, void_session), Lane.AUDIT
        )

    async def record_session_end(
        self, event: InboundEvent, end: SessionEnd, pricing: Pricing | None = None
    ) -> SessionEndResult:
        return await self._write(
            lambda tx: authz.record_session_end(tx, event, end, pricing), Lane.DECISION
        )

    async def list_decisions(
        self, where: DecisionFilter, cursor: str | None, limit: int
    ) -> Page[DecisionRecord]:
        return await self._read(lambda tx: authz.list_decisions(tx, where, cursor, limit))

    async def get_session(self, source: str, session_id: str) -> AuthorizedSession | None:
        return await self._read(lambda tx: authz.get_session(tx, source, session_id))

    async def auth_snapshot(self, since: datetime) -> AuthSnapshot:
        return await self._read(lambda tx: authz.auth_snapshot(tx, since))

    async def auth_changes(self, after: int, limit: int) -> list[AuthChange]:
        return await self._read(lambda tx: authz.auth_changes(tx, after, limit))

    async def auth_put(self, entities: list[AuthEntity]) -> None:
        await self.auth_write(entities, [])

    async def auth_delete(self, kind: str, key: str) -> bool:
        return await self.auth_write([], [(kind, key)]) == 1

    async def auth_write(
        self, put: list[AuthEntity], delete: list[tuple[str, str]], *, create: bool = False
    ) -> int:
        return await self._write(lambda tx: authz.auth_write(tx, put, delete, create=create))

    async def auth_get(self, kind: str, key: str) -> AuthEntity | None:
        return await self._read(lambda tx: authz.auth_get(tx, kind, key))

    async def auth_list(self, kind: str, after: str | None, limit: int) -> list[AuthEntity]:
        return await self._read(lambda tx: authz.auth_list(tx, kind, after, limit))

    async def auth_sync_config(self, entities: list[AuthEntity]) -> int:
        return await self._write(
            lambda tx: authz.auth_sync_config(tx, entities), locks=[authz.SYNC_CONFIG_LOCK]
        )

    # -- outbox and deliveries ---------------------------------------------------------

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
        return await self._write(
            lambda tx: outbox.claim_deliveries(tx, owner, now, limit, lease_seconds, destinations)
        )

    async def finish_delivery(self, job: DeliveryJob, owner: str, outcome: DeliveryOutcome) -> bool:
        return await self._write(lambda tx: outbox.finish_delivery(tx, job, owner, outcome))

    async def replay(self, where: ReplayFilter, *, dry_run: bool = False) -> int:
        return await self._write(lambda tx: outbox.replay(tx, where, dry_run=dry_run))

    async def list_deliveries(
        self, where: ViewFilter, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        return await self._read(lambda tx: outbox.list_deliveries(tx, where, cursor, limit))

    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        return await self._read(lambda tx: outbox.delivery_attempts(tx, delivery_id))

    async def destination_states(self) -> dict[str, DestinationState]:
        return await self._read(outbox.destination_states)

    async def set_destination_disabled(self, name: str, reason: str | None) -> None:
        await self._write(lambda tx: outbox.set_destination_disabled(tx, name, reason))

    # -- views and retention -----------------------------------------------------------

    async def list_view(
        self, table: str, where: ViewFilter, cursor: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        return await self._read(lambda tx: viewtx.list_page(tx, table, where, cursor, limit))

    async def view_rows(self, table: str, where: ViewFilter) -> list[dict[str, Any]]:
        return await self._read(lambda tx: viewtx.list_rows(tx, table, where))

    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> dict[str, int]:
        def write(step: retention.Step) -> Awaitable[int]:
            return self._write(step)

        return await retention.prune(
            self.sql_dialect, self._read, write, older_than, dry_run=dry_run
        )


async def _select_one(tx: Any) -> None:
    await tx.one("SELECT 1 AS one")
