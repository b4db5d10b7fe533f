"""Re-running what hookgate held back, once the configuration (or code) is fixed.

A quarantined event is parsed again from its stored raw body and, when valid now, takes
its place in the inbox queue. A rejected request is verified again from its replay copy
(`Rejection.replay`: the body and only the signature headers) with the current secrets,
then taken through the ingest pipeline like a new call. Both use the provider's own
checks, so a re-run accepts exactly what a fresh delivery of the same call would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from hookgate.config import Config, SourceConfig
from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.errors import Conflict, NotFound, Unprocessable
from hookgate.domain.events import InboundEvent, IngestResult, StoredRejectionDetail
from hookgate.providers.base import Call, Parsed, Provider, Reject, RouteKind, read_replay_copy
from hookgate.store.base import Store

Providers = Mapping[str, Provider[Any]]


class Ingest(Protocol):
    """The ingest pipeline's steps a re-run takes, in the order the edges take them
    (`ingress.pipeline.Pipeline`; handed in by the composition root)."""

    def parse(
        self,
        source: SourceConfig,
        provider: Provider[Any],
        call: Call,
        kind: RouteKind,
        *,
        verify: bool = True,
    ) -> Parsed: ...

    def event(
        self,
        source: SourceConfig,
        provider: Provider[Any],
        headers: Mapping[str, str],
        parsed: Parsed,
        body: bytes,
    ) -> InboundEvent: ...

    def consumption(self, parsed: Parsed) -> ConsumptionReport | None: ...

    def stored(self, used: ConsumptionReport | None, result: IngestResult) -> None: ...

    def wake(self) -> None: ...


class RerunResult(msgspec.Struct, kw_only=True):
    """`queued`: a quarantined event is queued for processing; `stored`: a rejected call is
    now an inbox event; `duplicate`: the inbox already holds it as `duplicate_of`."""

    status: str
    event_id: str
    event_type: str
    duplicate_of: str | None = None
    detail: str


def _source(config: Config, providers: Providers, name: str) -> tuple[SourceConfig, Provider[Any]]:
    source = config.source(name)
    if source is None:
        raise Conflict(f"source {name!r} is not configured (any more)", code="unknown-source")
    return source, providers[source.provider]


def _ingest_route(provider: Provider[Any]) -> str:
    for route, kind in provider.routes.items():
        if kind == "ingest":
            return route
    raise Conflict(
        f"{provider.name} calls are answered live and cannot be re-run", code="not-rerunnable"
    )


def _still_invalid(exc: Reject) -> Unprocessable:
    return Unprocessable(exc.detail)


def _no_copy_reason(rejection: StoredRejectionDetail, config: Config, providers: Providers) -> str:
    if rejection.reason == "body-too-large":
        return "the body was over the size limit and was not kept whole"
    if rejection.provider is None:
        return "the request named no configured source, so nothing was kept to verify it"
    source = config.source(rejection.source)
    provider = providers.get(rejection.provider)
    if source is not None and provider is not None and not provider.replay_headers(source):
        return (
            f"source {source.name!r} authenticates with credentials in headers (Basic, API "
            "key or bearer token), which are never stored; " + provider.resend
        )
    return (
        "no replay copy was kept for this request (an unsigned call, or one refused before "
        "replay copies were kept)"
    )


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class Reruns:
    """Re-running quarantined events and refused calls with the current configuration."""

    def __init__(
        self, store: Store, config: Config, providers: Providers, pipeline: Ingest
    ) -> None:
        self.store = store
        self.config = config
        self.providers = providers
        self.pipeline = pipeline

    async def reprocess(self, event_id: str) -> RerunResult:
        """Parse a quarantined event again; queue it for processing when it is valid now."""
        store = self.store
        event = await store.get_event(event_id)
        if event is None:
            raise NotFound(f"no event with id {event_id}")
        if event.status != "quarantined":
            raise Conflict(
                f"event {event_id} is {event.status}, not quarantined", code="not-quarantined"
            )
        source, provider = _source(self.config, self.providers, event.source)
        call = Call(_ingest_route(provider), dict(event.headers), event.raw_body)
        try:
            parsed = provider.parse(source, call)
        except Reject as exc:
            raise _still_invalid(exc) from None
        queued = await store.requeue_event(
            event_id,
            parsed.document,
            parsed.event_type,
            parsed.dedup_key,
            parsed.subject,
            parsed.flags,
        )
        if queued:
            self.pipeline.wake()
            return RerunResult(
                status="queued",
                event_id=event_id,
                event_type=parsed.event_type,
                detail="valid now: queued for processing",
            )
        original = await store.find_event(source.name, parsed.dedup_key)
        return RerunResult(
            status="duplicate",
            event_id=event_id,
            event_type=parsed.event_type,
            duplicate_of=original,
            detail=f"duplicate of event {original}; this copy stays quarantined",
        )

    async def rerun(self, rejection_id: str) -> RerunResult:
        """Verify a rejected call again from its replay copy and take it through the
        ingest pipeline when it passes."""
        store = self.store
        rejection = await store.get_rejection(rejection_id)
        if rejection is None:
            raise NotFound(f"no rejection with id {rejection_id}")
        if rejection.rerun_event_id:
            raise Conflict(
                f"rejection {rejection_id} was already re-run as event {rejection.rerun_event_id}",
                code="already-rerun",
            )
        if rejection.replay is None:
            raise Conflict(
                _no_copy_reason(rejection, self.config, self.providers), code="no-replay-copy"
            )
        source, provider = _source(self.config, self.providers, rejection.source)
        if source.provider != rejection.provider:
            raise Conflict(
                f"source {source.name!r} is now {source.provider}, not {rejection.provider}",
                code="provider-changed",
            )
        route = rejection.path.removeprefix("/hooks/").strip("/").partition("/")[2]
        if provider.routes.get(route) != "ingest":
            raise Conflict(
                f"calls to /{route} are answered live and cannot be re-run", code="not-rerunnable"
            )
        copy = read_replay_copy(rejection.replay)
        call = Call(route, dict(copy.headers), copy.body)
        # The edge's checks first (credentials, media type), then the pipeline's steps.
        pipeline = self.pipeline
        try:
            provider.authenticate(source, call)
            if not _is_json(call.headers.get("content-type")):
                raise Unprocessable("the body must be application/json")
            parsed = pipeline.parse(source, provider, call, "ingest")
        except Reject as exc:
            raise _still_invalid(exc) from None
        event = pipeline.event(source, provider, call.headers, parsed, call.body)
        used = pipeline.consumption(parsed)
        result = await store.ingest(event, used)
        pipeline.stored(used, result)
        await store.mark_rejection_rerun(rejection_id, result.event_id)
        if result.stored:
            return RerunResult(
                status="stored",
                event_id=result.event_id,
                event_type=parsed.event_type,
                detail=f"verified and stored as event {result.event_id} ({parsed.status})",
            )
        return RerunResult(
            status="duplicate",
            event_id=result.event_id,
            event_type=parsed.event_type,
            duplicate_of=result.event_id,
            detail=f"duplicate of event {result.event_id}",
        )
