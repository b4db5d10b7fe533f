"""The edge's per-source admission: which requests it counts, and, on real sockets
through uvicorn with the edge's protocol, what a source at its cap is answered.

The application behind the protocol here is a small ASGI app that holds AMPECO calls
until the test lets them go, so that "requests in progress" is exact; the whole gateway
under a flood is in tests/e2e/test_admission.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn

from hookgate.config import AmpecoSource, ServerConfig, ZaptecSource, ZtlmentSource
from hookgate.ingress.edge import Admission, uvicorn_options
from hookgate.metrics import edge_shed_counts
from support.polling import until

SOURCES = [
    ZaptecSource(name="zaptec", username="u", password="p"),
    AmpecoSource(name="ampeco", secrets=["s"]),
    ZtlmentSource(name="ztl", secrets=["s"]),
]
CAP = 3


def _admission(cap: int = 2) -> Admission:
    return Admission.of(ServerConfig(ingest_in_flight_max=cap), SOURCES)


@pytest.mark.parametrize(
    ("target", "source"),
    [
        (b"/hooks/ampeco", "ampeco"),
        (b"/hooks/ampeco/", "ampeco"),
        (b"/hooks/ampeco?x=1", "ampeco"),
        (b"/hooks//ampeco", "ampeco"),  # the ingress drops leading slashes too
        (b"/hooks/amp%65co", "ampeco"),  # and percent-decodes
        (b"http://gateway.example/hooks/ztl", "ztl"),  # absolute form
        (b"/hooks/zaptec/session-start", None),  # Zaptec is never capped
        (b"/hooks/zaptec/oauth/token", None),
        (b"/hooks/unknown", None),
        (b"/healthz", None),
        (b"/api/v1/hooks/ampeco", None),
        (b"/hooks", None),
    ],
)
def test_the_source_a_request_is_counted_against(target: bytes, source: str | None) -> None:
    assert _admission().source_of(target) == source


def test_a_cap_of_zero_counts_nothing() -> None:
    assert _admission(cap=0).source_of(b"/hooks/ampeco") is None


def test_the_refusal_is_a_complete_problem_with_retry_after() -> None:
    admission = _admission()
    kept = admission.answer("ampeco", keep_alive=True)
    head, _, body = kept.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nretry-after: 1" in head
    assert b"connection: close" not in head
    assert f"content-length: {len(body)}".encode() in head
    assert json.loads(body)["type"] == "urn:hookgate:problem:overloaded"
    assert b"connection: close" in admission.answer("ampeco", keep_alive=False)


# -- on real sockets ------------------------------------------------------------------------


@dataclass
class _App:
    """Reads each body whole; holds AMPECO calls until `release`; answers the rest at once."""

    seen: list[tuple[str, bytes]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.seen.append((scope["path"], body))
        if scope["path"] == "/hooks/ampeco":
            if self.gate is None:
                self.loop, self.gate = asyncio.get_running_loop(), asyncio.Event()
            await self.gate.wait()
        status = 200 if scope["path"].startswith("/hooks/zaptec") else 202
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    def release(self) -> None:
        assert self.loop is not None and self.gate is not None
        self.loop.call_soon_threadsafe(self.gate.set)

    def count(self, path: str) -> int:
        return sum(1 for seen, _ in self.seen if seen == path)


@dataclass
class _Edge:
    app: _App
    port: int
    admission: Admission


@contextlib.contextmanager
def _edge(**server: Any) -> Iterator[_Edge]:
    app = _App()
    options = uvicorn_options(ServerConfig(ingest_in_flight_max=CAP, **server), SOURCES)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_config=None, loop="asyncio", **options)
    )
    sock = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    until(lambda: server.started or not thread.is_alive(), what="the server to start")
    try:
        yield _Edge(app, sock.getsockname()[1], options["http"].admission)
    finally:
        if app.gate is not None:
            app.release()
        server.should_exit = True
        thread.join(10)
        sock.close()
        _unread.clear()


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _request(path: str, body: bytes = b'{"n": 1}') -> bytes:
    return _head(path, len(body)) + body


def _connect(edge: _Edge, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", edge.port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


_unread: dict[int, bytes] = {}  # bytes read past an answer, by socket, for the next one


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response read from `sock`: status, headers (lower-case names), body."""
    data = _unread.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of an answer"
        rest += chunk
    if rest[length:]:
        _unread[sock.fileno()] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def test_a_source_at_its_cap_is_refused_before_its_body_and_others_are_served() -> None:
    with _edge() as edge:
        held = [_connect(edge, _request("/hooks/ampeco")) for _ in range(CAP)]
        until(lambda: edge.app.count("/hooks/ampeco") == CAP, what="the held calls")
        before = edge_shed_counts().get("ampeco", 0)

        # Only the head: the refusal comes before a byte of the body is sent.
        probe = _connect(edge, _head("/hooks/ampeco", 40))
        status, headers, body = _answer(probe)
        assert status == 503
        assert headers["content-type"] == "application/problem+json"
        assert headers["retry-after"] == "1"
        assert "connection" not in headers
        problem = json.loads(body)
        assert problem["type"] == "urn:hookgate:problem:overloaded"
        assert "ingest_in_flight_max" in problem["detail"]
        # The body is discarded as it arrives and the connection kept: the next request
        # on it is parsed and refused the same way.
        probe.sendall(b"x" * 40 + _request("/hooks/ampeco"))
        assert _answer(probe)[0] == 503
        assert edge.app.count("/hooks/ampeco") == CAP  # the app never saw them
        assert edge_shed_counts()["ampeco"] - before == 2

        # Another source has its own slots; Zaptec's routes have none.
        with _connect(edge, _request("/hooks/ztl")) as other:
            assert _answer(other)[0] == 202
        with _connect(edge, _request("/hooks/zaptec/session-start")) as zaptec:
            assert _answer(zaptec)[0] == 200

        # Once the held calls are answered their slots are free again.
        edge.app.release()
        for sock in held:
            assert _answer(sock)[0] == 202
            sock.close()
        probe.sendall(_request("/hooks/ampeco"))
        assert _answer(probe)[0] == 202
        until(lambda: edge.admission.in_flight["ampeco"] == 0, what="every slot back")
        probe.close()


