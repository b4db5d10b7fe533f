"""The delivery worker: claims due deliveries, sends them, records each attempt.

Deliveries are leased (docs/adr/0006): a worker that dies mid-send leaves a lease that
expires, and another worker sends again with the same `webhook-id`. Sending happens
outside any transaction; the attempt is recorded only while the lease is still ours.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from opentelemetry.trace import SpanKind

from hookgate import tracing
from hookgate.config import Config, DestinationConfig
from hookgate.delivery.breaker import STATE_VALUES, CircuitBreaker
from hookgate.delivery.envelope import cloudevent, encode
from hookgate.delivery.http import HttpSender
from hookgate.delivery.kafka import KafkaSender
from hookgate.delivery.policy import after_failure
from hookgate.delivery.result import SendResult, short
from hookgate.domain.outbox import DeliveryJob, DeliveryOutcome
from hookgate.metrics import Metrics
from hookgate.providers.base import Provider
from hookgate.store.base import Store
from hookgate.timeutil import utcnow

log = structlog.get_logger("hookgate.delivery")

# The breaker's cooldown doubles at most this many times (and never beyond max_backoff).
_BREAKER_GROWTH = 16


def claim_limit(destination: DestinationConfig, batch_size: int, lease_seconds: float) -> int:
    """How many deliveries of one destination to claim at once: as many as its
    concurrency can send, all timing out, within half the lease (so a slow destination
    never lets a lease lapse while its delivery is still queued here)."""
    rounds = max(1, int(lease_seconds // (2 * destination.timeout_seconds)))
    return max(1, min(batch_size, destination.concurrency * rounds))


class DeliveryWorker:
    """Sends the due deliveries of the configured, enabled destinations."""

    def __init__(
        self,
        store: Store,
        config: Config,
        providers: dict[str, Provider[Any]],
        metrics: Metrics | None,
        *,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._processing = config.processing
        self._destinations = {d.name: d for d in config.destinations}
        self._providers = providers
        self._metrics = metrics
        self.owner = owner
        self._clock = clock
        self._rand = rand
        self.breakers = {
            d.name: CircuitBreaker(
                d.breaker_failures,
                d.breaker_cooldown_seconds,
                max_cooldown=min(
                    d.breaker_cooldown_seconds * _BREAKER_GROWTH, d.policy().max_backoff_seconds
                ),
                clock=self._seconds,
            )
            for d in config.destinations
        }
        self._http: HttpSender | None = None
        self._kafka: dict[str, KafkaSender] = {}
        self._gone: set[str] = set()
        self._next_due: datetime | None = None

    def _seconds(self) -> float:
        return self._clock().timestamp()

    # -- one pass ------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim and send what is due now; returns how many deliveries were claimed."""
        now = self._clock()
        states = await self._store.destination_states()
        disabled = {name for name, row in states.items() if row.disabled_at is not None}
        self._gone = set()
        jobs: list[tuple[DeliveryJob, DestinationConfig]] = []
        for name, destination in self._destinations.items():
            breaker = self.breakers[name]
            state = breaker.state
            self._gauge(name, breaker)
            if name in disabled or state == "open":
                continue
            limit = (
                1
                if state == "half_open"
                else claim_limit(
                    destination, self._processing.batch_size, self._processing.lease_seconds
                )
            )
            claimed = await self._store.claim_deliveries(
                self.owner, now, limit, self._processing.lease_seconds, [name]
            )
            jobs.extend((job, destination) for job in claimed)
        if not jobs:
            return 0
        # One chain per destination and subject keeps a subject's events in order within
        # the batch; chains of one destination share its concurrency.
        chains: dict[tuple[str, str], list[DeliveryJob]] = {}
        for job, destination in jobs:
            chains.setdefault((destination.name, job.event.subject or job.id), []).append(job)
        for chain in chains.values():
            chain.sort(key=lambda job: (job.event.received_at, job.event.id))
        limits = {name: asyncio.Semaphore(d.concurrency) for name, d in self._destinations.items()}

        async def run_chain(name: str, chain: list[DeliveryJob]) -> None:
            async with limits[name]:
                for job in chain:
                    try:
                        await self._deliver(job, self._destinations[name])
                    except Exception:
                        # A store error: the lease lapses and the delivery is sent again.
                        log.exception("delivery_not_recorded", destination=name, delivery=job.id)
                        if self._metrics is not None:
                            self._metrics.storage_errors.labels("delivery").inc()

        async with asyncio.TaskGroup() as group:
            for (name, _subject), chain in chains.items():
                group.create_task(run_chain(name, chain))
        return len(jobs)

    async def _deliver(self, job: DeliveryJob, destination: DestinationConfig) -> None:
        name = destination.name
        breaker = self.breakers[name]
        if name in self._gone or not breaker.allow():
            # Left leased: claimable again once the lease lapses and the breaker allows.
            return
        started = self._clock()
        began = time.monotonic()
        span = (
            None
            if tracing.TRACER is None
            else tracing.start_child(
                f"hookgate.deliver {name}",
                job.event.trace_context,
                SpanKind.CLIENT,
                {
                    "hookgate.destination": name,
                    "hookgate.delivery_id": job.id,
                    "hookgate.event_id": job.event.id,
                    "hookgate.attempt": job.attempt,
                },
            )
        )
        try:
            result = await self._send(
                job, destination, tracing.traceparent(span) if span is not None else None
            )
        except Exception as exc:  # a provider hook or client bug must not stop the worker
            log.exception("delivery_error", destination=name, delivery=job.id)
            result = SendResult("failed", None, short(f"{type(exc).__name__}: {exc}"))
        seconds = time.monotonic() - began
        self._record(name, breaker, result)
        outcome, label = self._outcome(job, destination, result, started, seconds)
        tracing.finish(
            span,
            None if outcome.state == "delivered" else (outcome.error or outcome.state),
            {"hookgate.outcome": outcome.state, "http.response.status_code": result.status_code},
        )
        if result.kind == "gone" and name not in self._gone:
            self._gone.add(name)
            await self._store.set_destination_disabled(
                name, f"HTTP 410 Gone at {started.isoformat()}"
            )
            log.warning("destination_disabled", destination=name, reason="410 Gone")
        kept = await self._store.finish_delivery(job, self.owner, outcome)
        if not kept:
            log.info("delivery_lease_lost", destination=name, delivery=job.id)
        if outcome.state != "delivered":
            # A dead delivery waits for an operator (replay); a failed one retries itself.
            (log.warning if outcome.state == "dead" else log.info)(
                "delivery_dead" if outcome.state == "dead" else "delivery_failed",
                destination=name,
                delivery=job.id,
                event_id=job.event.id,
                attempt=job.attempt,
                state=outcome.state,
                status_code=outcome.status_code,
                error=outcome.error,
                retry_at=outcome.retry_at.isoformat() if outcome.retry_at else None,
            )
        if outcome.retry_at is not None and (
            self._next_due is None or outcome.retry_at < self._next_due
        ):
            self._next_due = outcome.retry_at
        if self._metrics is not None:
            self._metrics.deliveries.labels(name, label).inc()
            self._metrics.delivery_seconds.labels(name).observe(seconds)
            if outcome.state == "dead":
                self._metrics.dead_deliveries.labels(name).inc()

    async def _send(
        self, job: DeliveryJob, destination: DestinationConfig, traceparent: str | None = None
    ) -> SendResult:
        provider = self._providers.get(job.event.provider)
        if provider is None:
            return SendResult("failed", None, f"no provider {job.event.provider!r}")
        body = encode(cloudevent(job.event, provider))
        if destination.kind == "http":
            if self._http is None:
                total = sum(d.concurrency for d in self._destinations.values())
                self._http = HttpSender(max_connections=max(10, total))
            return await self._http.send(destination, job.event.id, body, traceparent=traceparent)
        sender = self._kafka.get(destination.name)
        if sender is None:
            sender = self._kafka[destination.name] = KafkaSender(destination)
        return await sender.send((job.event.subject or job.event.id).encode(), body)

    def _outcome(
        self,
        job: DeliveryJob,
        destination: DestinationConfig,
        result: SendResult,
        started: datetime,
        seconds: float,
    ) -> tuple[DeliveryOutcome, str]:
        duration_ms = round(seconds * 1000)
        if result.kind == "delivered":
            return DeliveryOutcome(
                state="delivered",
                started_at=started,
                duration_ms=duration_ms,
                status_code=result.status_code,
            ), "delivered"
        now = self._clock()
        if result.kind == "gone":
            # The delivery waits, due at once, until an operator enables the destination.
            return DeliveryOutcome(
                state="failed",
                started_at=started,
                duration_ms=duration_ms,
                status_code=result.status_code,
                error=short(f"{result.error}: destination disabled"),
                retry_at=now,
            ), "gone"
        verdict = after_failure(destination.policy(), job.attempt, job.created_at, now, self._rand)
        error = result.error
        if verdict.state == "dead":
            error = short(f"{error}; dead: {verdict.reason}")
        return DeliveryOutcome(
            state=verdict.state,
            started_at=started,
            duration_ms=duration_ms,
            status_code=result.status_code,
            error=error,
            retry_at=verdict.retry_at,
        ), verdict.state

    def _record(self, name: str, breaker: CircuitBreaker, result: SendResult) -> None:
        """Feed the breaker; its openings and closings are logged, since they decide
        whether a destination gets traffic at all."""
        before = breaker.state
        if result.healthy:
            breaker.record_success()
        else:
            breaker.record_failure()
        after = breaker.state
        if after == "open" and before != "open":
            reopens = breaker.reopens_at()
            log.warning(
                "circuit_breaker_opened",
                destination=name,
                cause=(
                    "the trial delivery failed"
                    if before == "half_open"
                    else f"{breaker.threshold} consecutive failures"
                ),
                cooldown_seconds=breaker.cooldown,
                retry_at=datetime.fromtimestamp(reopens, UTC).isoformat() if reopens else None,
                error=result.error,
            )
        elif after == "closed" and before != "closed":
            log.info("circuit_breaker_closed", destination=name, status_code=result.status_code)
        self._gauge(name, breaker)

    def _gauge(self, name: str, breaker: CircuitBreaker) -> None:
        if self._metrics is not None:
            self._metrics.breaker_state.labels(name).set(STATE_VALUES[breaker.state])

    # -- the loop ------------------------------------------------------------------------

    def next_wake(self) -> float:
        """Seconds until the worker should look again: the poll interval, or sooner when a
        retry it scheduled or a breaker cooldown ends first."""
        delay = self._processing.poll_interval_ms / 1000
        now = self._clock()
        candidates = [self._next_due] if self._next_due is not None else []
        for breaker in self.breakers.values():
            reopens = breaker.reopens_at()
            if reopens is not None:
                candidates.append(datetime.fromtimestamp(reopens, UTC))
        for moment in candidates:
            delay = min(delay, max(0.0, (moment - now).total_seconds()))
        if self._next_due is not None and self._next_due <= now:
            self._next_due = None
        return delay

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Deliver until `stop` is set; `wake` (set by new deliveries) cuts a wait short."""
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("delivery_pass_failed")
                claimed = 0
            if claimed:
                continue
            waiters = [asyncio.ensure_future(stop.wait())]
            if wake is not None:
                waiters.append(asyncio.ensure_future(wake.wait()))
            try:
                await asyncio.wait(
                    waiters, timeout=self.next_wake(), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if wake is not None:
                wake.clear()

    async def close(self) -> None:
        """Close the HTTP client and flush the Kafka producers."""
        if self._http is not None:
            await self._http.close()
            self._http = None
        for sender in self._kafka.values():
            await sender.close()
        self._kafka.clear()
