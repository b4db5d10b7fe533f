"""Provider calls as hookgate keeps them: the inbox record, the refused request, and
what an ingest reports back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# An instant as stored records are read: fixed-width UTC text (`timeutil.iso`), the form
# both backends return, so it sorts as text and the JSON answered stays byte for byte the
# same whatever the backend. `timeutil.parse_iso` turns it into a datetime.
IsoInstant = Annotated[
    str, Meta(extra_json_schema={"format": "date-time"}, description="UTC, ISO 8601")
]

# What an inbox event can be: stored and waiting, done, failed in processing, held back.
EventStatus = Literal["received", "processed", "failed", "quarantined"]


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
    # The id of the request that brought it (logs, problem answers) and, with tracing on,
    # the W3C traceparent its processing and deliveries continue.
    request_id: str | None = None
    trace_context: str | None = None


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
    # W3C traceparent of the request that brought the event (tracing on), else None.
    trace_context: str | None = None


class IngestResult(msgspec.Struct, frozen=True):
    """`stored` is False when the dedup key was already in the inbox."""

    stored: bool
    event_id: str


class SessionEndResult(msgspec.Struct, frozen=True):
    """Outcome of a session end: duplicate (already seen) and matched (start known)."""

    stored: bool
    event_id: str
    matched: bool


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
    # The id every log line of the request carried and its problem answer showed.
    request_id: str | None = None


class RejectionCount(msgspec.Struct, kw_only=True):
    """Refusals of one source and reason in one minute, added to what is stored: `total`
    of them, `recorded` in full, `body_bytes` their bodies' declared or read sizes."""

    minute: datetime
    source: str
    reason: str
    total: int
    recorded: int
    body_bytes: int


class Event(msgspec.Struct, kw_only=True):
    """An inbox event as listings read it: a verified provider call as stored, without
    its raw body (`body_size` is the body's length; None once retention cleared it)."""

    id: str
    source: str
    provider: str
    type: str
    received_at: IsoInstant
    dedup_key: str
    subject: str | None
    status: EventStatus
    flags: list[str]
    headers: dict[str, str]
    document: Any
    body_sha256: str
    body_size: int | None
    request_id: str | None


class EventWithBody(Event, kw_only=True):
    """An inbox event with the exact bytes the provider sent (empty once retention
    cleared them)."""

    raw_body: bytes


class StoredRejection(msgspec.Struct, kw_only=True):
    """A refused call as listings read it (masked credentials), kept for inspection and
    never processed; `rerun_event_id` is the inbox event a re-run made of it."""

    id: str
    received_at: IsoInstant
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
    rerun_event_id: str | None
    request_id: str | None


class StoredRejectionDetail(StoredRejection, kw_only=True):
    """A rejection with its replay copy (None when the call cannot be verified again)
    and what it costs in the log's size cap."""

    replay: bytes | None
    stored_bytes: int
