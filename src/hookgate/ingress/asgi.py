"""The HTTP edge for provider calls: `POST /hooks/{source}[/{route}]`.

A lean ASGI handler rather than a framework route, so the hot path does only what it
must: limits, authentication, verification over the raw bytes, parsing, one durable
write, the answer. Every refusal is recorded (masked) and never processed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

import structlog
from structlog.contextvars import bind_contextvars

from hookgate import tracing
from hookgate.authorization.decider import Decider
from hookgate.config import Config, SourceConfig, ZaptecSource
from hookgate.domain.errors import HookgateError, Overloaded, StoreError
from hookgate.domain.events import InboundEvent
from hookgate.ingress.pipeline import Pipeline
from hookgate.ingress.problems import error_answer, problem, request_id_of
from hookgate.ingress.rejections import clip
from hookgate.ingress.throttle import FailureThrottle
from hookgate.metrics import Metrics
from hookgate.oauth import FORM_MAX_BYTES, TokenIssuer, redact_form
from hookgate.providers.base import (
    Answer,
    Call,
    Parsed,
    Provider,
    Reject,
    RouteKind,
    SessionAuthority,
    json_answer,
)
from hookgate.services.sessions import ChargingSessions
from hookgate.store.base import Store

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = structlog.get_logger("hookgate.ingress")

_JSON = b"application/json"
_PROBLEM = b"application/problem+json"


# How long a refused call's body is waited for, to keep its head in the rejection log.
GLIMPSE_SECONDS = 0.5


class _Disconnected(Exception):
    """The client went away before its body arrived; there is nobody to answer."""


class _Overloaded(Exception):
    """Reading this body would pass the budget of body bytes read at once."""


class _TooLarge(Exception):
    def __init__(self, head: bytes, size: int) -> None:
        self.head = head
        self.size = size


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    remote: str | None
    started: float
    id: str


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class Ingress:
    """ASGI app for provider calls; built by the composition root once storage is open."""

    def __init__(
        self,
        config: Config,
        store: Store,
        providers: dict[str, Provider[Any]],
        decider: Decider,
        issuer: TokenIssuer,
        metrics: Metrics,
        on_stored: Callable[[], None] | None = None,
        sessions: ChargingSessions | None = None,
        pipeline: Pipeline | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.providers = providers
        self.decider = decider
        self.issuer = issuer
        self.metrics = metrics
        self.max_body = config.server.max_body_bytes
        self.access_log = config.logging.access_log
        self.max_buffering = config.server.max_buffered_body_bytes
        self._buffering = 0  # body bytes being read now, across requests
        self.sources = {source.name: source for source in config.sources}
        # A source that receives through Kafka has no HTTP routes.
        self.routes: dict[str, dict[str, RouteKind]] = {
            source.name: {}
            if providers[source.provider].via_kafka(source)
            else providers[source.provider].routes
            for source in config.sources
            if source.provider in providers
        }
        self._background: set[asyncio.Task[None]] = set()
        server = config.server
        self.throttle = FailureThrottle(
            server.auth_failure_limit,
            server.auth_failure_window_seconds,
            server.auth_failure_table_size,
        )
        self.pipeline = pipeline or Pipeline(config, store, decider, metrics, on_stored)
        self.sessions = sessions or ChargingSessions(store, decider, metrics, rates=config.rates())

    # -- ASGI --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        client = scope.get("client")
        request_id = request_id_of(headers)
        request = _Request(
            scope["method"],
            scope["path"],
            headers,
            client[0] if client else None,
            started,
            request_id,
        )
        # Every log line of this request carries its id (the request runs in its own task:
        # the binding ends with it).
        bind_contextvars(request_id=request_id)
        span = (
            None
            if tracing.TRACER is None
            else tracing.request_span(request.method, request.path, headers, request_id)
        )
        try:
            status, body, content_type, extra = await self._handle(request, receive)
        except _Disconnected:
            if span is not None:
                tracing.end_request(span, 499, None, None)
            return
        if span is not None:
            source = request.path[len("/hooks/") :].split("/", 1)[0]
            tracing.end_request(span, status, source if source in self.sources else None, None)
        out = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
        ]
        out.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items())
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive: Receive, request: _Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > limit
        ):
            raise _TooLarge(b"", int(declared))
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    head = b"".join(chunks)
                    raise _TooLarge(head, size)
                # Counted across requests, so that many slow bodies cannot add up to more
                # memory than the budget.
                self._buffering += len(chunk)
                chunks.append(chunk)
                if self._buffering > self.max_buffering:
                    raise _Overloaded
                if not message.get("more_body", False):
                    break
        finally:
            self._buffering -= sum(len(c) for c in chunks)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _glimpse(self, receive: Receive, request: _Request) -> tuple[bytes, int]:
        """At most `rejection_body_bytes` of a refused call's body, for the rejection log,
        waiting for them no longer than GLIMPSE_SECONDS: the body and the size to record
        (0 when the body is whole, else its declared size, so that no partial body is
        ever kept for a re-run)."""
        cap = self.config.storage.rejection_body_bytes
        declared = request.headers.get("content-length")
        size = (
            int(declared)
            if declared is not None and declared.isascii() and declared.isdigit()
            else 0
        )
        if cap == 0 or declared == "0":
            return b"", size
        head = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GLIMPSE_SECONDS
        while len(head) <= cap:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                break
            if message["type"] == "http.disconnect":
                raise _Disconnected
            head += message.get("body", b"")
            if not message.get("more_body", False):
                return head, 0
        return head[: cap + 1], max(size, len(head))

    # -- pipeline ----------------------------------------------------------------------

    async def _handle(
        self, request: _Request, receive: Receive
    ) -> tuple[int, bytes, bytes, dict[str, str]]:
        parts = request.path[len("/hooks/") :].strip("/").split("/", 1)
        name = parts[0]
        route = parts[1] if len(parts) > 1 else ""
        source = self.sources.get(name)
        provider = self.providers.get(source.provider) if source else None
        kind: RouteKind | None = self.routes[name].get(route) if provider else None
        body = b""
        declared = 0
        try:
            if source is None or provider is None:
                raise Reject(
                    404, "unknown-source", "Not Found", f"no source named {clip(name, 64)!r}"
                )
            if kind is None:
                raise Reject(
                    404,
                    "unknown-route",
                    "Not Found",
                    f"source {name!r} receives through Kafka"
                    if provider.via_kafka(source)
                    else f"source {name!r} ({source.provider}) has no route /{route}",
                )
            if request.method != "POST":
                raise Reject(
                    405,
                    "method-not-allowed",
                    "Method Not Allowed",
                    f"{request.method} is not allowed here; providers POST",
                    {"Allow": "POST"},
                )
            if kind == "token":
                assert isinstance(source, ZaptecSource)
                if source.auth != "oauth":
                    raise Reject(
                        404,
                        "unknown-route",
                        "Not Found",
                        f"source {source.name!r} uses HTTP Basic; it has no token endpoint",
                    )
                # A token form is tiny: refuse a large one before reading or parsing it.
                limit = FORM_MAX_BYTES
            else:
                # Credentials carried in headers (Basic, API key, bearer token; for a signed
                # body, the signature's presence) are checked before the body is read, so
                # that nobody without them can make the gateway buffer a body: a refused
                # call's body is only glimpsed for the rejection log.
                try:
                    provider.authenticate(source, Call(route, request.headers, b""))
                except Reject:
                    body, declared = await self._glimpse(receive, request)
                    raise
                limit = self.max_body
            try:
                body = await self._read_body(receive, request, limit)
            except _TooLarge as exc:
                body, declared = exc.head, exc.size
                raise Reject(
                    413,
                    "body-too-large",
                    "Content Too Large",
                    f"the body exceeds {limit} bytes",
                ) from None
            except _Overloaded:
                raise Reject(
                    503,
                    "too-many-bodies",
                    "Service Unavailable",
                    "too many request bodies are being received at once; retry later",
                    {"Retry-After": "1"},
                ) from None
            if kind == "token":
                assert isinstance(source, ZaptecSource)
                return await self._token(request, source, provider, body)
            if not _is_json(request.headers.get("content-type")):
                raise Reject(
                    415,
                    "unsupported-media-type",
                    "Unsupported Media Type",
                    "the body must be application/json",
                    {"Accept-Post": "application/json"},
                )
            if kind == "ingest":
                # No room to store it: refuse before verifying and parsing it.
                self.store.check_ingest_room()
            call = Call(route, request.headers, body)
            pipeline = self.pipeline
            parsed = pipeline.parse(source, provider, call, kind)
            event = pipeline.event(
                source,
                provider,
                request.headers,
                parsed,
                body,
                request_id=request.id,
                trace_context=tracing.current_traceparent(),
            )
            event_id, duplicate = event.id, False
            if kind == "authorize":
                assert isinstance(source, ZaptecSource)
                answer = await self._authorize(
                    source, cast(SessionAuthority, provider), parsed, event, request.started
                )
                pipeline.wake()
            elif kind == "session_end":
                end = cast(SessionAuthority, provider).session_end(parsed)
                began = time.perf_counter()
                with tracing.step("hookgate.commit", kind="session_end"):
                    result = await self.sessions.end(event, end)
                self.metrics.commit_seconds.labels("session_end").observe(
                    time.perf_counter() - began
                )
                if result.stored:
                    pipeline.wake()
                self._count(source, "accepted" if result.stored else "duplicate")
                event_id, duplicate = result.event_id, not result.stored
                answer = provider.accepted(result.event_id)
            else:
                used = pipeline.consumption(parsed)
                began = time.perf_counter()
                with tracing.step("hookgate.commit", kind="ingest"):
                    ingested = await self.store.ingest(event, used)
                self.metrics.commit_seconds.labels("ingest").observe(time.perf_counter() - began)
                pipeline.stored(used, ingested)
                self._count(source, "accepted" if ingested.stored else "duplicate")
                event_id, duplicate = ingested.event_id, not ingested.stored
                answer = (
                    provider.accepted(ingested.event_id)
                    if ingested.stored
                    else provider.duplicate(ingested.event_id)
                )
            elapsed = time.perf_counter() - request.started
            if tracing.TRACER is not None:
                tracing.note(**{"hookgate.event_id": event_id, "hookgate.duplicate": duplicate})
            self.metrics.acknowledged(source.provider, elapsed)
            if self.access_log:
                log.info(
                    "webhook accepted",
                    source=source.name,
                    provider=source.provider,
                    route=route or "/",
                    event_id=event_id,
                    duplicate=duplicate,
                    status=answer.status,
                    duration_ms=round(elapsed * 1000, 3),
                )
            # Server-Timing lets a client (or a benchmark) see the time spent in hookgate.
            timing = {"Server-Timing": f"app;dur={elapsed * 1000:.3f}"}
            return answer.status, answer.body, answer.content_type.encode(), timing
        except Reject as exc:
            if (
                exc.status == 401
                and source is not None
                and provider is not None
                and provider.guessable(source)
            ):
                exc = self._throttled(request, source, exc)
            await self._reject(request, source, provider, name, exc, body, declared)
            return (
                exc.status,
                problem(
                    exc.status, exc.code, exc.public, instance=request.path, request_id=request.id
                ),
                _PROBLEM,
                exc.headers,
            )
        except Overloaded as exc:
            assert source is not None and provider is not None
            return self._shed_request(request, source, provider, exc, body)
        except HookgateError as exc:
            storage = isinstance(exc, StoreError)
            log.error(
                "storage unavailable" if storage else "request failed", source=name, error=str(exc)
            )
            self._count(source, "error")
            if storage:
                self.metrics.storage_errors.labels("ingest").inc()
            # A provider is told what to do, not how storage failed.
            status, document, headers = error_answer(
                exc,
                retry_after=self.config.storage.retry_after_seconds,
                detail="the event could not be stored; retry later" if storage else None,
                request_id=request.id,
            )
            return status, document, _PROBLEM, headers

    def _throttled(self, request: _Request, source: SourceConfig, refusal: Reject) -> Reject:
        """`refusal` of a failed credential, or 429 once this address has failed too often."""
        retry = self.throttle.failed(source.name, request.remote)
        if retry is None:
            return refusal
        return Reject(
            429,
            "too-many-failures",
            "Too Many Requests",
            f"too many failed credentials from this address for source {source.name!r}; "
            f"{refusal.detail}",
            {"Retry-After": str(retry)},
            public=f"too many failed credentials from this address for source "
            f"{source.name!r}; {refusal.public}",
        )

    def _shed_request(
        self,
        request: _Request,
        source: SourceConfig,
        provider: Provider[Any],
        exc: Overloaded,
        body: bytes,
    ) -> tuple[int, bytes, bytes, dict[str, str]]:
        """Answer 503 at once: the writer queue has no room for this call. Counted every
        time; recorded like any refusal (the rejection log's per-minute sample, counts for
        the rest), in the background so that the answer never waits for that write."""
        self._count(source, "shed")
        self.metrics.shed.labels(source.name).inc()
        retry = str(exc.retry_after)
        detail = f"the gateway is overloaded ({exc}); retry after {retry} s"
        rejection = Reject(503, "overloaded", "", detail, {"Retry-After": retry})
        task = asyncio.ensure_future(self._record_shed(request, source, provider, rejection, body))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        status, document, headers = error_answer(
            exc,
            retry_after=exc.retry_after,
            detail=detail,
            instance=request.path,
            request_id=request.id,
        )
        return status, document, _PROBLEM, headers

    async def _record_shed(
        self,
        request: _Request,
        source: SourceConfig,
        provider: Provider[Any],
        rejection: Reject,
        body: bytes,
    ) -> None:
        await self.pipeline.reject(
            source,
            provider,
            source.name,
            rejection,
            method=request.method,
            path=request.path,
            headers=request.headers,
            remote=request.remote,
            body=body,
            request_id=request.id,
        )

    def _count(self, source: SourceConfig | None, outcome: str) -> None:
        self.metrics.request(source.name if source else "-", outcome)

    async def _reject(
        self,
        request: _Request,
        source: SourceConfig | None,
        provider: Provider[Any] | None,
        name: str,
        exc: Reject,
        body: bytes,
        declared: int = 0,
        stored_body: bytes | None = None,
    ) -> None:
        self._count(source, "rejected")
        await self.pipeline.reject(
            source,
            provider,
            name,
            exc,
            method=request.method,
            path=request.path,
            headers=request.headers,
            remote=request.remote,
            body=body,
            declared=declared,
            stored_body=stored_body,
            request_id=request.id,
        )

    # -- Zaptec ------------------------------------------------------------------------

    async def _token(
        self, request: _Request, source: ZaptecSource, provider: Provider[Any], body: bytes
    ) -> tuple[int, bytes, bytes, dict[str, str]]:
        answer = self.issuer.answer(
            source,
            request.headers.get("content-type", ""),
            body,
            request.headers.get("authorization"),
        )
        if answer.failure is not None:
            described = str(answer.body["error_description"])
            rejection = Reject(
                answer.status,
                f"oauth-{answer.failure}",
                "",
                f"{described} ({answer.note})" if answer.note else described,
            )
            if answer.failure in ("invalid_grant", "invalid_client"):
                rejection = self._throttled(request, source, rejection)
            # Only a form parsed and redacted with certainty is kept; of anything else (a
            # JSON body, a form that does not parse strictly) its hash and size.
            is_form = (
                request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                == "application/x-www-form-urlencoded"
            )
            redacted = redact_form(body) if is_form else None
            await self._reject(
                request,
                source,
                provider,
                source.name,
                rejection,
                body,
                stored_body=b"" if redacted is None else redacted,
            )
            if rejection.status == 429:
                return (
                    429,
                    problem(
                        429,
                        rejection.code,
                        rejection.public,
                        instance=request.path,
                        request_id=request.id,
                    ),
                    _PROBLEM,
                    {"Cache-Control": "no-store", **rejection.headers},
                )
        encoded = json_answer(answer.status, answer.body)
        return answer.status, encoded.body, _JSON, answer.headers

    async def _authorize(
        self,
        source: ZaptecSource,
        provider: SessionAuthority,
        parsed: Parsed,
        event: InboundEvent,
        started: float,
    ) -> Answer:
        """Decide within the source's deadline (the use case lives in the service layer);
        answer in the provider's words."""
        with tracing.step("hookgate.decide", source=source.name):
            result = await self.sessions.start(
                source, provider.start_request(parsed), event, started
            )
        if tracing.TRACER is not None:
            tracing.note(
                **{
                    "hookgate.decision": result.decision.result,
                    "hookgate.fallback": result.decision.fallback,
                }
            )
        self._count(source, "accepted")
        if result.decision.session_id is not None:
            return provider.approve(result.decision.session_id)
        return provider.deny(source, result.decision.result, result.message)

    async def drain(self) -> None:
        """Wait for background audit writes and store the pending refusal counts (called
        on shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.sessions.drain()
        await self.pipeline.close()