def test_bodies_still_arriving_hold_no_slot() -> None:
    with _edge() as edge:
        # More than the cap of requests whose bodies never finish arriving (each head
        # admitted: the app asked for the body, so the client was told to go on) ...
        slow = []
        for _ in range(CAP + 2):
            head = _head("/hooks/ztl", 100).replace(
                b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"
            )
            sock = _connect(edge, head)
            assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
            sock.sendall(b"{")
            slow.append(sock)
        # ... do not keep a whole request of the same source out.
        with _connect(edge, _request("/hooks/ztl")) as sock:
            assert _answer(sock)[0] == 202
        for sock in slow:
            sock.close()


def test_a_connection_lost_mid_request_gives_its_slot_back() -> None:
    with _edge() as edge:
        held = [_connect(edge, _request("/hooks/ampeco")) for _ in range(CAP)]
        until(lambda: edge.admission.in_flight["ampeco"] == CAP, what="the slots taken")
        for sock in held:
            sock.close()
        until(lambda: edge.admission.in_flight["ampeco"] == 0, what="the slots given back")
        with _connect(edge, _head("/hooks/ampeco", 40)) as sock:
            sock.sendall(b"x" * 40)
            until(lambda: edge.app.count("/hooks/ampeco") == CAP + 1, what="a call admitted")


def test_a_refused_body_that_never_comes_closes_the_connection_without_a_second_answer() -> None:
    with _edge(body_timeout_seconds=0.3) as edge:
        held = [_connect(edge, _request("/hooks/ampeco")) for _ in range(CAP)]
        until(lambda: edge.app.count("/hooks/ampeco") == CAP, what="the held calls")
        with _connect(edge, _head("/hooks/ampeco", 40)) as sock:
            assert _answer(sock)[0] == 503
            # The body deadline closes the connection; nothing more is said on it.
            rest = b""
            while chunk := sock.recv(65536):
                rest += chunk
            assert rest == b""
        for sock in held:
            sock.close()


def test_a_refusal_behind_a_pipelined_request_is_answered_in_turn_then_closed() -> None:
    with _edge() as edge:
        held = [_connect(edge, _request("/hooks/ampeco")) for _ in range(CAP - 1)]
        # The last slot goes to the first of two pipelined requests on one connection.
        sock = _connect(edge, _request("/hooks/ampeco", b'{"n": 2}'))
        until(lambda: edge.app.count("/hooks/ampeco") == CAP, what="the held calls")
        before = edge_shed_counts().get("ampeco", 0)
        sock.sendall(_request("/hooks/ampeco", b'{"n": 3}'))
        until(lambda: edge_shed_counts().get("ampeco", 0) > before, what="the refusal counted")
        edge.app.release()
        assert _answer(sock)[0] == 202
        status, headers, body = _answer(sock)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert headers["connection"] == "close"
        assert json.loads(body)["type"] == "urn:hookgate:problem:overloaded"
        assert sock.recv(65536) == b""
        assert ("/hooks/ampeco", b'{"n": 3}') not in edge.app.seen
        for other in held:
            other.close()
        sock.close()
