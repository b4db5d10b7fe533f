"""The storage interface every backend fills in.

Callers (ingress, admin, CLI, workers) see only this module; SQL lives in the backends.
The records that cross it are domain records (hookgate.domain).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from hookgate.domain.decisions import (
    AuthorizedSession,
    ConsumptionReport,
    Decision,
    DecisionRecord,
    Limit,
    SessionEnd,
)
from hookgate.domain.events import (
    Event,
    EventWithBody,
    InboundEvent,
    IngestResult,
    Rejection,
    RejectionCount,
    SessionEndResult,
    StoredEvent,
    StoredRejection,
    StoredRejectionDetail,
)
from hookgate.domain.outbox import (
    Delivery,
    DeliveryAttempt,
    DeliveryJob,
    DeliveryOutcome,
    DestinationState,
    ProcessResult,
)
from hookgate.domain.queries import DecisionFilter, EventFilter, Page, ReplayFilter, ViewFilter
from hookgate.domain.rules import AuthChange, AuthEntity, AuthSnapshot
from hookgate.domain.search import EventPage, EventSearch
from hookgate.domain.stats import (
    Backlog,
    CostQuery,
    DecisionQuery,
    DecisionStat,
    DeliveryQuery,
    DeliveryStat,
    EnergyDay,
    EnergyQuery,
    EventCount,
    EventCountQuery,
    RejectionQuery,
    RejectionStat,
    VehicleCost,
)
from hookgate.domain.tariffs import Pricing

T = TypeVar("T")


class ViewTx(Protocol):
    """Row access to the domain views inside one transaction (synchronous: it runs on the
    store's own writer). Tables and columns are the ones of the view migrations; values are
    str, int, bool, None, datetime (stored as instants) or JSON-able lists/dicts (for the
    tables' JSON columns). Rows come back with the same Python types."""

    def get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row whose primary key is `key`, or None."""

    def upsert(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert `row`, or update the given columns of the row with its primary key."""

    def insert(self, table: str, row: Mapping[str, Any]) -> bool:
        """Insert `row`; False (and nothing written) when its primary key exists."""

    def select(
        self,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None = None,
        limit: int = 1000,
        below: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows matching every `column = value` of `where` and `column < value` of
        `below`."""

    def token_vehicle(self, uid: str) -> str | None:
        """The `vehicle` of the stored charge token `uid` (normalised), or None."""


# The processing step for one event: project it and return the destinations to deliver it to.
Handler = Callable[[ViewTx, StoredEvent], list[str]]


class Store(Protocol):
    """Durable storage. Every write method returns only after the data is committed."""

    async def open(self) -> None:
        """Connect; refuse (SchemaOutdated) when migrations are pending."""

    async def close(self) -> None:
        """Finish queued writes and disconnect."""

    async def migrate(self) -> list[int]:
        """Apply pending migrations; return the versions applied."""

    async def pending_migrations(self) -> list[int]:
        """Versions not yet applied."""

    async def secret(self, key: str, make: bytes) -> bytes:
        """A shared secret stored once per database (first writer wins)."""

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        """Insert unless (source, dedup_key) exists; account `consumption` with it.
        Raises `Overloaded` at once when the writer queue has no room for ingest."""

    def check_ingest_room(self) -> None:
        """Raise `Overloaded` if `ingest` would be refused now: lets the caller skip
        verifying and parsing a body that cannot be stored anyway."""

    def queued_writes(self) -> int:
        """Writes queued or in a batch not yet committed."""

    async def record_rejection(self, rejection: Rejection) -> None:
        """Keep a refused request for inspection."""

    async def record_session_start(
        self,
        event: InboundEvent,
        decision: Decision,
        claim: Callable[[], bool] | None = None,
        limits: Sequence[Limit] = (),
    ) -> None:
        """Store the start call and its decision together; track an approved session.

        `claim` runs inside the transaction: when it returns False the write is abandoned
        (Abandoned is raised) because the deadline fallback has answered instead. Each of
        `limits` is checked against every committed session and consumption, serialised
        per subject; a broken one raises LimitReached and nothing is written.
        """

    async def record_fallback(
        self, event: InboundEvent, decision: Decision, void_session: str | None
    ) -> None:
        """Record the fallback answer (and its event if not yet stored); void a session
        the engine approved but the provider never heard of."""

    async def record_session_end(
        self, event: InboundEvent, end: SessionEnd, pricing: Pricing | None = None
    ) -> SessionEndResult:
        """Store the end call once and close (or flag as unmatched) its session; account
        its energy against budgets, with the money `pricing` makes of it (pure Python,
        inside the transaction) when a tariff applies."""

    async def list_events(self, where: EventFilter, cursor: str | None, limit: int) -> Page[Event]:
        """Inbox rows without raw bodies, newest first."""

    async def get_event(self, event_id: str) -> EventWithBody | None:
        """One inbox row with its raw body."""

    async def count_rejections(self, counts: Sequence[RejectionCount]) -> None:
        """Add refusal counts to their (minute, source, reason) rows."""

    async def trim_rejections(self, max_bytes: int) -> int:
        """Delete the oldest rejection records until the rest hold at most `max_bytes`
        (`stored_bytes`); returns how many were deleted."""

    async def rejection_counts(
        self, source: str | None, since: datetime, until: datetime | None
    ) -> list[dict[str, Any]]:
        """Refusals per source and reason in minutes from `since` to before `until`:
        total, recorded, unrecorded, body_bytes, first and last minute; most first."""

    async def list_rejections(
        self, source: str | None, cursor: str | None, limit: int
    ) -> Page[StoredRejection]:
        """Rejected requests, newest first."""

    async def get_rejection(self, rejection_id: str) -> StoredRejectionDetail | None:
        """One rejection with its body, replay copy (bytes or None) and `rerun_event_id`."""

    async def mark_rejection_rerun(self, rejection_id: str, event_id: str) -> None:
        """Note the inbox event a re-run of the rejection produced."""

    async def find_event(self, source: str, dedup_key: str) -> str | None:
        """The id of the inbox event of `source` holding `dedup_key`, if any."""

    async def list_decisions(
        self, where: DecisionFilter, cursor: str | None, limit: int
    ) -> Page[DecisionRecord]:
        """Authorization decisions, newest first."""

    async def auth_snapshot(self, since: datetime) -> AuthSnapshot:
        """All rule entities, live sessions, and consumption since `since`."""

    async def auth_changes(self, after: int, limit: int) -> list[AuthChange]:
        """Change-log entries after `after`, oldest first, with their current rows."""

    async def auth_put(self, entities: list[AuthEntity]) -> None:
        """Insert or replace rule entities in one transaction."""

    async def auth_write(
        self, put: list[AuthEntity], delete: list[tuple[str, str]], *, create: bool = False
    ) -> int:
        """Put and delete rule entities in one transaction; returns how many were deleted.
        With `create`, a `put` whose key exists raises AlreadyExists and nothing is written."""

    async def auth_delete(self, kind: str, key: str) -> bool:
        """Remove one rule entity; False when there was none."""

    async def auth_get(self, kind: str, key: str) -> AuthEntity | None:
        """One rule entity."""

    async def auth_list(self, kind: str, after: str | None, limit: int) -> list[AuthEntity]:
        """Rule entities of a kind in key order, after `after`."""

    async def auth_sync_config(self, entities: list[AuthEntity]) -> int:
        """Make the configuration-managed entities exactly `entities`; returns changes."""

    async def get_session(self, source: str, session_id: str) -> AuthorizedSession | None:
        """An authorized (or unmatched) Zaptec session."""

    async def prune(self, older_than: datetime, *, dry_run: bool = False) -> dict[str, int]:
        """Retention: clear the raw bodies of processed inbox rows received before
        `older_than` (the row, its document and body hash stay; failed and quarantined
        events keep theirs for a re-run), delete older rejections, finished (delivered or
        dead) deliveries with their attempts, and change-log entries. Decisions, sessions,
        consumption and views are kept. Returns how many rows each step touched (would
        touch, with `dry_run`)."""

    async def ping(self) -> None:
        """Raise StoreError when the database cannot be reached, the writer is not
        running, or writes fail: without a commit in the last few seconds, a probe write
        (store/health.py) must commit in time."""

    # -- processing and delivery (docs/adr/0006) -----------------------------------------

    async def process_pending(self, handler: Handler, limit: int) -> ProcessResult:
        """Run `handler` over up to `limit` received events, oldest first, each in its own
        savepoint of one transaction: its view changes, its `processed` status and one
        pending delivery per returned destination commit together. An event whose handler
        raises is marked `failed` with the error and does not stop the others. Events
        claimed by another instance are skipped."""

    async def claim_deliveries(
        self,
        owner: str,
        now: datetime,
        limit: int,
        lease_seconds: float,
        destinations: list[str],
    ) -> list[DeliveryJob]:
        """Lease up to `limit` due deliveries (pending or failed, next attempt <= now,
        lease free or expired) of `destinations`, oldest first."""

    async def finish_delivery(self, job: DeliveryJob, owner: str, outcome: DeliveryOutcome) -> bool:
        """Record the attempt and the delivery's new state, if `owner` still holds the lease
        (False otherwise: another worker took it over)."""

    async def replay(self, where: ReplayFilter, *, dry_run: bool = False) -> int:
        """Make matching deliveries due now with a fresh retry budget (creating the delivery
        for an explicitly named event and destination); failed processing is queued again.
        Returns how many deliveries (and events) were queued; with `dry_run` the same work
        is rolled back, so the count is what a real replay would queue now."""

    async def list_deliveries(
        self, where: ViewFilter, cursor: str | None, limit: int
    ) -> Page[Delivery]:
        """Deliveries newest first (filters on event_id, destination, status)."""

    async def delivery_attempts(self, delivery_id: str) -> list[DeliveryAttempt]:
        """Every attempt of one delivery, oldest first."""

    async def destination_states(self) -> dict[str, DestinationState]:
        """Destinations that were disabled (410 Gone or by an operator), by name."""

    async def set_destination_disabled(self, name: str, reason: str | None) -> None:
        """Disable a destination (`reason`), or enable it again (None)."""

    async def requeue_event(
        self,
        event_id: str,
        document: Any,
        event_type: str,
        dedup_key: str,
        subject: str | None,
        flags: list[str],
    ) -> bool:
        """Re-parse of a quarantined event: replace its parsed form and queue it for
        processing. False when its new dedup key is already taken (a duplicate)."""

    async def list_view(
        self, table: str, where: ViewFilter, cursor: str | None, limit: int
    ) -> Page[dict[str, Any]]:
        """A domain view's rows newest first (by their `id`), with JSON and instant
        columns decoded."""

    async def view_rows(self, table: str, where: ViewFilter) -> list[dict[str, Any]]:
        """Every matching row of a view, oldest first (for exports)."""

    async def index_search(self, limit: int) -> int:
        """Index and count up to `limit` events processing settled (search_queue), oldest
        first; returns how many were done, 0 when none wait. The processing worker calls
        it when it has nothing to process."""

    # -- search and aggregates (store/search.py, store/aggregates.py, docs/adr/0020) ------
    # Invalid filters raise search.InvalidQuery (a ValueError), a foreign cursor BadCursor.

    async def search_events(self, where: EventSearch, cursor: str | None, limit: int) -> EventPage:
        """Events matching every word of the text, every payload field match and the inbox
        filters, newest first. Text and fields find events once processing took them."""

    async def event_counts(self, query: EventCountQuery) -> list[EventCount]:
        """Events received per minute, hour or day, by source, type and status."""

    async def rejection_stats(self, query: RejectionQuery) -> list[RejectionStat]:
        """Refusals per source and reason, optionally per bucket."""

    async def delivery_stats(self, query: DeliveryQuery) -> list[DeliveryStat]:
        """Deliveries per destination and status, optionally per bucket."""

    async def backlog(self, now: datetime) -> Backlog:
        """Events and deliveries waiting, with the oldest one's age as of `now`."""

    async def decision_stats(self, query: DecisionQuery) -> list[DecisionStat]:
        """Authorization decisions per source and result, optionally per bucket."""

    async def energy_per_day(self, query: EnergyQuery) -> list[EnergyDay]:
        """Consumed kWh per UTC day, token and group."""

    async def vehicle_costs(self, query: CostQuery) -> list[VehicleCost]:
        """Parking costs per UTC month and vehicle, costliest first."""

    # -- SQL written once for both backends (store/alerting.py) ---------------------------

    async def sql_read(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` on a reading DB-API connection (sqlite3 or psycopg)."""

    async def sql_write(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(connection)` where it may write: SQLite's writer (inside its batch's
        transaction), or a PostgreSQL connection on which `fn` opens its transaction."""
