"""What the console's charts ask for and what they get (store/aggregates.py runs them):
each query names a time window [since, until), each result is one row of a chart."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

__all__ = [
    "MAX_BUCKETS",
    "Backlog",
    "CostQuery",
    "DecisionQuery",
    "DecisionStat",
    "DeliveryQuery",
    "DeliveryStat",
    "Dimension",
    "EnergyDay",
    "EnergyQuery",
    "EventCount",
    "EventCountQuery",
    "Grain",
    "RejectionQuery",
    "RejectionStat",
    "VehicleCost",
]

Grain = Literal["minute", "hour", "day", "month"]
Dimension = Literal["source", "event_type", "status"]
MAX_BUCKETS = 2000


class EventCountQuery(msgspec.Struct, kw_only=True):
    """Events received in [since, until) per `grain` bucket (minute, hour or day), split
    by the dimensions in `by` (the others are summed over)."""

    since: datetime
    until: datetime
    grain: Grain = "hour"
    by: list[Dimension] = msgspec.field(default_factory=lambda: ["source", "event_type", "status"])
    source: str | None = None
    event_type: str | None = None
    status: str | None = None


class EventCount(msgspec.Struct, kw_only=True):
    """Events of one bucket; a dimension not asked for is None."""

    bucket: datetime
    source: str | None
    event_type: str | None
    status: str | None
    count: int


class RejectionQuery(msgspec.Struct, kw_only=True):
    """Refusals in [since, until) per source and reason; per bucket with a `grain`."""

    since: datetime
    until: datetime
    grain: Grain | None = None
    source: str | None = None


class RejectionStat(msgspec.Struct, kw_only=True):
    """`total` refusals, `recorded` of them kept in full (the rest only counted)."""

    bucket: datetime | None
    source: str
    reason: str
    total: int
    recorded: int


class DeliveryQuery(msgspec.Struct, kw_only=True):
    """Deliveries created in [since, until) per destination and status (pending, failed,
    delivered, dead); per bucket with a `grain`."""

    since: datetime
    until: datetime
    grain: Grain | None = None
    destination: str | None = None


class DeliveryStat(msgspec.Struct, kw_only=True):
    bucket: datetime | None
    destination: str
    status: str
    count: int


class Backlog(msgspec.Struct, kw_only=True):
    """What waits: events not yet processed (and the oldest one's age), failed and
    quarantined events, deliveries waiting for an attempt (pending or failed) and the
    longest overdue one, dead deliveries."""

    received: int
    oldest_received_at: datetime | None
    oldest_received_age_seconds: float | None
    failed: int
    quarantined: int
    deliveries_waiting: int
    oldest_due_at: datetime | None
    oldest_due_age_seconds: float | None
    deliveries_dead: int
    # Settled events not yet indexed for search and counted (the worker does it when idle).
    search_waiting: int = 0


class DecisionQuery(msgspec.Struct, kw_only=True):
    """Authorization decisions in [since, until) per source and result; per bucket with a
    `grain`."""

    since: datetime
    until: datetime
    grain: Grain | None = None
    source: str | None = None


class DecisionStat(msgspec.Struct, kw_only=True):
    """`count` decisions with this result, `fallback` of them the deadline fallback's."""

    bucket: datetime | None
    source: str
    result: str
    count: int
    fallback: int


class EnergyQuery(msgspec.Struct, kw_only=True):
    """Energy of sessions that occurred in [since, until), per UTC day, token and group."""

    since: datetime
    until: datetime
    token: str | None = None
    group_id: str | None = None


class EnergyDay(msgspec.Struct, kw_only=True):
    day: datetime
    token: str | None
    group_id: str | None
    kwh: str
    sessions: int


class CostQuery(msgspec.Struct, kw_only=True):
    """Parking costs of transactions that ended in [since, until), per UTC month and
    vehicle (licence plate) and currency; the `limit` costliest per month first."""

    since: datetime
    until: datetime
    license_number: str | None = None
    limit: int = 1000


class VehicleCost(msgspec.Struct, kw_only=True):
    month: datetime
    license_number: str
    currency: str
    total: str
    parkings: int
