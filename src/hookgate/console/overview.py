"""What the overview shows, and the attention state: what an operator woken at night must
see first (dead deliveries, a paused destination or open breaker, a silent source, a
rejection spike, quarantined events, a growing backlog, firing alerts), each with a link
to the page where it is acted on."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from hookgate import queries
from hookgate.config import Config
from hookgate.domain.queries import EventFilter
from hookgate.store import alerting
from hookgate.store.base import Store
from hookgate.timeutil import parse_iso

# The chart grain of each window (at most a few hundred buckets).
GRAINS = {"hour": ("minute", 60), "day": ("hour", 3600), "week": ("hour", 3600)}
# A source is silent when its last event is older than this and it has sent before.
SILENT_AFTER = timedelta(hours=1)
# A spike: at least this many refusals in the last quarter hour, and 3 times the rate of
# the day before.
SPIKE_WINDOW = timedelta(minutes=15)
SPIKE_MIN = 20
# Processing is behind when the oldest unprocessed event is older than this.
BACKLOG_AGE_SECONDS = 300


def _floor(moment: datetime, seconds: int) -> datetime:
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)


def _instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_iso(str(value))


async def overview_data(
    store: Store,
    config: Config,
    window: str,
    span: timedelta,
    breakers: Mapping[str, str],
    now: datetime,
) -> dict[str, Any]:
    """Charts and tables of the overview for the window ending `now`."""
    grain, seconds = GRAINS[window]
    since = _floor(now - span, seconds) + timedelta(seconds=seconds)
    counts = await queries.event_counts(store, grain=grain, since=since, until=now, by=["source"])
    buckets = []
    moment = since
    while moment <= now:
        buckets.append(moment)
        moment += timedelta(seconds=seconds)
    index = {b: i for i, b in enumerate(buckets)}
    per_source: dict[str, list[int]] = {s.name: [0] * len(buckets) for s in config.sources}
    for count in counts:
        name = count.source or "?"
        row = per_source.setdefault(name, [0] * len(buckets))
        at = index.get(_floor(count.bucket, seconds))
        if at is not None:
            row[at] += count.count
    minutes = max(span.total_seconds() / 60, 1)
    sources = []
    for source in config.sources:
        last = await store.list_events(EventFilter(source=source.name), None, 1)
        last_at = _instant(last.items[0].received_at) if last.items else None
        total = sum(per_source.get(source.name, []))
        sources.append(
            {
                "name": source.name,
                "provider": source.provider,
                "events": total,
                "per_minute": round(total / minutes, 2),
                "last_event_at": last_at,
                "silent_seconds": (now - last_at).total_seconds() if last_at else None,
            }
        )
    rejections = await queries.rejections(store, since=now - span, until=now)
    rejections.sort(key=lambda r: -r.total)
    deliveries = await queries.deliveries(store, since=now - span, until=now)
    per_destination: dict[str, dict[str, int]] = {d.name: {} for d in config.destinations}
    for stat in deliveries:
        per_destination.setdefault(stat.destination, {})[stat.status] = stat.count
    destinations = []
    states = await store.destination_states()
    for name, by_status in per_destination.items():
        done = by_status.get("delivered", 0)
        tried = done + by_status.get("failed", 0) + by_status.get("dead", 0)
        destinations.append(
            {
                "name": name,
                "counts": by_status,
                "success": round(100 * done / tried, 1) if tried else None,
                "paused": name in states,
                "breaker": breakers.get(name, "unknown"),
            }
        )
    decisions = await queries.decisions(store, since=now - span, until=now)
    backlog = await queries.backlog(store, now=now)
    alerts = await store.sql_read(alerting.open_alerts)
    return {
        "window": window,
        "since": since,
        "until": now,
        "grain": grain,
        "buckets": buckets,
        "series": [(name, row) for name, row in sorted(per_source.items()) if any(row)],
        "sources": sources,
        "rejections": rejections,
        "rejections_total": sum(r.total for r in rejections),
        "destinations": destinations,
        "decisions": decisions,
        "backlog": backlog,
        "alerts": [a.public() for a in alerts],
    }


async def attention(
    store: Store, config: Config, data: dict[str, Any], breakers: Mapping[str, str]
) -> list[dict[str, str]]:
    """What is wrong now, worst first; empty when all is well."""
    items: list[dict[str, str]] = []
    backlog = data["backlog"]

    def add(level: str, title: str, detail: str, link: str) -> None:
        items.append({"level": level, "title": title, "detail": detail, "link": link})

    for alert in data["alerts"]:
        add(
            "critical" if alert["severity"] == "critical" else "warning",
            f"Alert firing: {alert['rule']}",
            alert["summary"],
            "/console/",
        )
    if backlog.deliveries_dead:
        add(
            "critical",
            f"{backlog.deliveries_dead} dead deliveries",
            "Deliveries that ran out of attempts: fix the destination, then replay them.",
            "/console/deliveries?status=dead",
        )
    for destination in data["destinations"]:
        if destination["breaker"] == "open":
            add(
                "critical",
                f"Breaker open: {destination['name']}",
                "Deliveries to it are held back after repeated failures.",
                f"/console/deliveries?destination={destination['name']}",
            )
        if destination["paused"]:
            add(
                "warning",
                f"Destination paused: {destination['name']}",
                "Nothing is sent to it until it is resumed; deliveries queue.",
                "/console/deliveries",
            )
    if backlog.quarantined:
        add(
            "warning",
            f"{backlog.quarantined} quarantined events",
            "Stored but not understood (a schema change?): fix and reprocess them.",
            "/console/events?status=quarantined",
        )
    if backlog.failed:
        add(
            "warning",
            f"{backlog.failed} events failed processing",
            "Processing raised an error for them.",
            "/console/events?status=failed",
        )
    age = backlog.oldest_received_age_seconds
    if age is not None and age > BACKLOG_AGE_SECONDS:
        add(
            "warning",
            "Processing is behind",
            f"{backlog.received} events wait; the oldest for {int(age // 60)} min. "
            "Are the workers running?",
            "/console/events?status=received",
        )
    for source in data["sources"]:
        silent = source["silent_seconds"]
        if silent is not None and silent > SILENT_AFTER.total_seconds():
            add(
                "warning",
                f"Silent source: {source['name']}",
                f"No event for {int(silent // 3600)} h {int(silent % 3600 // 60)} min.",
                f"/console/events?source={source['name']}",
            )
    now = data["until"]
    recent = await queries.rejections(store, since=now - SPIKE_WINDOW, until=now)
    before = await queries.rejections(
        store, since=now - timedelta(days=1), until=now - SPIKE_WINDOW
    )
    per_window_before = sum(r.total for r in before) / (timedelta(days=1) / SPIKE_WINDOW - 1)
    spiking: dict[str, int] = {}
    for r in recent:
        spiking[r.source] = spiking.get(r.source, 0) + r.total
    for source, total in sorted(spiking.items()):
        if total >= SPIKE_MIN and total > 3 * per_window_before:
            add(
                "critical",
                f"Rejection spike: {source}",
                f"{total} refusals in the last 15 min (a rotated secret?).",
                f"/console/rejections?source={source}&window=hour",
            )
    order = {"critical": 0, "warning": 1}
    items.sort(key=lambda item: order.get(item["level"], 2))
    return items


def ack_latency(registry_metrics: Any) -> list[dict[str, Any]]:
    """Acknowledgement latency per provider since this process started, read from its
    `hookgate_ack_seconds` histogram: calls answered and the bucket bounds under which
    half and 95 % of them were answered (the store keeps no per-call timings)."""
    if registry_metrics is None:
        return []
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in registry_metrics.ack_seconds.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets.setdefault(sample.labels["provider"], []).append((bound, sample.value))
    out = []
    for provider, rows in sorted(buckets.items()):
        rows.sort()
        total = rows[-1][1] if rows else 0
        if not total:
            continue

        def quantile(
            q: float, rows: list[tuple[float, float]] = rows, total: float = total
        ) -> float:
            return next(bound for bound, count in rows if count >= q * total)

        out.append(
            {
                "provider": provider,
                "answered": int(total),
                "p50_ms": _ms(quantile(0.5)),
                "p95_ms": _ms(quantile(0.95)),
            }
        )
    return out


def _ms(seconds: float) -> str:
    return "over the last bucket" if seconds == float("inf") else f"≤ {seconds * 1000:g}"
