"""What each rule kind looks at, and when it holds.

A rule turns facts into findings: one per subject (a destination, a source, a source and
refusal reason, a group) for which the condition holds now. The evaluator compares the
findings with the open alerts: a new one fires, a lasting one is reminded of, a missing
one resolves. Facts come from the store's aggregates (store/alerting.py), gathered once
per evaluation and shared by the rules that need them, and from this process's metrics.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hookgate.alerts.settings import (
    DAYS,
    BudgetExhausted,
    DestinationFailing,
    FallbackDecisions,
    ProcessingBacklog,
    Quarantined,
    RejectionSpike,
    Rule,
    SourceSilent,
    StorageErrors,
)
from hookgate.config import Config
from hookgate.store import alerting
from hookgate.store.base import Store
from hookgate.timeutil import iso

T = TypeVar("T")


@dataclass(slots=True)
class Finding:
    """A rule's condition holds for `subject` now."""

    subject: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


class ErrorWindow:
    """Storage errors counted by this process, sampled each evaluation, so a rule can ask
    how many happened within its window."""

    def __init__(self, horizon: float = 86400.0) -> None:
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._horizon = horizon

    def sample(self, at: float, total: float) -> None:
        """Record the counter's value at `at` (seconds)."""
        self._samples.append((at, total))
        while self._samples and self._samples[0][0] < at - self._horizon:
            self._samples.popleft()

    def within(self, at: float, seconds: float) -> float:
        """How much the counter grew in the last `seconds`."""
        if not self._samples:
            return 0.0
        latest = self._samples[-1][1]
        base = None
        for when, value in self._samples:
            if when >= at - seconds:
                break
            base = value
        if base is None:
            # The window reaches back before the first sample: count from zero (the
            # process's own errors since it started are all within it).
            base = 0.0 if self._samples[0][0] >= at - seconds else self._samples[0][1]
        return latest - base


class Facts:
    """The store's aggregates for one evaluation, each read at most once."""

    def __init__(
        self,
        store: Store,
        config: Config,
        now: datetime,
        storage_errors: Callable[[float], float],
    ) -> None:
        self.store = store
        self.config = config
        self.now = now
        self.storage_errors = storage_errors
        self._cache: dict[tuple[Any, ...], Any] = {}

    async def _once(self, key: tuple[Any, ...], read: Callable[[], Awaitable[T]]) -> T:
        if key not in self._cache:
            self._cache[key] = await read()
        value: T = self._cache[key]
        return value

    async def backlog(self) -> dict[str, Any]:
        return await self._once(("backlog",), lambda: self.store.sql_read(alerting.backlog))

    async def quarantined(self) -> dict[str, int]:
        return await self._once(("quarantined",), lambda: self.store.sql_read(alerting.quarantined))

    async def last_received(self, source: str) -> datetime | None:
        return await self._once(
            ("last", source),
            lambda: self.store.sql_read(lambda c: alerting.last_received(c, source)),
        )

    async def rejections(self, seconds: float) -> list[dict[str, Any]]:
        since = self.now - timedelta(seconds=seconds)
        return await self._once(
            ("rejections", seconds),
            lambda: self.store.sql_read(lambda c: alerting.rejections_since(c, since)),
        )

    async def dead(self) -> dict[str, int]:
        return await self._once(("dead",), lambda: self.store.sql_read(alerting.dead_deliveries))

    async def streaks(self, names: tuple[str, ...], depth: int) -> dict[str, int]:
        return await self._once(
            ("streaks", names, depth),
            lambda: self.store.sql_read(lambda c: alerting.failing_streaks(c, names, depth)),
        )

    async def fallbacks(self, seconds: float) -> dict[str, int]:
        since = self.now - timedelta(seconds=seconds)
        return await self._once(
            ("fallbacks", seconds),
            lambda: self.store.sql_read(lambda c: alerting.fallback_decisions(c, since)),
        )

    async def budget_refusals(self, seconds: float) -> list[dict[str, Any]]:
        since = self.now - timedelta(seconds=seconds)
        return await self._once(
            ("budgets", seconds),
            lambda: self.store.sql_read(lambda c: alerting.budget_refusals(c, since)),
        )


