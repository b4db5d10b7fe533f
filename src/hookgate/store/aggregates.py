"""The aggregates the console charts, written once for both backends over a DB-API
connection: events per source, type and status per minute, hour or day; refusals per
source and reason; deliveries per destination and outcome; the processing backlog;
decisions per result; energy per day per token and group; parking costs per vehicle per
month.

Every query is bounded by a time range, and time-bucketed ones by MAX_BUCKETS buckets, so
each reads an index range, never the whole history (docs/benchmarks.md, 1M events).
Event counts come from `event_counts`, kept by processing (store/search.py), plus the
received and quarantined events read live; sums of decimal text (kWh, money) are rounded
to 0.001 kWh and to the cent so both backends answer the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from hookgate.domain.stats import (
    MAX_BUCKETS,
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
from hookgate.ids import floor_id
from hookgate.store.dialect import dialect_of
from hookgate.store.search import Dialect, InvalidQuery, truncate
from hookgate.timeutil import parse_iso

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
    "backlog",
    "decision_stats",
    "delivery_stats",
    "energy_per_day",
    "event_counts",
    "rejection_stats",
    "vehicle_costs",
]

_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "month": 31 * 86400}
_KWH = Decimal("0.001")
_CENT = Decimal("0.01")


# -- helpers -----------------------------------------------------------------------------


def _name(dialect: Dialect) -> str:
    return dialect_of(dialect).name


def _sql(dialect: Dialect, sql: str) -> str:
    return dialect_of(dialect).sql(sql)


def _instant(dialect: Dialect, moment: datetime) -> Any:
    return dialect_of(dialect).instant(moment.astimezone(UTC))


def _moment(value: Any) -> datetime:
    return parse_iso(value) if isinstance(value, str) else value.astimezone(UTC)


def _range(since: datetime, until: datetime, grain: str | None) -> None:
    for name, moment in (("since", since), ("until", until)):
        if moment.tzinfo is None:
            raise InvalidQuery(f"{name} needs a time zone")
    if since >= until:
        raise InvalidQuery("since must be before until")
    if grain is not None:
        if grain not in _SECONDS:
            raise InvalidQuery(f"grain must be minute, hour, day or month, not {grain!r}")
        buckets = (until - since).total_seconds() / _SECONDS[grain]
        if buckets > MAX_BUCKETS:
            raise InvalidQuery(
                f"{int(buckets)} {grain}s is more than {MAX_BUCKETS} buckets: "
                "shorten the range or choose a coarser grain"
            )


def _bucket(dialect: Dialect, grain: str, column: str) -> str:
    """SQL for the start of the UTC `grain` holding instant `column` (its text in SQLite,
    where instants are fixed-width ISO text)."""
    if _name(dialect) == "postgresql":
        return f"date_trunc('{grain}', {column}, 'UTC')"
    return {
        "minute": f"substr({column}, 1, 16) || ':00.000000Z'",
        "hour": f"substr({column}, 1, 13) || ':00:00.000000Z'",
        "day": f"substr({column}, 1, 10) || 'T00:00:00.000000Z'",
        "month": f"substr({column}, 1, 7) || '-01T00:00:00.000000Z'",
    }[grain]


def _rows(conn: Any, dialect: Dialect, sql: str, params: Sequence[Any]) -> list[Any]:
    return list(conn.execute(_sql(dialect, sql), list(params)).fetchall())


def _decimal(value: Any, step: Decimal) -> str:
    """A sum as decimal text to `step`, halves rounded up: PostgreSQL rounds its numeric
    sum itself (and hands text); SQLite sums decimal text as REAL, whose error is far
    below the step."""
    if isinstance(value, str):
        return value
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value or 0)
    return str(number.quantize(step, rounding=ROUND_HALF_UP))


def _sum(dialect: Dialect, column: str, places: int) -> str:
    if _name(dialect) == "sqlite":
        return f"sum(CAST({column} AS REAL))"
    return f"round(sum({column}::numeric), {places})::text"


# -- aggregates --------------------------------------------------------------------------


def event_counts(conn: Any, dialect: Dialect, q: EventCountQuery) -> list[EventCount]:
    """Buckets oldest first, then by the dimensions; buckets without events are left out."""
    if q.grain == "month":
        raise InvalidQuery("events are counted per minute, hour or day")
    _range(q.since, q.until, q.grain)
    by = list(dict.fromkeys(q.by))
    for name in by:
        if name not in ("source", "event_type", "status"):
            raise InvalidQuery(f"events are split by source, event_type or status, not {name}")
    start = truncate(q.since, q.grain)
    totals: dict[tuple[Any, ...], int] = {}
    moments: dict[Any, datetime] = {}
    filters, params = [], []
    for column, value in (
        ("source", q.source),
        ("event_type", q.event_type),
        ("status", q.status),
    ):
        if value is not None:
            filters.append(f" AND {column} = ?")
            params.append(value)
    dims = ", ".join(name if name in by else "NULL" for name in _DIMS)
    group = ", ".join(["b", *by])
    # Processed and failed events: the rollup processing keeps. Received and quarantined
    # ones have not been through processing: counted live (the status index holds them;
    # there are few unless processing is stopped).
    live = [s for s in ("received", "quarantined") if q.status in (None, s)]
    reads = [
        (
            f"SELECT bucket AS b, {dims}, sum(total) FROM event_counts WHERE grain = ? "
            f"AND bucket >= ? AND bucket < ?{''.join(filters)} GROUP BY {group}",
            [q.grain, _instant(dialect, start), _instant(dialect, q.until), *params],
        )
    ]
    if live:
        reads.append(
            (
                f"SELECT {_bucket(dialect, q.grain, 'received_at')} AS b, {dims}, count(*) "
                f"FROM inbox WHERE status IN ({', '.join('?' * len(live))}) AND id >= ? "
                f"AND id < ? AND received_at >= ? AND received_at < ?{''.join(filters)} "
                f"GROUP BY {group}",
                [
                    *live,
                    floor_id(start),
                    floor_id(q.until),
                    _instant(dialect, start),
                    _instant(dialect, q.until),
                    *params,
                ],
            )
        )
    for sql, values in reads:
        for row in _rows(conn, dialect, sql, values):
            if not int(row[4]):
                continue
            bucket = moments.get(row[0])
            if bucket is None:
                bucket = moments[row[0]] = _moment(row[0])
            key = (bucket, row[1], row[2], row[3])
            totals[key] = totals.get(key, 0) + int(row[4])
    return [
        EventCount(bucket=key[0], source=key[1], event_type=key[2], status=key[3], count=n)
        for key, n in sorted(totals.items(), key=lambda item: tuple(str(v) for v in item[0]))
        if n
    ]


_DIMS = ("source", "event_type", "status")


def rejection_stats(conn: Any, dialect: Dialect, q: RejectionQuery) -> list[RejectionStat]:
    """Per (bucket,) source and reason, oldest bucket first, most refusals first."""
    _range(q.since, q.until, q.grain)
    start = truncate(q.since, "minute")
    bucket = _bucket(dialect, q.grain, "minute") if q.grain else "NULL"
    sql = (
        f"SELECT {bucket} AS b, source, reason, sum(total), sum(recorded) FROM rejection_counts "
        "WHERE minute >= ? AND minute < ?"
    )
    params: list[Any] = [_instant(dialect, start), _instant(dialect, q.until)]
    if q.source is not None:
        sql += " AND source = ?"
        params.append(q.source)
    sql += " GROUP BY b, source, reason ORDER BY b, sum(total) DESC, source, reason"
    return [
        RejectionStat(
            bucket=_moment(row[0]) if row[0] is not None else None,
            source=row[1],
            reason=row[2],
            total=int(row[3]),
            recorded=int(row[4]),
        )
        for row in _rows(conn, dialect, sql, params)
    ]


def delivery_stats(conn: Any, dialect: Dialect, q: DeliveryQuery) -> list[DeliveryStat]:
    """Per (bucket,) destination and status, oldest bucket first."""
    _range(q.since, q.until, q.grain)
    bucket = _bucket(dialect, q.grain, "created_at") if q.grain else "NULL"
    # deliveries_created covers the range, the buckets and the groups: an index-only read.
    sql = (
        f"SELECT {bucket} AS b, destination, status, count(*) FROM deliveries "
        "WHERE created_at >= ? AND created_at < ?"
    )
    params: list[Any] = [_instant(dialect, q.since), _instant(dialect, q.until)]
    if q.destination is not None:
        sql += " AND destination = ?"
        params.append(q.destination)
    sql += " GROUP BY b, destination, status ORDER BY b, destination, status"
    return [
        DeliveryStat(
            bucket=_moment(row[0]) if row[0] is not None else None,
            destination=row[1],
            status=row[2],
            count=int(row[3]),
        )
        for row in _rows(conn, dialect, sql, params)
    ]


def backlog(conn: Any, dialect: Dialect, now: datetime) -> Backlog:
    """The backlog as of `now` (ages are measured from it)."""
    counts = dict(
        _rows(
            conn,
            dialect,
            "SELECT status, count(*) FROM inbox WHERE status IN "
            "('received', 'failed', 'quarantined') GROUP BY status",
            [],
        )
    )
    oldest = _rows(
        conn,
        dialect,
        "SELECT received_at FROM inbox WHERE status = 'received' ORDER BY id LIMIT 1",
        [],
    )
    waiting = _rows(
        conn,
        dialect,
        "SELECT count(*), min(next_attempt_at) FROM deliveries "
        "WHERE status IN ('pending', 'failed')",
        [],
    )[0]
    dead = _rows(conn, dialect, "SELECT count(*) FROM deliveries WHERE status = 'dead'", [])
    search = _rows(conn, dialect, "SELECT count(*) FROM search_queue", [])
    oldest_at = _moment(oldest[0][0]) if oldest else None
    due_at = _moment(waiting[1]) if waiting[1] is not None else None
    return Backlog(
        received=int(counts.get("received", 0)),
        oldest_received_at=oldest_at,
        oldest_received_age_seconds=(
            max(0.0, (now - oldest_at).total_seconds()) if oldest_at else None
        ),
        failed=int(counts.get("failed", 0)),
        quarantined=int(counts.get("quarantined", 0)),
        deliveries_waiting=int(waiting[0]),
        oldest_due_at=due_at,
        oldest_due_age_seconds=max(0.0, (now - due_at).total_seconds()) if due_at else None,
        deliveries_dead=int(dead[0][0]),
        search_waiting=int(search[0][0]),
    )


def decision_stats(conn: Any, dialect: Dialect, q: DecisionQuery) -> list[DecisionStat]:
    """Per (bucket,) source and result, oldest bucket first."""
    _range(q.since, q.until, q.grain)
    bucket = _bucket(dialect, q.grain, "decided_at") if q.grain else "NULL"
    true = "1" if _name(dialect) == "sqlite" else "TRUE"
    sql = (
        f"SELECT {bucket} AS b, source, result, count(*), "
        f"sum(CASE WHEN fallback = {true} THEN 1 ELSE 0 END) FROM decisions "
        "WHERE id >= ? AND id < ? AND decided_at >= ? AND decided_at < ?"
    )
    params: list[Any] = [
        floor_id(q.since),
        floor_id(q.until),
        _instant(dialect, q.since),
        _instant(dialect, q.until),
    ]
    if q.source is not None:
        sql += " AND source = ?"
        params.append(q.source)
    sql += " GROUP BY b, source, result ORDER BY b, source, result"
    return [
        DecisionStat(
            bucket=_moment(row[0]) if row[0] is not None else None,
            source=row[1],
            result=row[2],
            count=int(row[3]),
            fallback=int(row[4] or 0),
        )
        for row in _rows(conn, dialect, sql, params)
    ]


def energy_per_day(conn: Any, dialect: Dialect, q: EnergyQuery) -> list[EnergyDay]:
    """Per UTC day, token and group: kWh (to the Wh) and sessions, oldest day first."""
    _range(q.since, q.until, "day")
    day = _bucket(dialect, "day", "occurred_at")
    sql = (
        f"SELECT {day} AS d, token, group_id, {_sum(dialect, 'kwh', 3)}, count(*) FROM consumption "
        "WHERE occurred_at >= ? AND occurred_at < ?"
    )
    params: list[Any] = [_instant(dialect, q.since), _instant(dialect, q.until)]
    for column, value in (("token", q.token), ("group_id", q.group_id)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    sql += " GROUP BY d, token, group_id"
    days: dict[Any, datetime] = {}
    found = [
        EnergyDay(
            day=days.get(row[0]) or days.setdefault(row[0], _moment(row[0])),
            token=row[1],
            group_id=row[2],
            kwh=_decimal(row[3], _KWH),
            sessions=int(row[4]),
        )
        for row in _rows(conn, dialect, sql, params)
    ]
    found.sort(key=lambda e: (e.day, e.token or "", e.group_id or ""))
    return found


def vehicle_costs(conn: Any, dialect: Dialect, q: CostQuery) -> list[VehicleCost]:
    """Per UTC month, vehicle and currency: the parkings' price (VAT included) to the
    cent, oldest month first, costliest vehicle first; at most `limit` rows."""
    _range(q.since, q.until, "month")
    if not 1 <= q.limit <= 100_000:
        raise InvalidQuery("limit must be between 1 and 100000")
    month = _bucket(dialect, "month", "ended_at")
    total = _sum(dialect, "price", 2)
    sql = (
        f"SELECT {month} AS m, license_number, currency, {total}, count(*) "
        "FROM parking_transactions WHERE ended_at >= ? AND ended_at < ?"
    )
    params: list[Any] = [_instant(dialect, q.since), _instant(dialect, q.until)]
    if q.license_number is not None:
        sql += " AND license_number = ?"
        params.append(q.license_number)
    # Ordered by the sum itself (PostgreSQL's rounded one is text).
    exact = "sum(CAST(price AS REAL))" if _name(dialect) == "sqlite" else "sum(price::numeric)"
    sql += f" GROUP BY m, license_number, currency ORDER BY m, {exact} DESC, license_number LIMIT ?"
    params.append(q.limit)
    return [
        VehicleCost(
            month=_moment(row[0]),
            license_number=row[1],
            currency=row[2],
            total=_decimal(row[3], _CENT),
            parkings=int(row[4]),
        )
        for row in _rows(conn, dialect, sql, params)
    ]
