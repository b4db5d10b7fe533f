"""Open-model HTTP/1.1 load generator (no coordinated omission), shared by the benchmarks.

Request i is due at t0 + i / rate whether or not earlier answers have come back, and its
latency is measured from that due time, not from when it was actually written: if the
server (or this generator) falls behind, the queueing shows up in the latency instead of
silently lowering the offered rate (Gil Tene's "coordinated omission"). A dispatcher
thread wakes at each due time (time.sleep is precise to ~0.1 ms; the event loop's own
timers only to 1 ms) and hands the due requests to the event loop; how late that was is
reported as `dispatch_lag_*` and is part of every latency.

Requests are pre-built raw HTTP/1.1 messages (bytes), sent over raw asyncio streams on
keep-alive connections. A connection is reused when one is idle; when every open
connection is busy a new one is opened, up to `max_connections`; past that, requests
wait for a free connection (and the wait counts in their latency). After the last due
time, answers get `grace` seconds; what is still outstanding then is cancelled and
counted as unfinished (latency +inf), so an overloaded server cannot stretch a run.

Every answer's status code is recorded per request (for correctness checks), and the
`Server-Timing: app;dur=<ms>` header is collected when the server sends one.

Several instances of one server: pass a list of ports; request i goes to
`ports[i % len(ports)]` (round robin), each port with its own connection pool of
`max_connections // len(ports)`, and the latencies are one merged sample.

Library use: `run_open(port, requests, rate, seconds, warmup)` (port: an int or a list).
CLI (replays a side file written by bench/ingest.py):
    .venv/bin/python bench/loadgen.py FILE --port 8000 --rate 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import re
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_TIMING = re.compile(rb"\r\nserver-timing:\s*app;dur=([\d.]+)", re.IGNORECASE)
_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]

UNFINISHED = 0  # status of a request that got no answer in time
FAILED = -1  # status of a request whose connection broke


def read_side_file(path: Path) -> list[bytes]:
    """Records written as `<length>\\n<raw request bytes>` (the format the wrk script reads)."""
    out: list[bytes] = []
    with path.open("rb") as handle:
        while line := handle.readline():
            out.append(handle.read(int(line)))
    return out


def write_side_file(path: Path, requests: Sequence[bytes]) -> None:
    """The inverse of `read_side_file`."""
    with path.open("wb") as handle:
        for raw in requests:
            handle.write(b"%d\n" % len(raw))
            handle.write(raw)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted `values` (inf entries stand for unfinished)."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(values)))
    return values[min(rank, len(values)) - 1]


@dataclass
class OpenResult:
    """One fixed-rate run; `statuses[i]` and `latencies_ms[i]` belong to request i."""

    rate: float
    seconds: float
    warmup: float
    statuses: list[int]
    latencies_ms: list[float]
    server_ms: list[float] = field(default_factory=list)
    connections: int = 0
    dispatch_lag_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def measured(self) -> range:
        """Indices of the requests after the warm-up (the ones the percentiles cover)."""
        return range(int(self.warmup * self.rate), len(self.statuses))

    def summary(self) -> dict[str, Any]:
        """Percentiles over the measured window; unfinished requests count as +inf."""
        window = self.measured
        lat = sorted(self.latencies_ms[i] for i in window)
        codes: dict[str, int] = {}
        for i in range(len(self.statuses)):
            key = {UNFINISHED: "unfinished", FAILED: "failed"}.get(
                self.statuses[i], str(self.statuses[i])
            )
            codes[key] = codes.get(key, 0) + 1
        finished = [v for v in lat if math.isfinite(v)]
        server = sorted(self.server_ms)
        lag = sorted(self.dispatch_lag_s[i] * 1000 for i in window)
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "requests": len(self.statuses),
            "measured": len(lat),
            "statuses": codes,
            "errors": self.errors,
            "unfinished_measured": len(lat) - len(finished),
            "p50_ms": percentile(lat, 50),
            "p90_ms": percentile(lat, 90),
            "p99_ms": percentile(lat, 99),
            "p999_ms": percentile(lat, 99.9),
            "max_ms": lat[-1] if lat else math.nan,
            "mean_ms": sum(finished) / len(finished) if finished else math.nan,
            "server_p50_ms": percentile(server, 50) if server else None,
            "server_p99_ms": percentile(server, 99) if server else None,
            "connections": self.connections,
            # How late the generator itself launched requests (included in the latencies).
            "dispatch_lag_p50_ms": percentile(lag, 50),
            "dispatch_lag_p99_ms": percentile(lag, 99),
            "dispatch_lag_max_ms": lag[-1] if lag else math.nan,
            "client_cpu_s": self.client_cpu_s,
            "wall_s": self.wall_s,
        }


class _Pool:
    """Keep-alive connections: reuse an idle one (the most recently used, as HTTP client
    pools do, skipping those the server has closed), else open one (up to `cap`), else
    wait for one to come back."""

    def __init__(self, host: str, port: int, cap: int) -> None:
        self.host = host
        self.port = port
        self.cap = cap
        self.idle: list[_Conn] = []
        self.opened = 0
        self.peak = 0
        self.waiters: deque[asyncio.Future[_Conn]] = deque()
        self.background: set[asyncio.Task[None]] = set()

    async def acquire(self) -> _Conn:
        while self.idle:
            conn = self.idle.pop()
            if not (conn[0].at_eof() or conn[1].is_closing()):
                return conn
            # The server closed it while idle (uvicorn's keep-alive timeout is 5 s).
            self.opened -= 1
            conn[1].close()
        if self.opened < self.cap:
            self.opened += 1
            self.peak = max(self.peak, self.opened)
            try:
                return await asyncio.open_connection(self.host, self.port)
            except BaseException:
                self.opened -= 1
                raise
        waiter: asyncio.Future[_Conn] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, conn: _Conn) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: _Conn) -> None:
        self.opened -= 1
        conn[1].close()
        if self.waiters:
            # Someone waits for a connection that will never come back: open a fresh one.
            task = asyncio.ensure_future(self._replace())
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def _replace(self) -> None:
        self.opened += 1
        try:
            conn = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.opened -= 1
            return
        self.release(conn)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _exchange(conn: _Conn, raw: bytes) -> tuple[int, float | None]:
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = _LENGTH.search(head)
    if length is None:
        raise ValueError("answer without Content-Length")
    await reader.readexactly(int(length.group(1)))
    timing = _TIMING.search(head)
    return status, float(timing.group(1)) if timing else None


async def open_model(
    port: int | Sequence[int],
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    warmup: float,
    *,
    host: str = "127.0.0.1",
    max_connections: int = 128,
    grace: float = 5.0,
) -> OpenResult:
    """Send `requests[i]` at t0 + i/rate for warmup + seconds; see the module docstring."""
    total = int(rate * (warmup + seconds))
    if total > len(requests):
        raise ValueError(f"{total} requests needed, {len(requests)} given")
    statuses = [UNFINISHED] * total
    latencies = [math.inf] * total
    server: list[float] = []
    errors: dict[str, int] = {}
    ports = [port] if isinstance(port, int) else list(port)
    pools = [_Pool(host, p, max(1, max_connections // len(ports))) for p in ports]
    measured_from = int(warmup * rate)
    clock = time.perf_counter
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        conn = None
        pool = pools[i % len(pools)]
        try:
            conn = await pool.acquire()
            status, inside = await _exchange(conn, requests[i])
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            statuses[i] = FAILED
            reason = f"{type(exc).__name__}: {exc}"[:120]
            errors[reason] = errors.get(reason, 0) + 1
            if conn is not None:
                pool.discard(conn)
            return
        except asyncio.CancelledError:
            if conn is not None:
                pool.discard(conn)
            raise
        latencies[i] = (clock() - due) * 1000
        statuses[i] = status
        if inside is not None and i >= measured_from:
            server.append(inside)
        pool.release(conn)

    loop = asyncio.get_running_loop()
    dispatched = asyncio.Event()
    stop = threading.Event()
    lags = [0.0] * total

    def launch(low: int, high: int) -> None:
        now = clock()
        for k in range(low, high):
            due = t0 + k / rate
            lags[k] = now - due
            task = asyncio.ensure_future(one(k, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if high == total:
            dispatched.set()

    def dispatcher() -> None:
        # A thread, because the event loop's timers have 1 ms granularity (asyncio rounds
        # the epoll timeout up, uvloop spins on sub-millisecond sleeps); time.sleep is
        # precise to ~0.1 ms, and call_soon_threadsafe wakes the loop at once.
        i = 0
        while i < total and not stop.is_set():
            now = clock()
            j = i
            while j < total and t0 + j / rate <= now:
                j += 1
            if j > i:
                loop.call_soon_threadsafe(launch, i, j)
                i = j
            else:
                time.sleep(t0 + i / rate - now)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # the dispatcher gets the GIL back quickly
    t0 = clock() + 0.05
    thread = threading.Thread(target=dispatcher, name="open-model-dispatcher", daemon=True)
    thread.start()
    try:
        if total:
            await dispatched.wait()
        end = t0 + total / rate
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=max(0.0, end + grace - clock()))
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(switch)
    wall = clock() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for pool in pools:
        pool.close()
    return OpenResult(
        rate=rate,
        seconds=seconds,
        warmup=warmup,
        statuses=statuses,
        latencies_ms=latencies,
        server_ms=server,
        connections=sum(pool.peak for pool in pools),
        dispatch_lag_s=lags,
        errors=errors,
        client_cpu_s=(cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        wall_s=wall,
    )


def run_open(
    port: int | Sequence[int],
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    warmup: float = 2.0,
    **options: Any,
) -> OpenResult:
    """`open_model` on a fresh event loop (uvloop when installed), with the GC paused."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    enabled = gc.isenabled()
    gc.disable()
    try:
        result: OpenResult = runner(open_model(port, requests, rate, seconds, warmup, **options))
        return result
    finally:
        if enabled:
            gc.enable()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="side file of raw requests")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--offset", type=int, default=0, help="first request of the file")
    parser.add_argument("--max-connections", type=int, default=128)
    args = parser.parse_args()
    requests = read_side_file(args.file)[args.offset :]
    result = run_open(
        args.port,
        requests,
        args.rate,
        args.seconds,
        args.warmup,
        max_connections=args.max_connections,
    )
    summary = result.summary()
    with contextlib.suppress(KeyError):
        summary["statuses"] = dict(sorted(summary["statuses"].items()))
    for key, value in summary.items():
        print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
