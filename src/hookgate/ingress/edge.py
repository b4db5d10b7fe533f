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
  request is parsed and answered as the HTTP/1.1 request it also is;
- each ingest source (every source but Zaptec's) has at most `ingest_in_flight_max`
  requests being handled at once: beyond it a request is answered 503 + Retry-After as
  soon as its head is parsed, its body discarded unread, so that a flood costs the event
  loop little and charging authorization keeps its turns
  (docs/adr/0023-per-source-admission-at-the-edge.md).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import urllib.parse
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookgate.config import ServerConfig, SourceConfig, ZaptecSource
from hookgate.ingress.problems import problem
from hookgate.metrics import count_edge_shed, count_protocol_error

log = logging.getLogger("hookgate.edge")

_IDLE, _HEAD, _BODY, _DONE = range(4)
# Files the gateway may hold open besides client connections (database, logs, listeners).
_FILES_BESIDES_CONNECTIONS = 256
# Seconds a source refused at its in-flight cap is told to wait: a slot frees within
# milliseconds, and a second is the least Retry-After can say.
SHED_RETRY_AFTER = 1


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
    status: int, code: str, detail: str, extra: Sequence[tuple[bytes, bytes]] = ()
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
                    *extra,
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


class Admission:
    """How many requests of each capped source are being handled, against one cap each.

    A request is checked against the cap when its head is parsed, counted once its body
    has arrived (from then on it costs the event loop: verification, parse, write,
    answer), and released when its answer is complete or its connection is lost. A body
    still arriving is not counted, so that clients trickling bodies cannot hold a
    source's slots (their bytes are bounded by max_buffered_body_bytes, their time by the
    body deadline); requests whose heads passed together may take the count a little
    over the cap. One per server (event loop): nothing locks."""

    def __init__(self, cap: int, capped: Iterable[str]) -> None:
        self.cap = cap
        self.capped = frozenset(capped) if cap else frozenset()
        self.in_flight: dict[str, int] = dict.fromkeys(self.capped, 0)
        self._answers: dict[tuple[str, bool], bytes] = {}

    @classmethod
    def of(cls, server: ServerConfig, sources: Sequence[SourceConfig]) -> Admission:
        """Every source but Zaptec's is capped: Zaptec's calls decide whether a car charges
        (its session end is a handful per charge), the others are bulk notifications."""
        capped = (s.name for s in sources if not isinstance(s, ZaptecSource))
        return cls(server.ingest_in_flight_max, capped)

    def source_of(self, target: bytes) -> str | None:
        """The capped source a request target (`/hooks/{source}[/...]`) addresses, or None.
        Read as the ingress routes it: percent-decoded, leading slashes dropped."""
        if not self.capped:
            return None
        if not target.startswith(b"/"):
            try:  # absolute form: http://host/hooks/...
                target = httptools.parse_url(target).path or b""
            except httptools.HttpParserInvalidURLError:
                return None
        if not target.startswith(b"/hooks/"):
            return None
        name = target[7:].lstrip(b"/").split(b"?", 1)[0].split(b"/", 1)[0].decode("latin-1")
        if "%" in name:
            name = urllib.parse.unquote(name).strip("/").split("/", 1)[0]
        return name if name in self.capped else None

    def full(self, source: str) -> bool:
        """Whether `source` has as many requests being handled as its cap allows."""
        return self.in_flight[source] >= self.cap

    def take(self, source: str) -> None:
        self.in_flight[source] += 1

    def release(self, source: str) -> None:
        self.in_flight[source] -= 1

    def detail(self, source: str) -> str:
        return (
            f"source {source!r} has {self.cap} requests in progress, the most the gateway "
            f"handles at once ([server] ingest_in_flight_max); retry after "
            f"{SHED_RETRY_AFTER} s"
        )

    def answer(self, source: str, keep_alive: bool) -> bytes:
        """The complete 503 for a refused request of `source` (built once per source)."""
        raw = self._answers.get((source, keep_alive))
        if raw is None:
            body = problem(503, "overloaded", self.detail(source), instance=f"/hooks/{source}")
            raw = b"".join(
                [
                    b"HTTP/1.1 503 Service Unavailable\r\n",
                    b"content-type: application/problem+json\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"retry-after: " + str(SHED_RETRY_AFTER).encode() + b"\r\n",
                    b"" if keep_alive else b"connection: close\r\n",
                    b"\r\n",
                    body,
                ]
            )
            self._answers[(source, keep_alive)] = raw
        return raw


class _Idle:
    """The connections that could be closed to make room, oldest idle first."""

    def __init__(self) -> None:
        self.order: OrderedDict[EdgeProtocol, None] = OrderedDict()


_idle_by_server: weakref.WeakKeyDictionary[Any, _Idle] = weakref.WeakKeyDictionary()


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above; see the module docstring."""

    limits: ClassVar[EdgeLimits]
    admission: ClassVar[Admission]

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
        self._discarding = False  # the body of a request refused at admission
        self._admitting: str | None = None  # the capped source of the body being received
        self._held: dict[Any, str] = {}  # admitted requests not yet answered: cycle -> source
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
        for source in self._held.values():
            self.admission.release(source)
        self._held.clear()
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
        if self._discarding:
            pass  # refused at admission: answered already
        elif cycle is None or not cycle.response_started:
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
        self._discarding = False
        self._admitting = None
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
            source = self.admission.source_of(self.url)
            if source is None or (self.parser.should_upgrade() and not self._dropped_upgrade):
                super().on_headers_complete()
                return
            if not self.admission.full(source):
                super().on_headers_complete()
                self._admitting = source  # counted once its body has arrived
                return
            count_edge_shed(source)
            if self.cycle is None or self.cycle.response_complete:
                self._shed_now(source)
                return
            # Behind a pipelined request still running: answered in its turn, then closed.
            refusal = _refusal(
                503,
                "overloaded",
                self.admission.detail(source),
                [(b"retry-after", str(SHED_RETRY_AFTER).encode())],
            )
        else:
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

    def _hold(self, source: str) -> None:
        """Count this request against `source` until its answer is complete."""
        cycle = self.cycle
        answered = cycle.on_response
        self._held[cycle] = source
        self.admission.take(source)

        def release() -> None:
            if self._held.pop(cycle, None) is not None:
                self.admission.release(source)
            answered()

        cycle.on_response = release

    def _shed_now(self, source: str) -> None:
        """Answer 503 at once, before the app, the body, its verification or its parse;
        the body is then discarded as it arrives (within the body deadline) and the
        connection kept, so that the client can retry on it after Retry-After."""
        keep = self.parser.should_keep_alive() and not self.expect_100_continue
        self.transport.write(self.admission.answer(source, keep))
        if not keep:
            self._close()
            return
        self._discarding = True
        self._idle.order[self] = None

    def on_body(self, body: bytes) -> None:
        if not self._discarding:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._dropped_upgrade:
            return  # the parser skipped the body; it comes through the fresh parser
        if self._discarding:
            self._discarding = False
            if not self._closed:
                self._become_idle()
            return
        super().on_message_complete()
        source, self._admitting = self._admitting, None
        if source is not None and self.cycle is not None and not self.cycle.response_complete:
            self._hold(source)
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


def edge_protocol(server: ServerConfig, sources: Sequence[SourceConfig] = ()) -> type[EdgeProtocol]:
    """The protocol class for uvicorn's `http` setting, bound to `server`'s limits and the
    admission of `sources`."""
    return type(
        "HookgateProtocol",
        (EdgeProtocol,),
        {"limits": EdgeLimits.of(server), "admission": Admission.of(server, sources)},
    )


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


def uvicorn_options(server: ServerConfig, sources: Sequence[SourceConfig] = ()) -> dict[str, Any]:
    """uvicorn.Config keyword arguments that put the edge limits in place, with the
    per-source admission of `sources` (the process's open-file limit is raised to fit
    `max_connections` on the way, see fit_file_limit)."""
    fit_file_limit(server.max_connections)
    return {
        "http": edge_protocol(server, sources),
        # The protocol keeps its own idle deadline; uvicorn's keep-alive setting agrees.
        "timeout_keep_alive": server.idle_timeout_seconds,
        "backlog": min(2048, server.max_connections),
    }