def _plural(count: int | float, word: str) -> str:
    return f"{count:g} {word}" + ("" if count == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


async def _destination_failing(rule: DestinationFailing, facts: Facts) -> list[Finding]:
    destinations = [d for d in facts.config.destinations if rule.destination in (None, d.name)]
    dead = await facts.dead()
    found = []
    depth = max((rule.failures or d.breaker_failures) for d in destinations) if destinations else 1
    streaks = await facts.streaks(tuple(d.name for d in destinations), depth)
    for destination in destinations:
        threshold = rule.failures or destination.breaker_failures
        streak = streaks.get(destination.name, 0)
        dead_now = dead.get(destination.name, 0)
        reasons = []
        if streak >= threshold:
            reasons.append(f"its last {_plural(streak, 'attempt')} failed (breaker open)")
        if dead_now > rule.dead_above:
            reasons.append(
                f"{_plural(dead_now, 'delivery')} dead (above {rule.dead_above}); "
                "`hookgate replay` sends them again"
            )
        if reasons:
            found.append(
                Finding(
                    destination.name,
                    f"destination {destination.name} failing: {'; '.join(reasons)}",
                    {"failed_in_a_row": streak, "dead": dead_now, "threshold": threshold},
                )
            )
    return found


def active(rule: SourceSilent, moment: datetime) -> bool:
    """Whether `moment` is within the rule's active days and hours (its zone)."""
    local = moment.astimezone(ZoneInfo(rule.timezone))
    day = DAYS[local.weekday()]
    if rule.active_hours is None:
        return day in rule.active_days
    start_text, end_text = rule.active_hours.split("-")
    start = time.fromisoformat(start_text)
    end = time.max if end_text == "24:00" else time.fromisoformat(end_text)
    now = local.time()
    if start <= end:
        return day in rule.active_days and start <= now < end
    # Spans midnight: the hours after midnight belong to the previous day's window.
    if now >= start:
        return day in rule.active_days
    yesterday = DAYS[(local.weekday() - 1) % 7]
    return now < end and yesterday in rule.active_days


async def _source_silent(rule: SourceSilent, facts: Facts) -> list[Finding]:
    if not active(rule, facts.now):
        return []
    last = await facts.last_received(rule.source)
    if last is not None:
        silent = (facts.now - last).total_seconds()
        if silent <= rule.silent_seconds:
            return []
        summary = (
            f"source {rule.source} silent for {_duration(silent)} "
            f"(expected an event every {_duration(rule.silent_seconds)})"
        )
        return [Finding(rule.source, summary, {"last_event_at": iso(last), "silent_s": silent})]
    return [
        Finding(
            rule.source,
            f"source {rule.source} has never sent an event "
            f"(expected one every {_duration(rule.silent_seconds)})",
            {"last_event_at": None},
        )
    ]


async def _rejection_spike(rule: RejectionSpike, facts: Facts) -> list[Finding]:
    rows = await facts.rejections(rule.window_seconds)
    totals: dict[str, int] = {}
    reasons: dict[str, dict[str, int]] = {}
    for row in rows:
        if rule.source is not None and row["source"] != rule.source:
            continue
        if rule.reasons and row["reason"] not in rule.reasons:
            continue
        subject = row["source"] if rule.reasons else f"{row['source']}/{row['reason']}"
        totals[subject] = totals.get(subject, 0) + row["total"]
        reasons.setdefault(subject, {})[row["reason"]] = row["total"]
    window = _duration(rule.window_seconds)
    found = []
    for subject, total in sorted(totals.items()):
        if total <= rule.above:
            continue
        source = subject.split("/", 1)[0]
        hint = (
            "; a rotated secret? compare the provider's with the source's"
            if {"unauthorized", "oauth-invalid_client", "oauth-invalid_grant"}
            & set(reasons[subject])
            else ""
        )
        found.append(
            Finding(
                subject,
                f"{_plural(total, 'refusal')} of source {source} in {window} "
                f"({', '.join(f'{r}: {n}' for r, n in sorted(reasons[subject].items()))}; "
                f"above {rule.above}){hint}; `hookgate rejections list --source {source}`",
                {"total": total, "reasons": reasons[subject], "window_s": rule.window_seconds},
            )
        )
    return found


async def _processing_backlog(rule: ProcessingBacklog, facts: Facts) -> list[Finding]:
    backlog = await facts.backlog()
    oldest = backlog["oldest"]
    if oldest is None:
        return []
    age = (facts.now - oldest).total_seconds()
    if age <= rule.older_than_seconds:
        return []
    count = backlog["count"]
    shown = f"{count}+" if count >= alerting.COUNT_CAP else str(count)
    return [
        Finding(
            "processing",
            f"processing backlog: {shown} events waiting, the oldest for {_duration(age)} "
            f"(limit {_duration(rule.older_than_seconds)}); are the workers running?",
            {"waiting": count, "oldest_age_s": age, "oldest_at": iso(oldest)},
        )
    ]


async def _quarantined(rule: Quarantined, facts: Facts) -> list[Finding]:
    counts = await facts.quarantined()
    return [
        Finding(
            source,
            f"{_plural(count, 'event')} of source {source} quarantined (the schema is "
            "behind the provider); after an upgrade `hookgate events reprocess` them",
            {"quarantined": count},
        )
        for source, count in sorted(counts.items())
        if count > rule.above and rule.source in (None, source)
    ]


def _group_of(reason: str) -> str | None:
    """`group G7 month energy budget: ...` → G7."""
    if reason.startswith("group ") and " budget" in reason:
        return reason.split(" ", 2)[1]
    return None


async def _budget_exhausted(rule: BudgetExhausted, facts: Facts) -> list[Finding]:
    refusals = await facts.budget_refusals(rule.window_seconds)
    groups: dict[str, dict[str, Any]] = {}
    for refusal in refusals:
        for reason in refusal["reasons"]:
            group = _group_of(reason)
            if group is None or rule.group not in (None, group):
                continue
            entry = groups.setdefault(group, {"refused": 0, "reason": reason})
            entry["refused"] += 1
            entry["reason"] = reason
    window = _duration(rule.window_seconds)
    return [
        Finding(
            group,
            f"group {group} budget exhausted: {_plural(entry['refused'], 'start')} refused "
            f"in {window} ({entry['reason']})",
            entry,
        )
        for group, entry in sorted(groups.items())
    ]


async def _fallback_decisions(rule: FallbackDecisions, facts: Facts) -> list[Finding]:
    counts = await facts.fallbacks(rule.window_seconds)
    window = _duration(rule.window_seconds)
    return [
        Finding(
            source,
            f"{_plural(count, 'Zaptec start')} of source {source} answered by the fallback "
            f"in {window} (decision deadline missed or storage failing)",
            {"fallbacks": count},
        )
        for source, count in sorted(counts.items())
        if count > rule.above and rule.source in (None, source)
    ]


async def _storage_errors(rule: StorageErrors, facts: Facts) -> list[Finding]:
    count = facts.storage_errors(rule.window_seconds)
    if count <= rule.above:
        return []
    return [
        Finding(
            "storage",
            f"{_plural(count, 'storage error')} in {_duration(rule.window_seconds)} "
            "(events answered 503, batches failed); see /readyz and the logs",
            {"errors": count},
        )
    ]


async def check(rule: Rule, facts: Facts) -> list[Finding]:
    """The findings of one rule now."""
    if isinstance(rule, DestinationFailing):
        return await _destination_failing(rule, facts)
    if isinstance(rule, SourceSilent):
        return await _source_silent(rule, facts)
    if isinstance(rule, RejectionSpike):
        return await _rejection_spike(rule, facts)
    if isinstance(rule, ProcessingBacklog):
        return await _processing_backlog(rule, facts)
    if isinstance(rule, Quarantined):
        return await _quarantined(rule, facts)
    if isinstance(rule, BudgetExhausted):
        return await _budget_exhausted(rule, facts)
    if isinstance(rule, FallbackDecisions):
        return await _fallback_decisions(rule, facts)
    assert isinstance(rule, StorageErrors)
    return await _storage_errors(rule, facts)
