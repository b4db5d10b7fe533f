"""What the HTTP edge's protocol (ingress/edge.py) costs per request, as a ratio.

Two servers run side by side, each uvicorn + uvloop serving the bare ceiling app
(bench/peers/ceiling.py: no parsing, no storage, so the connection layer is all that
differs): one with uvicorn's own httptools protocol, one with hookgate's `EdgeProtocol`.
A closed-loop client keeps `--connections` keep-alive connections busy with a POST of a
typical webhook's size (eight header fields, 300 bytes of body) against each server in
turn, for `--rounds` alternating rounds of `--seconds`, and reports requests per second of
each and their ratio. A machine shared with other work moves both; the ratio is the result.

    .venv/bin/python bench/edge.py --seconds 3 --rounds 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

_SERVE = """
import sys, uvicorn
sys.path.insert(0, {peers!r})
from ceiling import app
from hookgate.config import ServerConfig
from hookgate.ingress.edge import uvicorn_options
options = uvicorn_options(ServerConfig()) if {edge!r} else {{"http": "httptools"}}
uvicorn.run(app, host="127.0.0.1", port={port}, loop="uvloop", log_level="warning",
            access_log=False, lifespan="on", **options)
"""

_BODY = b'{"id": 12345, "type": "PAYMENT_OBJECT", "state": "PROCESSED", "pad": "' + b"x" * 240
_BODY += b'"}'
_REQUEST = (
    b"POST /hooks/ztlment HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench/1\r\n"
    b"Accept: */*\r\nContent-Type: application/json\r\nX-Request-Id: 0123456789abcdef\r\n"
    b"X-Payload-Signature: " + b"ab" * 64 + b"\r\nConnection: keep-alive\r\n"
    b"Content-Length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(edge: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    peers = str(Path(__file__).parent / "peers")
    code = _SERVE.format(peers=peers, edge=edge, port=port)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("bench server did not start") from None
            time.sleep(0.05)


async def _worker(port: int, until: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < until:
            writer.write(_REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(head[:60].decode())
            counts[0] += 1
    finally:
        writer.close()


async def _round(port: int, connections: int, seconds: float) -> float:
    counts = [0]
    until = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(_worker(port, until, counts) for _ in range(connections)))
    return counts[0] / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    plain, plain_port = _start(edge=False)
    edge, edge_port = _start(edge=True)
    rates: dict[str, list[float]] = {"httptools": [], "edge": []}
    try:
        asyncio.run(_round(plain_port, args.connections, 0.5))  # warm up both
        asyncio.run(_round(edge_port, args.connections, 0.5))
        for _ in range(args.rounds):
            rates["httptools"].append(
                asyncio.run(_round(plain_port, args.connections, args.seconds))
            )
            rates["edge"].append(asyncio.run(_round(edge_port, args.connections, args.seconds)))
    finally:
        for proc in (plain, edge):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    plain_rate = statistics.median(rates["httptools"])
    edge_rate = statistics.median(rates["edge"])
    print(f"httptools  {plain_rate:8.0f} req/s  (rounds: {[round(r) for r in rates['httptools']]})")
    print(f"edge       {edge_rate:8.0f} req/s  (rounds: {[round(r) for r in rates['edge']]})")
    print(f"edge / httptools = {edge_rate / plain_rate:.3f}")


if __name__ == "__main__":
    main()
