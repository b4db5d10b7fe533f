"""Fetch on notify (ADR 0026): read the objects thin notifications name, after the event
is stored and processed, and project what was read like any other fact.

Nothing here is on the acknowledgement path. Processing queues a fetch per named object
(`reference_fetches`); this worker claims due fetches, paces its requests per source (a
rate it may not exceed, AMPECO answers 429 beyond its tenant limit), and settles each:
done with the projection in the same transaction, pending again after an exponential
backoff (with jitter, at least what `Retry-After` asked) when the failure may pass, or
failed when it cannot (404, 401) or the attempts ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from hookgate.config import AmpecoSource, Config
from hookgate.domain.errors import StoreError
from hookgate.domain.events import StoredEvent
from hookgate.metrics import Metrics
from hookgate.processing.projections import project
from hookgate.providers.ampeco_api import AmpecoApi, FetchError, facts_of
from hookgate.store import fetches
from hookgate.store.base import Store, ViewTx
from hookgate.timeutil import utcnow

log = structlog.get_logger("hookgate.fetcher")
_LEASE = timedelta(minutes=2)
_BATCH = 20


class Pace:
    """At most `rate` starts per second: each caller waits for its slot."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.next = 0.0

    async def wait(self) -> None:
        now = self.clock()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


def backoff(attempt: int, initial: float, ceiling: float, retry_after: float | None) -> float:
    """Seconds before attempt `attempt + 1`: exponential, half of it jittered so that
    objects failing together do not come back together; never less than `retry_after`."""
    base = min(initial * float(2 ** max(attempt - 1, 0)), ceiling)
    delay = base / 2 + random.uniform(0, base / 2)  # noqa: S311 (jitter, not security)
    return max(delay, retry_after or 0.0)


class _SourceApi:
    def __init__(self, source: AmpecoSource, client: AmpecoApi) -> None:
        self.source = source
        self.client = client
        self.pace = Pace(source.api_requests_per_second)


class Fetcher:
    """Reads the objects of every AMPECO source that has `api_base_url` set."""

    def __init__(
        self,
        store: Store,
        config: Config,
        metrics: Metrics,
        clients: dict[str, AmpecoApi] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.poll = config.processing.poll_interval_ms / 1000
        self.rules = config.anomalies
        self.apis: dict[str, _SourceApi] = {}
        for source in config.sources:
            if isinstance(source, AmpecoSource) and source.api_base_url and source.api_token:
                client = (clients or {}).get(source.name) or AmpecoApi(
                    source.api_base_url, source.api_token
                )
                self.apis[source.name] = _SourceApi(source, client)
        self.woken = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.apis)

    def wake(self) -> None:
        self.woken.set()

    async def run_once(self) -> int:
        """Claim and settle one batch of due fetches; how many were settled."""
        due = await fetches.claim_due(self.store, list(self.apis), utcnow(), _LEASE, _BATCH)
        for fetch in due:
            await self._one(fetch)
        return len(due)

    async def _one(self, fetch: fetches.Fetch) -> None:
        api = self.apis[fetch.source]
        await api.pace.wait()
        try:
            document = await api.client.fetch(fetch.kind, fetch.ref_id)
        except FetchError as exc:
            await self._failed(api, fetch, exc)
            return
        now = utcnow()
        event = StoredEvent(
            id=fetch.event_id,
            source=fetch.source,
            provider="ampeco",
            event_type=f"{fetch.kind}.fetched",
            received_at=now,
            subject=None,
            status="processed",
            flags=[],
            document=None,
        )
        facts = facts_of(fetch.kind, document, now)

        raised: list[str] = []

        def apply(tx: ViewTx) -> None:
            raised.extend(project(tx, event, facts, self.rules))

        await self.store.sql_write(
            lambda conn: fetches.settle(conn, fetch, now, document=document, apply=apply)
        )
        self.metrics.fetches.labels(fetch.source, fetch.kind, "fetched").inc()
        for flag in raised:
            self.metrics.anomalies.labels(fetch.source, flag).inc()

    async def _failed(self, api: _SourceApi, fetch: fetches.Fetch, exc: FetchError) -> None:
        now = utcnow()
        attempt = fetch.attempts + 1
        source = api.source
        retry_at: datetime | None = None
        if exc.retryable and attempt < source.api_max_attempts:
            delay = backoff(
                attempt,
                source.api_initial_backoff_seconds,
                source.api_max_backoff_seconds,
                exc.retry_after,
            )
            retry_at = now + timedelta(seconds=delay)
        outcome = "retry" if retry_at else "failed"
        log.warning(
            "reference fetch " + outcome,
            source=fetch.source,
            kind=fetch.kind,
            ref_id=fetch.ref_id,
            attempt=attempt,
            error=str(exc),
        )
        await self.store.sql_write(
            lambda conn: fetches.settle(conn, fetch, now, retry_at=retry_at, error=str(exc))
        )
        self.metrics.fetches.labels(fetch.source, fetch.kind, outcome).inc()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: settle due fetches, then wait for a wake-up or a poll."""
        while not stop.is_set():
            self.woken.clear()
            try:
                if await self.run_once():
                    continue
            except StoreError as exc:
                log.error("reference fetch batch failed", error=str(exc))
                self.metrics.storage_errors.labels("processing").inc()
            waiters: Sequence[Any] = (
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self.woken.wait()),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED), self.poll
                )
            for waiter in waiters:
                waiter.cancel()

    async def close(self) -> None:
        for api in self.apis.values():
            await api.client.close()
