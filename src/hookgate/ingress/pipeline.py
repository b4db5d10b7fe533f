"""verify → parse → store: the one path every transport (HTTP, Kafka) takes into the inbox.

The HTTP ingress calls the synchronous steps and awaits the store itself, so its hot path
carries no extra coroutine; other transports call `accept`, which runs the same steps.
Both raise `Reject` for input that must be refused and `StoreError` when the durable
write failed (the caller answers 503 or retries; nothing is acknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from hookgate.authorization.decider import Decider
from hookgate.config import Config, SourceConfig
from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.errors import StoreError
from hookgate.domain.events import InboundEvent, IngestResult, Rejection
from hookgate.domain.rules import normalise_uid
from hookgate.ids import new_id
from hookgate.ingress.rejections import UNKNOWN_SOURCE, RejectionLimiter, clip
from hookgate.metrics import Metrics
from hookgate.providers.base import Call, Parsed, Provider, Reject, RouteKind, body_hash
from hookgate.store.base import Store
from hookgate.timeutil import utcnow
from hookgate.verify import mask_headers, redact_json

log = structlog.get_logger("hookgate.ingress")

_DEFAULT_KEEP = frozenset({"content-type", "user-agent"})
# Refusals a configuration fix (a new secret, on_invalid = "quarantine") can cure.
_REPLAYABLE = frozenset({"unauthorized", "schema-violation"})
# Attacker-sized values are cut before they reach the record or the log.
_NAME_CHARS = 64
_PATH_CHARS = 500
_DETAIL_CHARS = 1000
# Seconds between writes of the refusal counts while refusals keep coming.
FLUSH_SECONDS = 2.0


class Pipeline:
    """What happens to a received body, whichever transport brought it."""

    __slots__ = (
        "_flusher",
        "_recorded",
        "config",
        "decider",
        "limiter",
        "metrics",
        "on_stored",
        "store",
    )

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
        self.limiter = RejectionLimiter(
            config.storage.rejection_sample_per_minute, config.logging.rejection_lines_per_minute
        )
        self._flusher: asyncio.Future[None] | None = None
        # A record was written since the log was last trimmed to its size cap.
        self._recorded = False

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
        *,
        request_id: str | None = None,
        trace_context: str | None = None,
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
            request_id=request_id,
            trace_context=trace_context,
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
        stored_body: bytes | None = None,
        request_id: str | None = None,
    ) -> bool:
        """Count a refused body; record it (masked, size-capped) when it is within the
        per-minute sample. False, rather than an exception, when storage could not take
        the record. `stored_body` replaces what is kept of `body` (a redacted form), and
        b"" keeps nothing of it but its hash and size."""
        key = source.name if source else UNKNOWN_SOURCE
        size = max(declared, len(body))
        self.metrics.rejections.labels(key, exc.code).inc()
        verdict = self.limiter.admit(key, exc.code, size)
        self._schedule_flush()
        rejection_id = new_id() if verdict.record else None
        if verdict.log:
            log.info(
                "request rejected",
                source=clip(name, _NAME_CHARS),
                status=exc.status,
                reason=exc.code,
                detail=clip(exc.detail, _DETAIL_CHARS),
                rejection_id=rejection_id,
            )
        if rejection_id is None:
            self.metrics.unrecorded.labels(key, exc.code).inc()
            return True
        keep = provider.keep_headers if provider else _DEFAULT_KEEP
        secret = provider.secret_headers(source) if provider and source else frozenset()
        cap = self.config.storage.rejection_body_bytes
        if stored_body is None and provider is not None and provider.credential_bodies:
            # A route that takes credentials: keep the body only as parsed and redacted
            # JSON; of anything else only its hash and size.
            stored_body = redact_json(body) or b""
        kept = body if stored_body is None else stored_body
        rejection = Rejection(
            id=rejection_id,
            received_at=utcnow(),
            source=clip(name, _NAME_CHARS),
            provider=source.provider if source else None,
            method=clip(method, 32),
            path=clip(path, _PATH_CHARS),
            status=exc.status,
            reason=exc.code,
            detail=clip(exc.detail, _DETAIL_CHARS),
            headers=mask_headers(headers, keep | {"content-length"}, secret),
            remote=remote,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_size=size,
            body=kept[:cap],
            # What a re-run after a configuration fix needs: the whole body and the
            # signature headers, never credentials; only when a re-run could pass (a
            # complete body with a well-formed signature, refused for a reason a new
            # secret or a schema change can cure).
            replay=(
                provider.replay_copy(source, headers, body)
                if provider is not None
                and source is not None
                and declared == 0
                and stored_body is None
                and exc.code in _REPLAYABLE
                else None
            ),
            request_id=request_id,
        )
        self._recorded = True
        try:
            await self.store.record_rejection(rejection)
        except StoreError as err:
            log.error("rejection not recorded", source=rejection.source, error=str(err))
            self.metrics.storage_errors.labels("rejections").inc()
            return False
        return True

    def _schedule_flush(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        """Store the counts every few seconds while refusals keep coming (and until their
        minute is over, for its summary line), then stop."""
        while self.limiter.pending:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        """Write the pending refusal counts and log the suppressed-lines summaries; keep
        the rejection log within its size cap."""
        counts, summaries = self.limiter.drain(final=final)
        for gone in summaries:
            log.warning(
                "rejections suppressed",
                source=gone.source,
                reason=gone.reason,
                minute=gone.minute.isoformat(),
                suppressed=gone.count,
                detail=f"{gone.count} more rejections suppressed",
            )
        try:
            await self.store.count_rejections(counts)
            if self._recorded:
                self._recorded = False
                trimmed = await self.store.trim_rejections(
                    self.config.storage.rejection_log_max_bytes
                )
                if trimmed:
                    log.info("rejection log trimmed to its size cap", deleted=trimmed)
        except StoreError as err:
            log.error("rejection counts not stored", error=str(err))

    async def close(self) -> None:
        """Stop the flush loop and write what is pending (on shutdown)."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush(final=True)
