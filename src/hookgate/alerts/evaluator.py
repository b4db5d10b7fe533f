"""The alert evaluator: every `interval_seconds`, judge every rule and keep the history.

Run by `serve` and `worker` alike; instances sharing a database agree through a lease
(`alert_leases`) that only one of them evaluates, so each alert is notified once. Every
instance still refreshes its backlog gauges. A rule whose facts cannot be read (storage
down) keeps its alerts as they are: nothing resolves for want of an answer, and the
storage-errors rule speaks up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from hookgate.alerts.notifiers import Dispatcher
from hookgate.alerts.rules import ErrorWindow, Facts, Finding, check
from hookgate.alerts.settings import Rule
from hookgate.config import Config
from hookgate.domain.errors import StoreError
from hookgate.metrics import Metrics
from hookgate.store import alerting
from hookgate.store.alerting import AlertRow
from hookgate.store.base import Store
from hookgate.timeutil import utcnow

log = structlog.get_logger("hookgate.alerts")

LEASE = "alert-evaluator"


@dataclass(slots=True)
class Report:
    """What one evaluation changed (rule/subject pairs)."""

    leader: bool = False
    fired: list[str] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)


class AlertEvaluator:
    """Judges the rules against the store and this process's metrics."""

    def __init__(
        self,
        store: Store,
        config: Config,
        metrics: Metrics,
        *,
        owner: str,
        dispatcher: Dispatcher | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.config = config
        self.settings = config.alerts
        self.rules: list[Rule] = self.settings.effective_rules()
        self.metrics = metrics
        self.owner = owner
        self.dispatcher = dispatcher or Dispatcher(self.settings.notifiers, metrics)
        self.clock = clock
        self.errors = ErrorWindow()
        self._leader_until = 0.0
        self._firing_labels: set[tuple[str, str]] = set()
        # Alerts notified while storage could not record them, by (rule, subject): once
        # recorded they are not notified again.
        self._unrecorded: dict[tuple[str, str], AlertRow] = {}

    # -- one evaluation ------------------------------------------------------------------

    async def evaluate_once(self) -> Report:
        """Refresh the gauges, and (holding the lease) judge every rule."""
        now = self.clock()
        report = Report()
        await self._gauges(now)
        if not self.settings.enabled or not await self._lead(now):
            return report
        # Sampled after this evaluation's own reads and lease write: their failures count.
        self.errors.sample(now.timestamp(), self.metrics.storage_error_total())
        report.leader = True
        try:
            open_alerts = await self.store.sql_read(alerting.open_alerts)
        except StoreError as exc:
            self._storage_error("alerts", exc)
            open_alerts = None
        facts = Facts(
            self.store,
            self.config,
            now,
            lambda seconds: self.errors.within(now.timestamp(), seconds),
        )
        by_key = {(a.rule, a.subject): a for a in open_alerts or []}
        for rule in self.rules:
            try:
                findings = await check(rule, facts)
            except StoreError as exc:
                self._storage_error(f"rule {rule.key}", exc)
                report.failed_rules.append(rule.key)
                continue
            await self._settle(rule, findings, by_key, now, report, judged=open_alerts is not None)
        if open_alerts is not None:
            await self._retire(by_key, now, report)
        self._publish(by_key)
        return report

    async def _retire(
        self, by_key: dict[tuple[str, str], AlertRow], now: datetime, report: Report
    ) -> None:
        """Resolve the open alerts of rules no longer configured: nothing judges them."""
        known = {rule.key for rule in self.rules}
        for key, current in list(by_key.items()):
            if key[0] in known:
                continue
            try:
                await self.store.sql_write(
                    functools.partial(alerting.resolve, alert_id=current.id, now=now)
                )
            except StoreError as exc:
                self._storage_error("retire", exc)
                continue
            del by_key[key]
            report.resolved.append(f"{key[0]}/{key[1]}")
            log.info("alert resolved: its rule is no longer configured", rule=key[0])

    async def _settle(
        self,
        rule: Rule,
        findings: list[Finding],
        by_key: dict[tuple[str, str], AlertRow],
        now: datetime,
        report: Report,
        *,
        judged: bool,
    ) -> None:
        """Fire what is new, remind of what lasts, resolve what is over."""
        repeat = rule.repeat_seconds or self.settings.repeat_seconds
        seen = set()
        for finding in findings:
            key = (rule.key, finding.subject)
            seen.add(key)
            current = by_key.get(key)
            try:
                if current is None and key in self._unrecorded and not judged:
                    continue  # told already; storage still cannot record it
                if current is None:
                    fired = await self.store.sql_write(
                        functools.partial(
                            alerting.fire,
                            rule=rule.key,
                            kind=rule.kind,
                            subject=finding.subject,
                            severity=rule.severity,
                            summary=finding.summary,
                            details=finding.details,
                            now=now,
                        )
                    )
                    if fired is None:
                        continue  # another evaluator opened it a moment ago
                    by_key[key] = fired
                    if self._unrecorded.pop(key, None) is not None:
                        continue  # notified while storage was down; recorded now
                    report.fired.append(f"{rule.key}/{finding.subject}")
                    log.warning(
                        "alert firing",
                        rule=rule.key,
                        subject=finding.subject,
                        severity=rule.severity,
                        summary=finding.summary,
                        alert_id=fired.id,
                    )
                    self.dispatcher.notify(fired, "firing", rule.notify)
                    continue
                due = (
                    current.notified_at is None
                    or (now - current.notified_at).total_seconds() >= repeat
                )
                await self.store.sql_write(
                    functools.partial(
                        alerting.touch,
                        alert_id=current.id,
                        summary=finding.summary,
                        details=finding.details,
                        now=now,
                        notified=due,
                    )
                )
                current.summary, current.details, current.last_seen_at = (
                    finding.summary,
                    finding.details,
                    now,
                )
                if due:
                    current.notified_at = now
                    current.notifications += 1
                    report.repeated.append(f"{rule.key}/{finding.subject}")
                    self.dispatcher.notify(current, "repeat", rule.notify)
            except StoreError as exc:
                self._storage_error(f"rule {rule.key}", exc)
                if current is None and key not in self._unrecorded:
                    self._notify_unrecorded(rule, finding, key, now, report)
        if not judged:
            return
        for key, told in list(self._unrecorded.items()):
            if key[0] == rule.key and key not in seen:
                # Over before storage could record it: say so, so nobody waits for it.
                del self._unrecorded[key]
                told.status, told.resolved_at = "resolved", now
                report.resolved.append(f"{key[0]}/{key[1]}")
                self.dispatcher.notify(told, "resolved", rule.notify)
        for key, current in list(by_key.items()):
            if key[0] != rule.key or key in seen:
                continue
            try:
                closed = await self.store.sql_write(
                    functools.partial(alerting.resolve, alert_id=current.id, now=now)
                )
            except StoreError as exc:
                self._storage_error(f"rule {rule.key}", exc)
                continue
            del by_key[key]
            if not closed:
                continue
            current.status, current.resolved_at = "resolved", now
            report.resolved.append(f"{key[0]}/{key[1]}")
            log.info(
                "alert resolved",
                rule=rule.key,
                subject=current.subject,
                alert_id=current.id,
                lasted_s=round((now - current.fired_at).total_seconds(), 1),
            )
            self.dispatcher.notify(current, "resolved", rule.notify)

    def _notify_unrecorded(
        self, rule: Rule, finding: Finding, key: tuple[str, str], now: datetime, report: Report
    ) -> None:
        """Storage cannot record the alert (most likely the storage alert itself): tell
        people anyway, once; it is recorded when storage answers again."""
        alert = AlertRow(
            id=f"unrecorded-{int(now.timestamp())}",
            rule=rule.key,
            kind=rule.kind,
            subject=finding.subject,
            severity=rule.severity,
            status="firing",
            summary=finding.summary,
            details={**finding.details, "recorded": False},
            fired_at=now,
            last_seen_at=now,
            notified_at=now,
            notifications=1,
        )
        self._unrecorded[key] = alert
        report.fired.append(f"{key[0]}/{key[1]}")
        log.warning(
            "alert firing (not recorded: storage unavailable)",
            rule=rule.key,
            subject=finding.subject,
            summary=finding.summary,
        )
        self.dispatcher.notify(alert, "firing", rule.notify)

    # -- leadership, gauges ----------------------------------------------------------------

    async def _lead(self, now: datetime) -> bool:
        """Whether this instance evaluates now: it holds the lease (renewed), or held it
        when storage stopped answering and the lease has not run out yet (so storage
        trouble is still reported by someone)."""
        seconds = self.settings.lease_seconds
        try:
            held = await self.store.sql_write(
                lambda c: alerting.take_lease(c, LEASE, self.owner, now, seconds)
            )
        except StoreError as exc:
            self._storage_error("lease", exc)
            return time.monotonic() < self._leader_until
        if held:
            self._leader_until = time.monotonic() + seconds
        else:
            self._leader_until = 0.0
            self._publish({})
        return held

    async def _gauges(self, now: datetime) -> None:
        try:
            backlog = await self.store.sql_read(alerting.backlog)
        except StoreError as exc:
            self._storage_error("backlog", exc)
            return
        self.metrics.backlog.set(backlog["count"])
        oldest = backlog["oldest"]
        self.metrics.oldest_pending.set(
            max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        )

    def _publish(self, by_key: dict[tuple[str, str], AlertRow]) -> None:
        """`hookgate_alerts_firing` per rule and severity (on the evaluating instance)."""
        counts: dict[tuple[str, str], int] = {}
        for alert in by_key.values():
            label = (alert.rule, alert.severity)
            counts[label] = counts.get(label, 0) + 1
        for label in self._firing_labels - set(counts):
            self.metrics.alerts_firing.labels(*label).set(0)
        for label, count in counts.items():
            self.metrics.alerts_firing.labels(*label).set(count)
        self._firing_labels |= set(counts)

    def _storage_error(self, where: str, exc: StoreError) -> None:
        self.metrics.storage_errors.labels("alerts").inc()
        log.error("alert evaluation could not read storage", step=where, error=str(exc))

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every interval until `stop`, the first time one interval after start
        (once start-up work has settled)."""
        interval = self.settings.interval_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.evaluate_once()
            except Exception:
                log.exception("alert evaluation failed")
            wait = max(0.0, interval - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def close(self) -> None:
        """Release the lease (another instance takes over at once) and let notifications
        in flight finish."""
        if self._leader_until:
            self._leader_until = 0.0
            with contextlib.suppress(StoreError):
                await self.store.sql_write(lambda c: alerting.release_lease(c, LEASE, self.owner))
        await self.dispatcher.drain()


class AlertLoop:
    """The evaluator as a background task of a running process."""

    def __init__(self, evaluator: AlertEvaluator) -> None:
        self.evaluator = evaluator
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start evaluating in the background."""
        self._task = asyncio.create_task(self.evaluator.run(self._stop), name="hookgate-alerts")

    async def stop(self) -> None:
        """Finish the evaluation in progress, release the lease, drain notifications."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.evaluator.close()


def start_alerts(config: Config, store: Store, metrics: Metrics) -> AlertLoop | None:
    """Start evaluating the alert rules in the background; with `[alerts] enabled = false`
    only the backlog gauges are refreshed."""
    from hookgate.processing.worker import worker_owner

    loop = AlertLoop(AlertEvaluator(store, config, metrics, owner=worker_owner()))
    loop.start()
    return loop
