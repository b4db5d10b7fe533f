"""The HTTP/1.1 connection layer under the ASGI app: limits uvicorn leaves open.

uvicorn's httptools protocol (the fast parser `hookgate serve` runs on) accepts header
blocks of any size, arms its keep-alive timer only after a first response (a connection
that never sends a byte stays open for ever), has no deadline for a request's head or body,
and stops parsing at an `Upgrade` it does not support, which loses the body of every
request from a client that offers `Upgrade: h2c` (Java's HttpClient does by default).
`edge_protocol` returns a subclass that closes those gaps at the connection, where the
bytes arrive (docs/adr/0010-http-edge-limits.md):

- the request line and header fields are capped in bytes and in number (431);
- a request's head and its body must each arrive within a deadline (408 and close);
- a connection with no request in progress is closed after an idle timeout, from the
  moment it is accepted;
- at most `max_connections` are open: a newcomer over the cap displaces the connection that
  has been idle longest, or gets 503 when every connection is busy;
- an upgrade to anything but WebSocket is ignored, as RFC 9110 section 7.8 allows: the
  request is parsed and answered as the HTTP/1.1 request it also is.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookgate.config import ServerConfig
from hookgate.ingress.problems import problem
from hookgate.metrics import count_protocol_error

log = logging.getLogger("hookgate.edge")

_IDLE, _HEAD, _BODY, _DONE = range(4)
# Files the gateway may hold open besides client connections (database, logs, listeners).
_FILES_BESIDES_CONNECTIONS = 256


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The `[server]` settings the connection layer enforces."""

    max_connections: int
    max_header_bytes: int
    max_header_count: int
    header_timeout: float
    body_timeout: float
    idle_timeout: float

    @classmethod
    def of(cls, server: ServerConfig) -> EdgeLimits:
        return cls(
            server.max_connections,
            server.max_header_bytes,
            server.max_header_count,
            server.header_timeout_seconds,
            server.body_timeout_seconds,
            server.idle_timeout_seconds,
        )


