"""One trace per event: the provider's request (child of its own `traceparent`), the
commit, the processing and every delivery attempt, recorded by the OpenTelemetry SDK's
in-memory exporter; the receiver sees the attempt's `traceparent` and the CloudEvent
carries the event's."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from hookgate import tracing
from hookgate.emulate import easypark
from hookgate.emulate.base import encode
from hookgate.timeutil import utcnow
from support.delivery_receiver import Receiver, serve
from support.gateway import EASYPARK_PASSWORD, EASYPARK_USER, Running, base_config
from support.polling import until

pytestmark = pytest.mark.backends("sqlite", "postgresql")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def erp() -> Iterator[Receiver]:
    yield from serve(Receiver(script=[500]))  # the first attempt fails, the second lands


@pytest.fixture
def traced(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, erp: Receiver
) -> Iterator[tuple[Running, InMemorySpanExporter]]:
    data = base_config(
        tmp_path / "hookgate.db",
        tracing={"enabled": True, "service_name": "hookgate-test"},
        processing={"poll_interval_ms": 20},
        destinations=[
            {
                "name": "erp",
                "kind": "http",
                "url": erp.url,
                "sources": ["easypark"],
                "initial_backoff_seconds": 0.05,
                "max_backoff_seconds": 0.05,
            }
        ],
    )
    running = make_gateway(data)
    provider = tracing.provider()
    assert provider is not None
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield running, memory


def _auth() -> str:
    return "Basic " + base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()


def _spans(memory: InMemorySpanExporter, trace_id: int, count: int) -> list[ReadableSpan]:

    def finished() -> list[ReadableSpan] | None:
        spans = [s for s in memory.get_finished_spans() if s.context.trace_id == trace_id]
        return spans if len(spans) >= count else None

    return until(finished, f"{count} spans of the trace")


def _post(running: Running, parking_id: int, headers: dict[str, str]) -> httpx.Response:
    body = encode(easypark.transaction(parking_id, end=utcnow().replace(microsecond=0)))
    return httpx.post(
        f"{running.url}/hooks/easypark",
        content=body,
        headers={"Authorization": _auth(), "Content-Type": "application/json", **headers},
        timeout=10,
    )


def test_one_trace_from_the_request_through_commit_processing_and_each_attempt(
    traced: tuple[Running, InMemorySpanExporter], erp: Receiver
) -> None:
    running, memory = traced
    answer = _post(running, 9001, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert answer.status_code == 200
    spans = _spans(memory, int(TRACE_ID, 16), 5)
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    [request] = by_name["POST /hooks/easypark"]
    assert request.kind == SpanKind.SERVER
    assert request.parent is not None and request.parent.span_id == int(PARENT_ID, 16)
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["hookgate.request_id"] == answer.headers["x-request-id"]
    event_id = request.attributes["hookgate.event_id"]
    [commit] = by_name["hookgate.commit"]
    assert commit.parent is not None and commit.parent.span_id == request.context.span_id
    [process] = by_name["hookgate.process"]
    assert process.parent is not None and process.parent.span_id == request.context.span_id
    assert process.attributes["hookgate.event_id"] == event_id
    attempts = sorted(
        by_name["hookgate.deliver erp"], key=lambda s: s.attributes["hookgate.attempt"]
    )
    assert [a.attributes["hookgate.attempt"] for a in attempts] == [1, 2]
    assert attempts[0].status.status_code == StatusCode.ERROR
    assert attempts[1].attributes["hookgate.outcome"] == "delivered"
    for attempt in attempts:
        assert attempt.kind == SpanKind.CLIENT
        assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    # The receiver saw each attempt's own span, and the event's creation in the envelope.
    seen = [r.headers["traceparent"] for r in erp.received]
    assert seen == [f"00-{TRACE_ID}-{a.context.span_id:016x}-01" for a in attempts]
    envelope = msgspec.json.decode(erp.received[-1].body)
    assert envelope["traceparent"] == f"00-{TRACE_ID}-{request.context.span_id:016x}-01"
    assert envelope["id"] == event_id
    [(stored,)] = running.rows("SELECT trace_context FROM inbox WHERE id = ?", event_id)
    assert stored == envelope["traceparent"]


def test_an_untraced_request_starts_its_own_trace_and_a_refusal_is_traced_too(
    traced: tuple[Running, InMemorySpanExporter], erp: Receiver
) -> None:
    running, memory = traced
    assert _post(running, 9002, {}).status_code == 200
    refused = httpx.post(
        f"{running.url}/hooks/easypark",
        content=b"{}",
        headers={"Authorization": "Basic bm86bm8=", "Content-Type": "application/json"},
        timeout=10,
    )
    assert refused.status_code == 401

    def server_spans() -> list[ReadableSpan] | None:
        servers = [s for s in memory.get_finished_spans() if s.kind == SpanKind.SERVER]
        return servers if len(servers) >= 2 else None

    servers = until(server_spans, "two server spans")
    accepted, rejected = sorted(servers, key=lambda s: s.start_time or 0)
    assert accepted.parent is None
    assert len(_spans(memory, accepted.context.trace_id, 4)) >= 4  # commit, process, deliver
    assert rejected.attributes["http.response.status_code"] == 401
    assert rejected.attributes["hookgate.request_id"] == refused.headers["x-request-id"]
    assert refused.json()["request_id"] == refused.headers["x-request-id"]


def test_tracing_settings_are_checked() -> None:
    from hookgate.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="otlp_endpoint"):
        parse_config({"tracing": {"enabled": True, "otlp_endpoint": "collector:4318"}}, env={})
    config = parse_config({}, env={})
    assert not config.tracing.enabled
    assert not tracing.install(config.tracing)
    assert tracing.TRACER is None and tracing.provider() is None


def test_a_charging_decision_is_traced_with_its_result(
    traced: tuple[Running, InMemorySpanExporter],
) -> None:
    import asyncio

    from hookgate.emulate.zaptec import ZaptecEmulator
    from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER

    running, memory = traced

    async def start() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            zaptec = ZaptecEmulator(
                client, running.url, "zaptec-allow", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD
            )
            [start, end] = await zaptec.session(token="CAFE0001")
            assert start.status == 200 and end.status == 200

    asyncio.run(start())

    def decided() -> list[ReadableSpan] | None:
        spans = list(memory.get_finished_spans())
        names = {s.name for s in spans}
        return spans if {"hookgate.decide", "hookgate.commit"} <= names else None

    spans = until(decided, "the decision's and the commit's spans")
    decide = [s for s in spans if s.name == "hookgate.decide"]
    commits = [s for s in spans if s.name == "hookgate.commit"]
    [decision] = decide
    request = next(s for s in spans if s.context.span_id == decision.parent.span_id)
    assert request.name == "POST /hooks/zaptec-allow"
    assert request.attributes["hookgate.decision"] == "ALLOWED"
    assert request.attributes["hookgate.fallback"] is False
    assert commits[0].attributes["kind"] == "session_end"


def test_spans_are_exported_over_otlp_http() -> None:
    """The `otlp` extra's exporter posts protobuf batches to the configured endpoint."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from hookgate.config import TracingConfig

    received: list[tuple[str, str, bytes]] = []
    keys: list[str] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, self.headers["content-type"], body))
            keys.append(self.headers.get("x-k", ""))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        config = TracingConfig(enabled=True, otlp_endpoint=endpoint, otlp_headers={"x-k": "v"})
        assert tracing.install(config)
        span = tracing.start_child(
            "hookgate.process", f"00-{TRACE_ID}-{PARENT_ID}-01", attributes={"a": 1}
        )
        tracing.finish(span)
        tracing.uninstall()  # flushes the batch
        [(path, content_type, body)] = received
        assert path == "/v1/traces" and content_type == "application/x-protobuf"
        assert b"hookgate.process" in body and bytes.fromhex(TRACE_ID) in body
        assert keys == ["v"]  # otlp_headers (an API key) go with every export
    finally:
        tracing.uninstall()
        server.shutdown()
        server.server_close()
