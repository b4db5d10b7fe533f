"""verify → parse → store: the one path every transport (HTTP, Kafka) takes into the inbox.

The HTTP ingress calls the synchronous steps and awaits the store itself, so its hot path
carries no extra coroutine; other transports call `accept`, which runs the same steps.
Both raise `Reject` for input that must be refused and `StoreError` when the durable
write failed (the caller answers 503 or retries; nothing is acknowledged).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from hookgate.authorization.decider import Decider
from hookgate.authorization.model import normalise_uid
from hookgate.config import Config, SourceConfig
from hookgate.ids import new_id
from hookgate.metrics import Metrics
from hookgate.providers.base import Call, Parsed, Provider, Reject, RouteKind, body_hash
from hookgate.store.base import (
    ConsumptionReport,
    InboundEvent,
    IngestResult,
    Rejection,
    Store,
    StoreError,
)
from hookgate.timeutil import utcnow
from hookgate.verify import mask_headers

log = structlog.get_logger("hookgate.ingress")

_DEFAULT_KEEP = frozenset({"content-type", "user-agent"})


class Pipeline:
    """What happens to a received body, whichever transport brought it."""

    __slots__ = ("config", "decider", "metrics", "on_stored", "store")

    def __init__(
        self,
        config: Config,
        store: Store,
        decider: Decider,
        metrics: Metrics,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.decider = decider
        self.metrics = metrics
        # Wakes the processing worker after a new event is stored (set by the composition
        # root once the worker exists).
        self.on_stored = on_stored

    def parse(
        self,
        source: SourceConfig,
        provider: Provider[Any],
        call: Call,
        kind: RouteKind,
        *,
        verify: bool = True,
    ) -> Parsed:
        """Verify the signature over the raw bytes, then parse. An ingest body that breaks
        our schema is quarantined instead when the source says so: by then the sender is
        proven (authentication and signature ran first), so the body is authentic data that
        only our schema is behind on. Malformed JSON (400) is never quarantined."""
        if verify:
            provider.verify(source, call)
        try:
            return provider.parse(source, call)
        except Reject as exc:
            if exc.status != 422 or kind != "ingest" or source.on_invalid != "quarantine":
                raise
            parsed = provider.quarantine(source, call, exc)
            self.metrics.schema_mismatches.labels(source.name, parsed.event_type).inc()
            log.warning(
                "schema mismatch quarantined",
                source=source.name,
                event_type=parsed.event_type,
                violation=parsed.document["violation"],
            )
            return parsed

    @staticmethod
    def event(
        source: SourceConfig,
        provider: Provider[Any],
        headers: Mapping[str, str],
        parsed: Parsed,
        body: bytes,
    ) -> InboundEvent:
        """The inbox row of a parsed body (credentials in its headers masked)."""
        return InboundEvent(
            id=new_id(),
            source=source.name,
            provider=source.provider,
            event_type=parsed.event_type,
            received_at=utcnow(),
            dedup_key=parsed.dedup_key,
            raw_body=body,
            body_sha256=body_hash(body),
            headers=mask_headers(headers, provider.keep_headers, provider.secret_headers(source)),
            document=parsed.document,
            subject=parsed.subject,
            status=parsed.status,
            flags=parsed.flags,
        )

    def consumption(self, parsed: Parsed) -> ConsumptionReport | None:
        """The energy/money the event reports, with its token normalised and grouped so
        that budgets count it against the right identity."""
        used = parsed.consumption
        if used is not None and used.token:
            used.token = normalise_uid(used.token)
            used.group_id = self.decider.group_of(used.token)
        return used

    def stored(self, used: ConsumptionReport | None, result: IngestResult) -> None:
        """After the durable write: budgets and the processing worker learn of a new event."""
        if result.stored:
            if used is not None:
                self.decider.nudge()
            if self.on_stored is not None:
                self.on_stored()

    def wake(self) -> None:
        """Tell the processing worker that an event was stored by another route."""
        if self.on_stored is not None:
            self.on_stored()

    async def accept(
        self,
        source: SourceConfig,
        provider: Provider[Any],
        call: Call,
        *,
        verify: bool = True,
    ) -> IngestResult:
        """verify → parse → store one ingest body; raises `Reject` or `StoreError`."""
        parsed = self.parse(source, provider, call, "ingest", verify=verify)
        event = self.event(source, provider, call.headers, parsed, call.body)
        used = self.consumption(parsed)
        result = await self.store.ingest(event, used)
        self.stored(used, result)
        return result

    async def reject(
        self,
        source: SourceConfig | None,
        provider: Provider[Any] | None,
        name: str,
        exc: Reject,
        *,
        method: str,
        path: str,
        headers: Mapping[str, str],
        remote: str | None,
        body: bytes,
        declared: int = 0,
    ) -> bool:
        """Count and record a refused body (masked, size-capped); False, rather than an
        exception, when storage could not take the record."""
        self.metrics.rejections.labels(source.name if source else "-", exc.code).inc()
        keep = provider.keep_headers if provider else _DEFAULT_KEEP
        secret = provider.secret_headers(source) if provider and source else frozenset()
        cap = self.config.storage.rejection_body_bytes
        rejection = Rejection(
            id=new_id(),
            received_at=utcnow(),
            source=name[:200],
            provider=source.provider if source else None,
            method=method,
            path=path[:500],
            status=exc.status,
            reason=exc.code,
            detail=exc.detail,
            headers=mask_headers(headers, keep | {"content-length"}, secret),
            remote=remote,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_size=max(declared, len(body)),
            body=body[:cap],
            # What a re-run after a configuration fix needs: the whole body and the
            # signature headers, never credentials; nothing for an over-size body.
            replay=(
                provider.replay_copy(source, headers, body)
                if provider is not None and source is not None and declared == 0
                else None
            ),
        )
        log.info(
            "request rejected",
            source=name,
            status=exc.status,
            reason=exc.code,
            detail=exc.detail,
            rejection_id=rejection.id,
        )
        try:
            await self.store.record_rejection(rejection)
        except StoreError as err:
            log.error("rejection not recorded", source=name, error=str(err))
            return False
        return True
