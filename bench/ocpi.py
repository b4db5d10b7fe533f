"""OCPI real-time authorization beside a Zaptec session start: the same decision, audit and
reservation reached through two edges, side by side against one `hookgate serve`.

Usage: .venv/bin/python bench/ocpi.py [--tokens 10000] [--requests 1000] [--storage URL]

One keep-alive HTTP client sends, in turn, a Zaptec start (`/hooks/zaptec/session-start`,
HTTP Basic) and an OCPI authorization (`POST /ocpi/2.2.1/tokens/{uid}/authorize` with a
LocationReferences body, token C) for random tokens of the same set, one request at a
time (closed loop), so both kinds meet the same machine at the same moments and the
ratio of their latencies is what the OCPI edge adds: Starlette routing, the credentials
look-up and the token's `last_updated` read. Before the timed run the CPO registers for
real (token A, its versions endpoint served here, token C). Writes
bench/results/ocpi.{json,md}; exits 1 when OCPI's p50 is over `--max-ratio` times Zaptec's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from hookgate.authorization.service import to_entity
from hookgate.config import StorageConfig
from hookgate.domain.rules import Token
from hookgate.store import make_store

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password"
ZAPTEC = "Basic " + base64.b64encode(f"zaptec:{PASSWORD}".encode()).decode()
TOKEN_B = "bench-cpo-token-b"


def token_header(token: str) -> str:
    return "Token " + base64.b64encode(token.encode()).decode()


async def load_tokens(url: str, count: int) -> list[str]:
    store = make_store(StorageConfig(url=url))
    await store.migrate()
    await store.open()
    uids = [f"RFID{i:08X}" for i in range(count)]
    try:
        for start in range(0, count, 5_000):
            await store.auth_put(
                [to_entity("token", Token(uid=uid)) for uid in uids[start : start + 5_000]]
            )
    finally:
        await store.close()
    return uids


def cpo_versions() -> tuple[ThreadingHTTPServer, str]:
    """The CPO's versions endpoints, for the registration before the run."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            root = f"http://127.0.0.1:{self.server.server_address[1]}"
            data: Any = (
                [{"version": "2.2.1", "url": f"{root}/2.2.1"}]
                if self.path == "/versions"
                else {"version": "2.2.1", "endpoints": []}
            )
            raw = json.dumps(
                {"data": data, "status_code": 1000, "timestamp": "2026-01-01T00:00:00Z"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/versions"


def register(base: str, config: Path, versions_url: str) -> str:
    issued = subprocess.run(
        [
            sys.executable,
            "-m",
            "hookgate",
            "ocpi",
            "issue",
            "--name",
            "bench",
            "--json",
            "--config",
            str(config),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    token_a = json.loads(issued.stdout)["token_a"]
    answer = httpx.post(
        f"{base}/ocpi/2.2.1/credentials",
        headers={"Authorization": token_header(token_a)},
        json={
            "token": TOKEN_B,
            "url": versions_url,
            "roles": [
                {
                    "role": "CPO",
                    "business_details": {"name": "Bench CPO"},
                    "party_id": "BCH",
                    "country_code": "SE",
                }
            ],
        },
        timeout=30,
    )
    answer.raise_for_status()
    token: str = answer.json()["data"]["token"]
    return token


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--storage", default=None, help="a postgresql:// URL (default SQLite)")
    parser.add_argument("--port", type=int, default=18779)
    parser.add_argument(
        "--max-ratio",
        type=float,
        default=3.0,
        help="fail when OCPI's p50 exceeds this multiple of Zaptec's",
    )
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = args.storage or f"sqlite:///{work / 'bench.db'}"
        uids = asyncio.run(load_tokens(url, args.tokens))
        config = work / "hookgate.toml"
        config.write_text(
            f'[server]\nport = {args.port}\n[storage]\nurl = "{url}"\n'
            '[logging]\nlevel = "warning"\n'
            "[ocpi]\nenabled = true\n"
            f'[[sources]]\nname = "zaptec"\nprovider = "zaptec"\nauth = "basic"\n'
            f'username = "zaptec"\npassword = "{PASSWORD}"\n'
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "hookgate", "serve", "--config", str(config)]
        )
        cpo, versions_url = cpo_versions()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"{base}/readyz", timeout=2).raise_for_status()
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            token_c = register(base, config, versions_url)
            rng = random.Random(7)
            times: dict[str, list[float]] = {"zaptec": [], "ocpi": []}
            outcomes: dict[str, dict[str, int]] = {"zaptec": {}, "ocpi": {}}
            with httpx.Client(base_url=base, timeout=30) as http:
                for i in range(args.requests * 2 + 100):
                    uid = rng.choice(uids)
                    kind = "zaptec" if i % 2 == 0 else "ocpi"
                    began = time.perf_counter()
                    if kind == "zaptec":
                        answer = http.post(
                            "/hooks/zaptec/session-start",
                            headers={"Authorization": ZAPTEC},
                            json={"ChargerId": f"CH{rng.randint(1, 500)}", "TokenId": uid},
                        )
                        result = str(answer.status_code)
                    else:
                        answer = http.post(
                            f"/ocpi/2.2.1/tokens/{uid}/authorize",
                            headers={"Authorization": token_header(token_c)},
                            json={
                                "location_id": "LOC-1",
                                "evse_uids": [f"CH{rng.randint(1, 500)}"],
                            },
                        )
                        result = answer.json()["data"]["allowed"]
                    elapsed = (time.perf_counter() - began) * 1000
                    if i >= 100:  # the first 50 of each warm up connections and caches
                        times[kind].append(elapsed)
                        outcomes[kind][result] = outcomes[kind].get(result, 0) + 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            cpo.shutdown()
    backend = url.split(":", 1)[0]
    runs = {
        kind: {
            "requests": len(values),
            "outcomes": outcomes[kind],
            "p50_ms": pct(values, 0.50),
            "p90_ms": pct(values, 0.90),
            "p99_ms": pct(values, 0.99),
            "max_ms": max(values),
        }
        for kind, values in times.items()
    }
    ratio = {p: runs["ocpi"][p] / runs["zaptec"][p] for p in ("p50_ms", "p90_ms", "p99_ms")}
    print(json.dumps({"runs": runs, "ocpi_over_zaptec": ratio}, indent=2))
    out = ROOT / "bench" / "results"
    suffix = "" if backend == "sqlite" else f"-{backend}"
    (out / f"ocpi{suffix}.json").write_text(
        json.dumps(
            {"tokens": args.tokens, "backend": backend, "runs": runs, "ocpi_over_zaptec": ratio},
            indent=2,
        )
    )
    lines = [
        f"OCPI authorization beside a Zaptec start, {args.tokens} tokens, {backend}, one "
        "request at a time, the two kinds interleaved (`bench/ocpi.py`; shared machine).",
        "",
        "| edge | requests | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in runs.items():
        lines.append(
            f"| {kind} | {r['requests']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['max_ms']:.2f} |"
        )
    lines += [
        "",
        "OCPI / Zaptec: "
        + ", ".join(f"{p.removesuffix('_ms')} {v:.2f}x" for p, v in ratio.items()),
        "",
    ]
    (out / f"ocpi{suffix}.md").write_text("\n".join(lines))
    if ratio["p50_ms"] > args.max_ratio:
        sys.exit(f"OCPI p50 is {ratio['p50_ms']:.2f}x Zaptec's (at most {args.max_ratio}x)")


if __name__ == "__main__":
    main()