def _raw_answer(status: int, code: str, detail: str, extra: bytes = b"") -> bytes:
    """A complete problem+json response that closes the connection."""
    body = problem(status, code, detail)
    return b"".join(
        [
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode(),
            b"content-type: application/problem+json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


def _refusal(
    status: int, code: str, detail: str
) -> Callable[[Any, Any, Callable[[Any], Awaitable[None]]], Awaitable[None]]:
    """An ASGI app answering one problem and closing (for a head that parsed but is refused)."""
    body = problem(status, code, detail)

    async def app(_scope: Any, _receive: Any, send: Callable[[Any], Awaitable[None]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class _Idle:
    """The connections that could be closed to make room, oldest idle first."""

    def __init__(self) -> None:
        self.order: OrderedDict[EdgeProtocol, None] = OrderedDict()


_idle_by_server: weakref.WeakKeyDictionary[Any, _Idle] = weakref.WeakKeyDictionary()


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; see the module docstring."""

    limits: ClassVar[EdgeLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _IDLE
        # One lazily moved timer per connection: arming a deadline only records when and
        # what; the timer is rescheduled when it fires early (a request's phases move the
        # deadline several times, and a new timer each time would cost more than the
        # request's parsing).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._due: float | None = None
        self._expired: Callable[[], None] = self._close
        self._head_bytes = 0  # counted from the parser callbacks
        self._head_seen = 0  # counted from the bytes fed while the head is incomplete
        self._head_count = 0
        self._began_here = False
        self._dropped_upgrade = False
        self._replaying = False
        self._closed = False
        self._parse_error = ""
        idle = _idle_by_server.get(self.server_state)
        if idle is None:
            idle = _idle_by_server[self.server_state] = _Idle()
        self._idle = idle

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            log.warning("connection refused: %d connections open", len(self.connections) - 1)
            transport.write(
                _raw_answer(
                    503,
                    "too-many-connections",
                    "the server has too many open connections; retry later",
                    b"retry-after: 1\r\n",
                )
            )
            self._close()
            return
        self._become_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._idle.order.pop(self, None)
        self._stop_timer()
        super().connection_lost(exc)

    def _stop_timer(self) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _make_room(self) -> bool:
        """Close the connection idle longest (never this one); False when none is idle."""
        while self._idle.order:
            victim, _ = self._idle.order.popitem(last=False)
            if victim is not self and not victim._closed:
                victim._close()
                return True
        return False

    def _close(self) -> None:
        self._closed = True
        self._idle.order.pop(self, None)
        self._stop_timer()
        if not self.transport.is_closing():
            self.transport.close()

    # -- deadlines -----------------------------------------------------------------------

    def _cancel_deadline(self) -> None:
        self._due = None

    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        due = self.loop.time() + seconds
        self._due, self._expired = due, expired
        if self._timer is None or self._timer_at > due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(due, self._fire)
            self._timer_at = due

    def _fire(self) -> None:
        self._timer = None
        if self._due is None or self._closed:
            return
        if self.loop.time() < self._due:
            self._timer = self.loop.call_at(self._due, self._fire)
            self._timer_at = self._due
            return
        self._due = None
        self._expired()

    def _become_idle(self) -> None:
        """No request in progress: displaceable, and closed after the idle timeout."""
        self._phase = _IDLE
        self._idle.order[self] = None
        self._idle.order.move_to_end(self)
        self._arm(self.limits.idle_timeout, self._close)

    def _head_expired(self) -> None:
        log.info("request head not received within %ss: closing", self.limits.header_timeout)
        self.transport.write(
            _raw_answer(
                408,
                "header-timeout",
                f"the request head did not arrive within {self.limits.header_timeout:g} s",
            )
        )
        self._close()

    def _body_expired(self) -> None:
        log.info("request body not received within %ss: closing", self.limits.body_timeout)
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            if cycle is not None:
                cycle.disconnected = True  # the app's receive() says so; its send() is void
            self.transport.write(
                _raw_answer(
                    408,
                    "body-timeout",
                    f"the request body did not arrive within {self.limits.body_timeout:g} s",
                )
            )
        self._close()

    def _request_done(self) -> bool:
        """The current request has been answered (the app runs no longer)."""
        return self.cycle is None or bool(self.cycle.response_complete)

    # -- bytes ---------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._unset_keepalive_if_required()
        self._began_here = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._closed:
                return
            self._parse_error = str(exc)
            self.send_400_response("Invalid HTTP request received.")
            self._close()
            return
        except httptools.HttpParserUpgrade as exc:
            if self._dropped_upgrade:
                self._parse_without_upgrade(data[exc.args[0] :])
            elif self._should_upgrade():
                self._idle.order.pop(self, None)
                self._stop_timer()
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._phase == _HEAD and not self._closed:
            # Bytes of a head still incomplete: every byte of a chunk after the one the
            # request began in belongs to it; the first chunk counts what was parsed.
            self._head_seen = self._head_bytes if self._began_here else self._head_seen + len(data)
            if self._head_seen > self.limits.max_header_bytes:
                self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        """A request the parser refused: counted, logged, and answered as problem+json
        instead of uvicorn's text/plain (the parser's reason says what to fix)."""
        reason = self._parse_error or msg
        count_protocol_error("bad-request")
        peer = self.client[0] if self.client else None
        log.warning("invalid HTTP request refused: %s (client %s)", reason, peer)
        self.transport.write(
            _raw_answer(400, "bad-request", f"the request is not valid HTTP/1.1: {reason}")
        )
        self.transport.close()

    def _refuse_head(self) -> None:
        count_protocol_error("header-too-large")
        log.info("request head over %d bytes: refused", self.limits.max_header_bytes)
        self.transport.write(
            _raw_answer(
                431,
                "header-too-large",
                f"the request line and header fields exceed {self.limits.max_header_bytes} bytes",
            )
        )
        self._close()

    def _parse_without_upgrade(self, rest: bytes) -> None:
        """Go on parsing the request as plain HTTP/1.1 after an upgrade we ignore.

        The parser skips the body of a request that asks for an upgrade and stops; a fresh
        parser is fed the same head without the upgrade (its callbacks ignored: the request
        is already under way), then the rest of the bytes, which carry the body."""
        self._dropped_upgrade = False
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        lines = [self.scope["method"].encode("ascii"), b" ", self.url, b" HTTP/1.1\r\n"]
        for name, value in self.headers:
            kept = value
            if name in (b"upgrade", b"http2-settings"):
                continue
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",")]
                kept = b", ".join(
                    t for t in tokens if t and t.lower() not in (b"upgrade", b"http2-settings")
                )
                if not kept:
                    continue
            lines += [name, b": ", kept, b"\r\n"]
        lines.append(b"\r\n")
        self._replaying = True
        try:
            self.parser.feed_data(b"".join(lines))
        finally:
            self._replaying = False
        if rest:
            self.data_received(rest)

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._replaying:
            return
        super().on_message_begin()
        self._began_here = True
        self._head_bytes = self._head_seen = self._head_count = 0
        self._phase = _HEAD
        self._arm(self.limits.header_timeout, self._head_expired)

    def on_url(self, url: bytes) -> None:
        if not self._replaying:
            self._head_bytes += len(url)
            self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, inlined (it runs for every header field of every request).
        if self._replaying:
            return
        self._head_bytes += len(name) + len(value) + 4
        self._head_count += 1
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._replaying:
            # The replayed head of a request already under way (see _parse_without_upgrade).
            self._replaying = False
            return
        self._idle.order.pop(self, None)
        self._phase = _BODY
        self._arm(self.limits.body_timeout, self._body_expired)
        refusal = None
        if self._head_count > self.limits.max_header_count:
            refusal = _refusal(
                431,
                "too-many-headers",
                f"the request has more than {self.limits.max_header_count} header fields",
            )
        elif self._head_bytes > self.limits.max_header_bytes:
            refusal = _refusal(
                431,
                "header-too-large",
                f"the request line and header fields exceed {self.limits.max_header_bytes} bytes",
            )
        elif self.parser.should_upgrade():
            upgrade = self._get_upgrade()
            if upgrade is not None and upgrade != b"websocket":
                # Not ours to switch to (RFC 9110 7.8): answer over HTTP/1.1 instead.
                self._dropped_upgrade = True
        if refusal is None:
            super().on_headers_complete()
            return
        count_protocol_error(
            "too-many-headers"
            if self._head_count > self.limits.max_header_count
            else "header-too-large"
        )
        app = self.app
        self.app = refusal
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        if self._dropped_upgrade:
            return  # the parser skipped the body; it comes through the fresh parser
        super().on_message_complete()
        if self._closed or self._phase == _IDLE:
            return
        if self._request_done():
            self._become_idle()
        else:
            self._phase = _DONE
            self._cancel_deadline()

    def on_response_complete(self) -> None:
        # uvicorn's, but with this protocol's idle deadline instead of a new keep-alive
        # timer per response.
        self.server_state.total_requests += 1
        if self.transport.is_closing() or self._closed:
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return  # a pipelined request has just started: it is not idle
        if self._phase in (_DONE, _IDLE):
            self._become_idle()
        elif self._phase == _BODY:
            # Answered before the body was read (refused): what arrived of it is dropped,
            # the rest is discarded as it arrives, still within the body deadline, and
            # meanwhile the connection may be displaced.
            if self.cycle is not None:
                self.cycle.body = bytearray()
            self._idle.order[self] = None


def edge_protocol(server: ServerConfig) -> type[EdgeProtocol]:
    """The protocol class for uvicorn's `http` setting, bound to `server`'s limits."""
    return type("HookgateProtocol", (EdgeProtocol,), {"limits": EdgeLimits.of(server)})


def fit_file_limit(max_connections: int) -> int:
    """Raise this process's open-file limit (soft, up to the hard one) so that
    `max_connections` sockets fit beside the files the gateway keeps open; warn when they
    cannot (new connections would then fail to be accepted before the cap refuses them).
    Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _FILES_BESIDES_CONNECTIONS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < wanted:
        log.warning(
            "the open-file limit (%d) is below max_connections (%d) plus %d: lower "
            "[server] max_connections or raise the limit (ulimit -n)",
            soft,
            max_connections,
            _FILES_BESIDES_CONNECTIONS,
        )
    return soft


def uvicorn_options(server: ServerConfig) -> dict[str, Any]:
    """uvicorn.Config keyword arguments that put the edge limits in place (the process's
    open-file limit is raised to fit `max_connections` on the way, see fit_file_limit)."""
    fit_file_limit(server.max_connections)
    return {
        "http": edge_protocol(server),
        # The protocol keeps its own idle deadline; uvicorn's keep-alive setting agrees.
        "timeout_keep_alive": server.idle_timeout_seconds,
        "backlog": min(2048, server.max_connections),
    }
