"""Outbox workers: project received events into the views and hand them to delivery.

In-process by default (woken by every commit), or alone in `hookgate worker`. Work is
claimed from the store and committed there, so a crash means the work is redone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import structlog

from hookgate import tracing
from hookgate.config import Config
from hookgate.delivery.router import Router
from hookgate.delivery.worker import DeliveryWorker
from hookgate.domain.anomalies import AnomalyRules
from hookgate.domain.errors import StoreError
from hookgate.domain.events import StoredEvent
from hookgate.domain.outbox import ProcessResult
from hookgate.metrics import Metrics
from hookgate.processing.fetcher import Fetcher
from hookgate.processing.projections import project
from hookgate.providers.base import Provider
from hookgate.store.base import Store, ViewTx

log = structlog.get_logger("hookgate.processing")
# Settled events indexed for search per call when processing is idle (docs/adr/0020).
INDEX_BATCH = 500


class Processor:
    """The processing step of one event: its facts into the views, then its destinations."""

    def __init__(
        self,
        providers: dict[str, Provider[Any]],
        router: Router,
        rules: AnomalyRules | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.providers = providers
        self.router = router
        self.rules = rules
        self.metrics = metrics

    def __call__(self, tx: ViewTx, event: StoredEvent) -> list[str]:
        span = (
            None
            if tracing.TRACER is None
            else tracing.start_child(
                "hookgate.process",
                event.trace_context,
                attributes={"hookgate.event_id": event.id},
            )
        )
        try:
            provider = self.providers.get(event.provider)
            facts = provider.facts(event) if provider is not None else []
            raised = project(tx, event, facts, self.rules)
            if raised and self.metrics is not None:
                for flag in raised:
                    self.metrics.anomalies.labels(event.source, flag).inc()
            destinations = self.router.destinations_for(event)
        except Exception as exc:
            tracing.finish(span, error=f"{type(exc).__name__}: {exc}")
            raise
        tracing.finish(span, attributes={"hookgate.destinations": len(destinations)})
        return destinations


class ProcessingWorker:
    """Drains received events in batches; sleeps until woken or the poll interval passes."""

    def __init__(
        self, store: Store, processor: Processor, config: Config, metrics: Metrics
    ) -> None:
        self.store = store
        self.processor = processor
        self.batch_size = config.processing.batch_size
        self.poll = config.processing.poll_interval_ms / 1000
        self.metrics = metrics
        self.woken = asyncio.Event()
        # Set after a batch that created deliveries: the delivery worker waits on it.
        self.delivered = asyncio.Event()

    def wake(self) -> None:
        """A new event was stored (called from the ingest path: only sets a flag)."""
        self.woken.set()

    async def run_once(self) -> ProcessResult:
        """Process one batch."""
        result = await self.store.process_pending(self.processor, self.batch_size)
        if result.processed or result.failed:
            self.metrics.processed.labels("processed").inc(result.processed)
            self.metrics.processed.labels("failed").inc(result.failed)
        if result.deliveries:
            self.delivered.set()
        return result

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: process while there is work, then wait for a wake-up or a poll."""
        while not stop.is_set():
            self.woken.clear()
            try:
                result = await self.run_once()
            except StoreError as exc:
                log.error("processing batch failed", error=str(exc))
                self.metrics.storage_errors.labels("processing").inc()
                result = ProcessResult(0, 0, 0)
            if result.processed or result.failed:
                continue
            # Nothing to process: index what processing settled (search and counts come
            # last, after acknowledgements and processing).
            try:
                if await self.store.index_search(INDEX_BATCH):
                    continue
            except StoreError as exc:
                log.error("search indexing failed", error=str(exc))
                self.metrics.storage_errors.labels("processing").inc()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(stop, self.woken), self.poll)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def worker_owner() -> str:
    """A lease owner name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Workers:
    """The processing and delivery loops of one process, started and stopped together."""

    def __init__(
        self,
        store: Store,
        config: Config,
        providers: dict[str, Provider[Any]],
        metrics: Metrics,
    ) -> None:
        self.processing = ProcessingWorker(
            store,
            Processor(providers, Router(config.destinations, providers), config.anomalies, metrics),
            config,
            metrics,
        )
        self.delivery = DeliveryWorker(store, config, providers, metrics, owner=worker_owner())
        self.fetcher = Fetcher(store, config, metrics)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        """Called after each newly stored event."""
        self.processing.wake()

    async def start(self) -> None:
        """Start both loops in the background."""
        self._tasks = [
            asyncio.create_task(self.processing.run(self._stop), name="hookgate-processing"),
            asyncio.create_task(
                self.delivery.run(self._stop, self.processing.delivered), name="hookgate-delivery"
            ),
        ]
        if self.fetcher.enabled:
            self._tasks.append(
                asyncio.create_task(self.fetcher.run(self._stop), name="hookgate-fetcher")
            )

    async def stop(self) -> None:
        """Let the current batches finish, then stop."""
        self._stop.set()
        self.processing.wake()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.delivery.close()
        await self.fetcher.close()
