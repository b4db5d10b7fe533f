"""The storage interface every backend fills in, and the records that cross it.

Callers (ingress, admin, CLI) see only this module; SQL lives in the backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

import msgspec


class StoreError(Exception):
    """Storage could not do the work; the request must be answered 503, never 2xx."""


class Abandoned(StoreError):
    """A claimed write was given up because another path answered first."""


class AlreadyExists(StoreError):
    """A create found the key taken (the unique key decided, not a prior read)."""


class SchemaOutdated(StoreError):
    """The database lacks migrations this version needs."""


class LimitReached(StoreError):
    """An approval would break a limit once every instance's sessions are counted: the
    caller refreshes its view and decides again."""


class Overloaded(StoreError):
    """The writer queue is full for this kind of write: refused at once, nothing queued.
    The caller answers 503 with `Retry-After: retry_after` (or, pulling from Kafka, waits
    that long and reads again)."""

    def __init__(self, depth: int, limit: int, retry_after: int) -> None:
        super().__init__(f"{depth} writes queued (limit {limit} for this kind of write)")
        self.depth = depth
        self.limit = limit
        self.retry_after = retry_after


class InboundEvent(msgspec.Struct, kw_only=True):
    """One verified, parsed provider call, as it goes into the inbox."""

    id: str
    source: str
    provider: str
    event_type: str
    received_at: datetime
    dedup_key: str
    raw_body: bytes
    body_sha256: str
    headers: dict[str, str]
    document: Any
    subject: str | None = None
    status: str = "received"
    flags: list[str] = []


class Rejection(msgspec.Struct, kw_only=True):
    """A request that was refused, kept for inspection and never processed."""

    id: str
    received_at: datetime
    source: str
    provider: str | None
    method: str
    path: str
    status: int
    reason: str
    detail: str
    headers: dict[str, str]
    remote: str | None
    body_sha256: str
    body_size: int
    body: bytes
    # msgspec JSON {"headers": {...}, "body": <base64>} for a re-run after a configuration
    # fix (Provider.replay_copy); None when the request cannot be verified again.
    replay: bytes | None = None


class RejectionCount(msgspec.Struct, kw_only=True):
    """Refusals of one source and reason in one minute, added to what is stored: `total`
    of them, `recorded` in full, `body_bytes` their bodies' declared or read sizes."""

    minute: datetime
    source: str
    reason: str
    total: int
    recorded: int
    body_bytes: int


class Decision(msgspec.Struct, kw_only=True):
    """The answer to a Zaptec session start, with what led to it."""

    id: str
    decided_at: datetime
    source: str
    event_id: str | None
    charger_id: str | None
    token: str | None
    user_id: str | None
    installation_id: str | None
    result: str
    reasons: list[str]
    session_id: str | None
    fallback: bool = False
    latency_us: int = 0
    group_id: str | None = None
    reserved_kwh: str = "0"


class SessionEnd(msgspec.Struct, kw_only=True):
    """A Zaptec session end, matched against the sessions hookgate approved."""

    # Ids in the end call that may be the sessionId hookgate issued, most likely first.
    session_ids: list[str]
    ended_at: datetime | None
    energy_kwh: str | None
    # The charge token in the end call and its group: accounted when no start matches.
    token: str | None = None
    group_id: str | None = None


class ConsumptionReport(msgspec.Struct, kw_only=True):
    """Energy (and money) a provider reports for one session; a later, larger report of
    the same session replaces an earlier one."""

    session_key: str
    origin: str
    token: str | None
    group_id: str | None = None
    kwh: str
    money: str | None = None
    currency: str | None = None
    occurred_at: datetime


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    """A limit an approval must respect, re-checked by the store inside the transaction
    that records the session (other instances may have approved against it meanwhile).

    Energy: consumption in [since, until) plus the reservations of active sessions plus
    `reserve_kwh` must stay within `max_kwh` (and usage alone below it). Sessions: fewer
    than `max_sessions` active. Active sessions started before `active_since` are stale
    and not counted.
    """

    subject: Literal["token", "group"]
    subject_id: str
    active_since: datetime
    max_kwh: str | None = None
    reserve_kwh: str = "0"
    since: datetime | None = None
    until: datetime | None = None
    max_sessions: int | None = None


class AuthEntity(msgspec.Struct, kw_only=True):
    """A rule entity (token, group, charger rule, budget) as stored: a JSON document."""

    kind: str
    key: str
    doc: bytes
    managed_by: str = "api"


class AuthChange(msgspec.Struct, kw_only=True):
    """One entry of the change log with the changed row as it is now (None: deleted/gone).

    For `token`/`group`/`charger`/`budget` the row is {"doc": bytes}; for `session` an
    authorized_sessions row; for `consumption` a consumption row.
    """

    seq: int
    kind: str
    key: str
    row: dict[str, Any] | None


