"""The outbox's work: a processing batch's result, a claimed delivery and the outcome of
one attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from hookgate.domain.events import IsoInstant, StoredEvent

# pending: not yet tried; failed: retry due at next_attempt_at; delivered; dead.
DeliveryStatus = Literal["pending", "failed", "delivered", "dead"]


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


class DeliveryAttempt(msgspec.Struct, kw_only=True):
    """One try of a delivery, as stored."""

    id: str
    delivery_id: str
    attempt: int
    started_at: IsoInstant
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None


class Delivery(msgspec.Struct, kw_only=True):
    """An event's delivery to one destination, as listings read it (the lease says which
    worker holds it until when)."""

    id: str
    event_id: str
    destination: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: IsoInstant
    lease_owner: str | None
    lease_until: IsoInstant | None
    last_status_code: int | None
    last_error: str | None
    created_at: IsoInstant
    updated_at: IsoInstant
    delivered_at: IsoInstant | None


class DeliveryDetail(Delivery, kw_only=True):
    """A delivery with its attempts, oldest first."""

    history: list[DeliveryAttempt]


class DestinationState(msgspec.Struct, kw_only=True):
    """A destination's stored state: `disabled_at` is set while it is paused (410 Gone or
    an operator), with the `reason`."""

    name: str
    disabled_at: IsoInstant | None
    reason: str | None
    updated_at: IsoInstant
