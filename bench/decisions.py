"""Charging-decision latency: Zaptec session starts at fixed rates with 100,000 tokens loaded.

Usage: .venv/bin/python bench/decisions.py [--tokens 100000] [--seconds 15] [--rates 200,1000]

An open-model load generator sends starts on a fixed schedule (request i is due at
t0 + i/rate, whether or not earlier answers have come back), so latency is measured from
the due time and queueing is not hidden (no coordinated omission). Each answer's
`Server-Timing` header gives the time spent inside hookgate (decision + durable audit
write). Tokens belong to 1,000 groups; a tenth of the groups have an energy budget.
Writes bench/results/decisions.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import msgspec

from hookgate.authorization.service import to_entity
from hookgate.domain.rules import Budget, Token
from hookgate.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
AUTH = "Basic " + base64.b64encode(f"zaptec:{PASSWORD}".encode()).decode()
_TIMING = re.compile(rb"server-timing: app;dur=([\d.]+)", re.IGNORECASE)


async def load_tokens(db: Path, count: int) -> list[str]:
    store = SqliteStore(str(db), auto_migrate=True)
    await store.open()
    uids = [f"RFID{i:08X}" for i in range(count)]
    try:
        for start in range(0, count, 10_000):
            batch = [
                to_entity("token", Token(uid=uid, group_id=f"fleet-{i % 1000}", label=f"car {i}"))
                for i, uid in enumerate(uids[start : start + 10_000], start)
            ]
            await store.auth_put(batch)
        budgets = [
            to_entity(
                "budget",
                Budget(
                    id=f"fleet-{g}-day",
                    subject="group",
                    subject_id=f"fleet-{g}",
                    period="day",
                    limit=Decimal(100_000),
                ),
            )
            for g in range(0, 1000, 10)
        ]
        await store.auth_put(budgets)
    finally:
        await store.close()
    return uids


class Client:
    """Keep-alive HTTP/1.1 connections over raw asyncio streams (cheap on the CPU)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> tuple[int, float | None]:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {AUTH}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        self.idle.append((reader, writer))
        timing = _TIMING.search(head)
        return status, float(timing.group(1)) if timing else None


async def run_rate(port: int, uids: list[str], rate: int, seconds: int) -> dict[str, float]:
    client = Client(port)
    rng = random.Random(rate)
    total = rate * seconds
    e2e: list[float] = []
    server: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = msgspec.json.encode(
            {"ChargerId": f"CH{rng.randint(1, 5000)}", "TokenId": rng.choice(uids).lower()}
        )
        status, inside = await client.post("/hooks/zaptec/session-start", body)
        e2e.append((time.perf_counter() - due) * 1000)
        if inside is not None:
            server.append(inside)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in range(total)))
    for _, writer in client.idle:
        writer.close()

    def pct(values: list[float], p: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * p))]

    return {
        "rate": rate,
        "requests": total,
        "allowed": statuses.get(200, 0),
        "e2e_p50_ms": pct(e2e, 0.50),
        "e2e_p99_ms": pct(e2e, 0.99),
        "e2e_p999_ms": pct(e2e, 0.999),
        "e2e_max_ms": max(e2e),
        "server_p50_ms": pct(server, 0.50),
        "server_p99_ms": pct(server, 0.99),
        "server_mean_ms": statistics.fmean(server),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rates", default="200,1000")
    args = parser.parse_args()
    port = 18777
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = work / "bench.db"
        began = time.perf_counter()
        uids = asyncio.run(load_tokens(db, args.tokens))
        print(f"loaded {len(uids)} tokens in {time.perf_counter() - began:.1f} s")
        config = work / "hookgate.toml"
        config.write_text(
            f'[server]\nport = {port}\n[storage]\nurl = "sqlite:///{db}"\n'
            '[logging]\nlevel = "warning"\n'
            f'[[sources]]\nname = "zaptec"\nprovider = "zaptec"\nauth = "basic"\n'
            f'username = "zaptec"\npassword = "{PASSWORD}"\n'
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "hookgate", "serve", "--config", str(config)]
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    asyncio.run(Client(port).post("/hooks/zaptec/session-start", b"{}"))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            for rate in (int(r) for r in args.rates.split(",")):
                result = asyncio.run(run_rate(port, uids, rate, args.seconds))
                print(result)
                results.append(result)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "decisions.json").write_text(
        json.dumps({"tokens": args.tokens, "runs": results}, indent=2)
    )
    lines = [
        f"Zaptec session starts, {args.tokens} tokens loaded, SQLite, open-model load.",
        "",
        "| rate/s | requests | server p50 ms | server p99 ms | e2e p50 ms | e2e p99 ms "
        "| e2e p99.9 ms | e2e max ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['rate']} | {r['requests']} | {r['server_p50_ms']:.2f} | "
            f"{r['server_p99_ms']:.2f} | {r['e2e_p50_ms']:.2f} | {r['e2e_p99_ms']:.2f} | "
            f"{r['e2e_p999_ms']:.2f} | {r['e2e_max_ms']:.2f} |"
        )
    (out / "decisions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
