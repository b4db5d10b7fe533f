"""The outbox's work: a processing batch's result, a claimed delivery and the outcome of
one attempt."""

from __future__ import annotations

from datetime import datetime

import msgspec

from hookgate.domain.events import StoredEvent


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
