"""Rejection-flood benchmark: valid EasyPark posts at a fixed rate, once alone and once while
unauthenticated clients flood the edge with refused calls; the p99 of the valid posts and
what the flood made the gateway write (database, server log), side by side in one run.

    .venv/bin/python bench/rejection_flood.py [--seconds 15] [--rate 500] [--spread]
        [--flood-rate 0] [--out rejection_flood]
        [--flood-connections 4] [--variant NAME=SRC_DIR ...]

Each variant is a source tree whose `src/` is put first on PYTHONPATH (default: this
checkout, `current`); to compare with an older version, `git worktree add /tmp/before
<commit>` and pass `--variant before=/tmp/before`. Per variant two phases run one after
the other, each on a fresh SQLite database (hookgate as shipped, workers in process,
`[logging] level = "info"`):

- `quiet`: valid EasyPark posts offered at `--rate` by the open-model generator
  (bench/loadgen.py) for `--seconds`;
- `flood`: the same, while `--flood-connections` keep-alive connections post, as fast as
  the server answers, 1,000,000-byte bodies to `/hooks/ampeco` with `X-Signature:
  deadbeef` (no secret can match it) and, every tenth call, a 65,000-byte unknown source
  name; `--flood-rate` fixes the calls per second (the same load for every variant), and
  `--spread` models a flood from many addresses (the per-address throttle of failed
  credentials turned off). The flood stops with the valid load (bounded in time).

Reported per phase: p50/p99 of the valid posts, how many were acknowledged, flood calls
answered, growth of the database (+WAL) and of the server log. Writes
bench/results/rejection_flood.json and bench/results/rejection_flood.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import EASYPARK, ROOT, Hookgate, _basic, _raw, free_port, wait_port
from loadgen import run_open

from hookgate.emulate.base import encode
from hookgate.emulate.easypark import transaction

RESULTS = ROOT / "bench" / "results"
MB = 1_000_000
FLOOD_BODY = b'{"pad":"' + b"x" * (MB - 10) + b'"}'


def _valid(port: int, count: int) -> list[bytes]:
    """Valid EasyPark parking transactions (HTTP Basic), one per parking id."""
    auth = [("Authorization", _basic(*EASYPARK))]
    end = datetime.now(UTC)
    return [
        _raw(port, "/hooks/easypark", auth, encode(transaction(3_000_000_000 + i, end=end)))
        for i in range(count)
    ]


def _flood_requests(port: int) -> list[bytes]:
    big = (
        b"POST /hooks/ampeco HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Content-Type: application/json\r\nX-Signature: deadbeef\r\n"
        b"Content-Length: %d\r\n\r\n" % (port, len(FLOOD_BODY))
    ) + FLOOD_BODY
    name = b"n" * 65_000
    url = (
        b"POST /hooks/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: 2\r\n\r\n{}" % (name, port)
    )
    return [big] * 9 + [url]


class Flood(threading.Thread):
    """`connections` clients posting refused calls back to back until `stop` is set."""

    def __init__(self, port: int, connections: int, rate: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.port, self.connections, self.rate = port, connections, rate
        self.stop = threading.Event()
        self.answered: dict[int, int] = {}
        self.failed = 0

    def run(self) -> None:
        asyncio.run(self._main())

    async def _client(self, requests: list[bytes]) -> None:
        i = 0
        started = time.monotonic()
        # With a rate, each client sends its share at fixed times (0: back to back).
        gap = self.connections / self.rate if self.rate else 0.0
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.failed += 1
                await asyncio.sleep(0.05)
                continue
            try:
                while not self.stop.is_set():
                    if gap:
                        await asyncio.sleep(max(0.0, started + i * gap - time.monotonic()))
                    writer.write(requests[i % len(requests)])
                    i += 1
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":", 1)[1])
                    await reader.readexactly(length)
                    self.answered[status] = self.answered.get(status, 0) + 1
                    if b"connection: close" in head.lower():
                        break
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.failed += 1
            finally:
                writer.close()

    async def _main(self) -> None:
        requests = _flood_requests(self.port)
        await asyncio.gather(*(self._client(requests) for _ in range(self.connections)))


def _size(*paths: Path) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def run_phase(
    name: str,
    src: Path,
    phase: str,
    seconds: float,
    rate: float,
    connections: int,
    *,
    spread: bool,
    flood_rate: float,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"hookgate-flood-{name}-") as tmp:
        work = Path(tmp)
        port = free_port()
        peer = Hookgate(work, [port])
        peer.prepare("easypark")
        config = peer.config()
        text = config.read_text(encoding="utf-8").replace('level = "warning"', 'level = "info"')
        if spread:
            # Many addresses: the per-address throttle of failed credentials never trips.
            text = text.replace("[server]\n", "[server]\nauth_failure_limit = 0\n", 1)
        config.write_text(text, encoding="utf-8")
        requests = _valid(port, int(rate * (seconds + 1)) + 10)
        log = work / "serve.stderr"
        db = [work / "hookgate.db", work / "hookgate.db-wal"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "hookgate", "serve", "--config", str(config)],
            env={**os.environ, "PYTHONPATH": str(src / "src")},
            stdout=subprocess.DEVNULL,
            stderr=open(log, "wb"),  # noqa: SIM115
        )
        flood = Flood(port, connections, flood_rate)
        try:
            wait_port(port, proc)
            time.sleep(0.5)
            db_before, log_before = _size(*db), _size(log)
            if phase == "flood":
                flood.start()
            result = run_open(port, requests, rate, seconds, 1.0)
        finally:
            flood.stop.set()
            if flood.is_alive():
                flood.join(30)
            db_after, log_after = _size(*db), _size(log)
            proc.terminate()
            proc.wait(60)
        summary = result.summary()
        acked = sum(1 for s in result.statuses if 200 <= s < 300)
        return {
            "variant": name,
            "phase": phase,
            "flood_from": "many addresses" if spread else "one address",
            "flood_rate": flood_rate or "max",
            "seconds": seconds,
            "offered_rate": rate,
            "valid_acked": acked,
            "valid_statuses": summary["statuses"],
            "p50_ms": round(summary["p50_ms"], 2),
            "p99_ms": round(summary["p99_ms"], 2),
            "flood_answered": dict(sorted(flood.answered.items())),
            "flood_failed": flood.failed,
            "db_growth_mb": round((db_after - db_before) / MB, 2),
            "log_growth_mb": round((log_after - log_before) / MB, 2),
        }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | phase | flood from | flood rate/s | valid acked | p50 ms | p99 ms "
        "| flood calls answered | database growth MB | log growth MB |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        flood = sum(r["flood_answered"].values())
        lines.append(
            f"| {r['variant']} | {r['phase']} | {r['flood_from']} "
            f"| {r['flood_rate'] if r['phase'] == 'flood' else '-'} "
            f"| {r['valid_acked']} "
            f"| {r['p50_ms']} "
            f"| {r['p99_ms']} | {flood} | {r['db_growth_mb']} | {r['log_growth_mb']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--flood-connections", type=int, default=4)
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=0.0,
        help="flood calls per second (0: as fast as answered)",
    )
    parser.add_argument("--variant", action="append", default=[], help="NAME=SRC_DIR")
    parser.add_argument(
        "--spread",
        action="store_true",
        help="model a flood from many addresses (the per-address throttle never trips)",
    )
    parser.add_argument("--out", default="rejection_flood", help="results file name")
    args = parser.parse_args()
    variants = [v.split("=", 1) for v in args.variant] or [["current", str(ROOT)]]
    rows = []
    for name, src in variants:
        for phase in ("quiet", "flood"):
            row = run_phase(
                name,
                Path(src),
                phase,
                args.seconds,
                args.rate,
                args.flood_connections,
                spread=args.spread,
                flood_rate=args.flood_rate,
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    doc = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "runs": rows}
    (RESULTS / f"{args.out}.json").write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    (RESULTS / f"{args.out}.md").write_text(markdown(rows), encoding="utf-8")
    print(markdown(rows))


if __name__ == "__main__":
    main()
