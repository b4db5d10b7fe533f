"""Search and chart aggregates from what a user types (CLI options, URL query parameters)
to typed results: the one place that parses `field=value`, fills default time windows and
refuses bad input with a message saying what to fix (`InvalidQuery`, a ValueError).

The CLI (`hookgate events search`, `hookgate stats ...`) and the admin API call these; the
store runs them (store/search.py, store/aggregates.py). Every function takes the store
first and keyword arguments after it; instants are aware datetimes or ISO 8601 text.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import get_args

from hookgate.store.aggregates import (
    Backlog,
    CostQuery,
    DecisionQuery,
    DecisionStat,
    DeliveryQuery,
    DeliveryStat,
    Dimension,
    EnergyDay,
    EnergyQuery,
    EventCount,
    EventCountQuery,
    Grain,
    RejectionQuery,
    RejectionStat,
    VehicleCost,
)
from hookgate.store.base import Store
from hookgate.store.search import EventPage, EventSearch, FieldMatch, InvalidQuery
from hookgate.timeutil import parse_iso, utcnow

__all__ = [
    "DEFAULT_SPAN",
    "InvalidQuery",
    "backlog",
    "decisions",
    "deliveries",
    "energy",
    "event_counts",
    "parse_field",
    "parse_instant",
    "rejections",
    "search_events",
    "vehicle_costs",
]

# The window a chart shows when no `since` is given, by grain (None: totals).
DEFAULT_SPAN: dict[str | None, timedelta] = {
    "minute": timedelta(hours=1),
    "hour": timedelta(days=1),
    "day": timedelta(days=30),
    "month": timedelta(days=365),
    None: timedelta(days=1),
}
MAX_LIMIT = 500
Instant = datetime | str | None


def parse_field(text: str) -> FieldMatch:
    """`name=value` (spaces around `=` allowed) as a payload field match."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InvalidQuery(
            f"a field filter is NAME=VALUE (e.g. licenseNumber=ABC123), not {text!r}"
        )
    return FieldMatch(name.strip(), value.strip())


def parse_instant(value: Instant, name: str) -> datetime | None:
    """An ISO 8601 instant (a date-time without offset is UTC), or None."""
    if value is None or isinstance(value, datetime):
        if value is not None and value.tzinfo is None:
            raise InvalidQuery(f"{name} needs a time zone")
        return value
    try:
        return parse_iso(value)
    except ValueError:
        raise InvalidQuery(
            f"{name} must be an ISO 8601 date-time such as 2026-01-31T12:00:00Z, not {value!r}"
        ) from None


def _window(
    since: Instant, until: Instant, grain: str | None, now: datetime | None
) -> tuple[datetime, datetime]:
    end = parse_instant(until, "until") or now or utcnow()
    start = parse_instant(since, "since") or end - DEFAULT_SPAN[grain]
    return start, end


def _grain(grain: str | None, allowed: tuple[str, ...] = get_args(Grain)) -> Grain | None:
    if grain is not None and grain not in allowed:
        raise InvalidQuery(f"grain must be one of {', '.join(allowed)}, not {grain!r}")
    return grain  # type: ignore[return-value]


async def search_events(
    store: Store,
    *,
    text: str | None = None,
    where: Iterable[str | FieldMatch] = (),
    source: str | None = None,
    provider: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    since: Instant = None,
    until: Instant = None,
    cursor: str | None = None,
    limit: int = 50,
) -> EventPage:
    """Events newest first: every word of `text` (`word*` a prefix), every `where` field
    match (`name=value` text or FieldMatch), and the inbox filters. A page holds at most
    `limit` (1..500) events; pass its `next` as `cursor` for the following one. BadCursor
    (a ValueError) for a cursor this did not issue."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {MAX_LIMIT}")
    fields = [m if isinstance(m, FieldMatch) else parse_field(m) for m in where]
    query = EventSearch(
        text=text if text and text.strip() else None,
        fields=fields,
        source=source,
        provider=provider,
        event_type=event_type,
        status=status,
        since=parse_instant(since, "since"),
        until=parse_instant(until, "until"),
    )
    return await store.search_events(query, cursor, limit)


async def event_counts(
    store: Store,
    *,
    grain: str = "hour",
    since: Instant = None,
    until: Instant = None,
    by: Iterable[str] = ("source", "event_type", "status"),
    source: str | None = None,
    event_type: str | None = None,
    status: str | None = None,
    now: datetime | None = None,
) -> list[EventCount]:
    """Events received per `grain` (minute, hour, day) by the dimensions in `by`
    (source, event_type, status); default window: the last hour, day or 30 days."""
    chosen = _grain(grain, ("minute", "hour", "day"))
    dims = list(by)
    for name in dims:
        if name not in get_args(Dimension):
            raise InvalidQuery(f"events are split by source, event_type or status, not {name!r}")
    start, end = _window(since, until, chosen, now)
    assert chosen is not None
    return await store.event_counts(
        EventCountQuery(
            since=start,
            until=end,
            grain=chosen,
            by=dims,  # type: ignore[arg-type]
            source=source,
            event_type=event_type,
            status=status,
        )
    )


async def rejections(
    store: Store,
    *,
    grain: str | None = None,
    since: Instant = None,
    until: Instant = None,
    source: str | None = None,
    now: datetime | None = None,
) -> list[RejectionStat]:
    """Refusals per source and reason (per bucket with a `grain`)."""
    chosen = _grain(grain)
    start, end = _window(since, until, chosen, now)
    return await store.rejection_stats(
        RejectionQuery(since=start, until=end, grain=chosen, source=source)
    )


async def deliveries(
    store: Store,
    *,
    grain: str | None = None,
    since: Instant = None,
    until: Instant = None,
    destination: str | None = None,
    now: datetime | None = None,
) -> list[DeliveryStat]:
    """Deliveries created in the window per destination and status (per bucket with a
    `grain`)."""
    chosen = _grain(grain)
    start, end = _window(since, until, chosen, now)
    return await store.delivery_stats(
        DeliveryQuery(since=start, until=end, grain=chosen, destination=destination)
    )


async def backlog(store: Store, *, now: datetime | None = None) -> Backlog:
    """Events waiting for processing and deliveries waiting for an attempt, with ages."""
    return await store.backlog(now or utcnow())


async def decisions(
    store: Store,
    *,
    grain: str | None = None,
    since: Instant = None,
    until: Instant = None,
    source: str | None = None,
    now: datetime | None = None,
) -> list[DecisionStat]:
    """Authorization decisions per source and result (per bucket with a `grain`)."""
    chosen = _grain(grain)
    start, end = _window(since, until, chosen, now)
    return await store.decision_stats(
        DecisionQuery(since=start, until=end, grain=chosen, source=source)
    )


async def energy(
    store: Store,
    *,
    since: Instant = None,
    until: Instant = None,
    token: str | None = None,
    group_id: str | None = None,
    now: datetime | None = None,
) -> list[EnergyDay]:
    """kWh per UTC day, token and group (default window: the last 30 days)."""
    start, end = _window(since, until, "day", now)
    return await store.energy_per_day(
        EnergyQuery(since=start, until=end, token=token, group_id=group_id)
    )


async def vehicle_costs(
    store: Store,
    *,
    since: Instant = None,
    until: Instant = None,
    license_number: str | None = None,
    limit: int = 1000,
    now: datetime | None = None,
) -> list[VehicleCost]:
    """Parking costs per UTC month and vehicle, costliest first (default window: the
    last 365 days)."""
    start, end = _window(since, until, "month", now)
    return await store.vehicle_costs(
        CostQuery(since=start, until=end, license_number=license_number, limit=limit)
    )
