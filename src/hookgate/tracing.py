"""OpenTelemetry traces: one per event, from the provider's request through its commit,
its processing and every delivery attempt.

Off by default, and then free: every hook below starts with one read of the module's
`TRACER` (None) and returns. On, the ingress span's W3C `traceparent` is stored with the
event (`inbox.trace_context`), so processing and deliveries, which run later and maybe in
another process (`hookgate worker`), continue the same trace; a delivery carries it on
(the HTTP `traceparent` header of the attempt, and the CloudEvent's distributed-tracing
extension attribute `traceparent` naming the event's creation). An incoming
`traceparent` is honoured: the provider's trace becomes the parent.

The provider of spans is this module's own (not OpenTelemetry's global one), so several
gateways in one process (tests) and libraries' own tracing do not mix.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hookgate import __version__
from hookgate.config import TracingConfig

_PROPAGATOR = TraceContextTextMapPropagator()

# The tracer while tracing is on (None: off). Read by every hook.
TRACER: trace.Tracer | None = None
_PROVIDER: TracerProvider | None = None


class TracingUnavailable(Exception):
    """Tracing is asked for but cannot run (the `otlp` extra is not installed)."""


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.otlp_endpoint is None:
        return ConsoleSpanExporter(out=sys.stderr)
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise TracingUnavailable(
            "[tracing] otlp_endpoint needs the OTLP exporter: pip install 'hookgate[otlp]'"
        ) from None
    return OTLPSpanExporter(endpoint=config.otlp_endpoint, headers=dict(config.otlp_headers))


def install(config: TracingConfig, processor: SpanProcessor | None = None) -> bool:
    """Turn tracing on as `config` says (False, and nothing done, when it is off).
    `processor` replaces the exporter (the SDK's in-memory exporter, in tests)."""
    global TRACER, _PROVIDER  # noqa: PLW0603 - the one switch every hook reads
    if not config.enabled:
        return False
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": config.service_name, "service.version": __version__}
        ),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    provider.add_span_processor(processor or BatchSpanProcessor(_exporter(config)))
    _PROVIDER = provider
    TRACER = provider.get_tracer("hookgate", __version__)
    return True


def provider() -> TracerProvider | None:
    """The span provider while tracing is on (to add a processor to it)."""
    return _PROVIDER


def uninstall() -> None:
    """Flush what is pending and turn tracing off (on shutdown)."""
    global TRACER, _PROVIDER
    if _PROVIDER is not None:
        _PROVIDER.shutdown()
    TRACER, _PROVIDER = None, None


def traceparent(span: Span) -> str | None:
    """The W3C `traceparent` naming `span` (None when it is not recorded)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def _parent(value: str | None) -> otel_context.Context | None:
    if not value:
        return None
    return _PROPAGATOR.extract({"traceparent": value})


# -- the ingress request -------------------------------------------------------------------


def request_span(
    method: str, path: str, headers: Mapping[str, str], request_id: str
) -> Span | None:
    """The span of one provider call, child of its `traceparent` if it sent one; made
    current for the request's task (its commit span nests in it)."""
    tracer = TRACER
    if tracer is None:
        return None
    parent = _PROPAGATOR.extract(
        {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
    )
    span = tracer.start_span(
        f"{method} /hooks",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.path": path,
            "hookgate.request_id": request_id,
        },
    )
    otel_context.attach(trace.set_span_in_context(span))
    return span


def message_span(source: str, path: str, headers: Mapping[str, str]) -> Span | None:
    """The span of one Kafka message (consumer), child of its `traceparent` header if the
    producer sent one; made current for the message's task."""
    tracer = TRACER
    if tracer is None:
        return None
    parent = _PROPAGATOR.extract(
        {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}
    )
    span = tracer.start_span(
        f"consume {source}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={"hookgate.source": source, "hookgate.request_id": path},
    )
    otel_context.attach(trace.set_span_in_context(span))
    return span


def end_request(span: Span, status: int, source: str | None, event_id: str | None) -> None:
    """Close the request's span with its answer."""
    span.set_attribute("http.response.status_code", status)
    if source is not None:
        span.set_attribute("hookgate.source", source)
        span.update_name(f"POST /hooks/{source}")
    if event_id is not None:
        span.set_attribute("hookgate.event_id", event_id)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


class _Step:
    """A child span of the current one, as a context manager."""

    __slots__ = ("_attributes", "_name", "_span", "_token")

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        self._name = name
        self._attributes = attributes
        self._span: Span | None = None
        self._token: object = None

    def __enter__(self) -> None:
        tracer = TRACER
        if tracer is None:
            return
        self._span = tracer.start_span(self._name, attributes=self._attributes)
        self._token = otel_context.attach(trace.set_span_in_context(self._span))

    def __exit__(self, kind: Any, error: Any, _tb: Any) -> None:
        if self._span is None:
            return
        otel_context.detach(self._token)  # type: ignore[arg-type]
        if error is not None:
            self._span.set_status(Status(StatusCode.ERROR, str(error)))
        self._span.end()


class _Off:
    """What `step` returns while tracing is off: enters and leaves, nothing else."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        return None


_OFF = _Off()


def step(name: str, **attributes: Any) -> _Step | _Off:
    """A child span of the current one (the commit of a provider call); nothing at all
    while tracing is off."""
    if TRACER is None:
        return _OFF
    return _Step(name, attributes)


def note(**attributes: Any) -> None:
    """Attributes for the current span (the request's: its event id)."""
    if TRACER is None:
        return
    span = trace.get_current_span()
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key, value)


def current_traceparent() -> str | None:
    """The `traceparent` of the current span (the request's), to store with its event."""
    if TRACER is None:
        return None
    span = trace.get_current_span()
    return traceparent(span) if span.get_span_context().is_valid else None


# -- processing and delivery ---------------------------------------------------------------


def start_child(
    name: str,
    trace_context: str | None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Span | None:
    """A span continuing the stored trace of an event (None: tracing off, or the event
    came in untraced)."""
    tracer = TRACER
    if tracer is None or trace_context is None:
        return None
    return tracer.start_span(name, context=_parent(trace_context), kind=kind, attributes=attributes)


def finish(
    span: Span | None, error: str | None = None, attributes: Mapping[str, Any] | None = None
) -> None:
    """End a span from `start_child`, with its outcome."""
    if span is None:
        return
    for key, value in (attributes or {}).items():
        if value is not None:
            span.set_attribute(key, value)
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()