class AuthSnapshot(msgspec.Struct, kw_only=True):
    """Everything the decision engine loads at start, and the change-log position."""

    seq: int
    entities: list[AuthEntity]
    sessions: list[dict[str, Any]]
    consumption: list[dict[str, Any]]


class DecisionFilter(msgspec.Struct, kw_only=True):
    """Filters of the decision audit; None means any."""

    source: str | None = None
    token: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class IngestResult(msgspec.Struct, frozen=True):
    """`stored` is False when the dedup key was already in the inbox."""

    stored: bool
    event_id: str


class SessionEndResult(msgspec.Struct, frozen=True):
    """Outcome of a session end: duplicate (already seen) and matched (start known)."""

    stored: bool
    event_id: str
    matched: bool


class EventFilter(msgspec.Struct, kw_only=True):
    """Filters of the inbox listing; None means any."""

    source: str | None = None
    provider: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None


class Page(msgspec.Struct):
    """A page of rows, newest first, and the cursor of the next page if any."""

    items: list[dict[str, Any]]
    next: str | None


class StoredEvent(msgspec.Struct, kw_only=True):
    """An inbox row as the processing step sees it (no raw body).

    `decision` is the authorization decision recorded for the event, if any (Zaptec starts).
    """

    id: str
    source: str
    provider: str
    event_type: str
    received_at: datetime
    subject: str | None
    status: str
    flags: list[str]
    document: Any
    decision: dict[str, Any] | None = None


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
        self, table: str, where: Mapping[str, Any], order_by: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Rows matching every `column = value` of `where`."""


# The processing step for one event: project it and return the destinations to deliver it to.
Handler = Callable[[ViewTx, StoredEvent], list[str]]


class ProcessResult(msgspec.Struct, frozen=True):
    """What one processing batch did."""

    processed: int
    failed: int
    deliveries: int


class DeliveryJob(msgspec.Struct, kw_only=True):
    """A claimed delivery: the destination, the attempt about to be made, the event."""

    id: str
    destination: str
    attempt: int  # 1 for the first attempt
    created_at: datetime
    event: StoredEvent


class DeliveryOutcome(msgspec.Struct, kw_only=True):
    """The result of one attempt. `state`: delivered | failed (retry at `retry_at`) | dead."""

    state: str
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_at: datetime | None = None


class ReplayFilter(msgspec.Struct, kw_only=True):
    """What to deliver again: explicit events, or a source/time/status selection."""

    event_ids: list[str] = []
    source: str | None = None
    since: datetime | None = None
    status: str | None = None  # delivery status: failed | dead | delivered | pending
    destination: str | None = None


class ViewFilter(msgspec.Struct, kw_only=True):
    """A listing of a view: equality filters on columns, a time range on `time_column`."""

    equal: dict[str, Any] = {}
    time_column: str | None = None
    since: datetime | None = None
    until: datetime | None = None


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

    async def record_session_end(self, event: InboundEvent, end: SessionEnd) -> SessionEndResult:
        """Store the end call once and close (or flag as unmatched) its session."""

    async def list_events(self, where: EventFilter, cursor: str | None, limit: int) -> Page:
        """Inbox rows without raw bodies, newest first."""

    async def get_event(self, event_id: str) -> dict[str, Any] | None:
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

    async def list_rejections(self, source: str | None, cursor: str | None, limit: int) -> Page:
        """Rejected requests, newest first."""

    async def get_rejection(self, rejection_id: str) -> dict[str, Any] | None:
        """One rejection with its body, replay copy (bytes or None) and `rerun_event_id`."""

    async def mark_rejection_rerun(self, rejection_id: str, event_id: str) -> None:
        """Note the inbox event a re-run of the rejection produced."""

    async def find_event(self, source: str, dedup_key: str) -> str | None:
        """The id of the inbox event of `source` holding `dedup_key`, if any."""

    async def list_decisions(self, where: DecisionFilter, cursor: str | None, limit: int) -> Page:
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

    async def get_session(self, source: str, session_id: str) -> dict[str, Any] | None:
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

    async def replay(self, where: ReplayFilter) -> int:
        """Make matching deliveries due now with a fresh retry budget (creating the delivery
        for an explicitly named event and destination); failed processing is queued again.
        Returns how many deliveries (and events) were queued."""

    async def list_deliveries(self, where: ViewFilter, cursor: str | None, limit: int) -> Page:
        """Deliveries newest first (filters on event_id, destination, status)."""

    async def delivery_attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        """Every attempt of one delivery, oldest first."""

    async def destination_states(self) -> dict[str, dict[str, Any]]:
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
    ) -> Page:
        """A domain view's rows newest first (by their `id`), with JSON and instant
        columns decoded."""

    async def view_rows(self, table: str, where: ViewFilter) -> list[dict[str, Any]]:
        """Every matching row of a view, oldest first (for exports)."""
