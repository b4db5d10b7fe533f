"""Load shedding benchmark: Zaptec session starts at a fixed rate while AMPECO floods.

    .venv/bin/python bench/shedding.py [--seconds 10] [--rate 100] [--senders 4]
        [--connections 300] [--rounds 2] [--backend sqlite|postgresql] [--queue-max N]
        [--ignore-retry-after]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--out bench/results/shedding]

Two modes of `hookgate serve`, side by side in one run (each round runs both, the order
alternating between rounds): `unbounded` (`[storage] queue_max = 0`, no shedding: the
behaviour before load shedding) and `bounded` (the default `queue_max` and
`queue_reserve`). For each: a fresh database with 10,000 charge tokens, then `--senders`
processes flood the server with signed AMPECO notifications, each over `--connections`
keep-alive connections, sending the next request as soon as an answer comes (a closed
loop); after a 503 the connection waits its Retry-After, as a provider does, unless
`--ignore-retry-after` (it sends again at once: on one machine those senders then spin on
503s and take the cores from the server and the Zaptec generator). After 2 s of that, Zaptec
session starts arrive at `--rate` per second (open model, bench/loadgen.py, latency from
each start's due time) with a Bearer token from the OAuth token endpoint, as Zaptec calls
(2 s warm-up, then `--seconds` measured). Reported: p50/p99/p99.9/max of the Zaptec starts,
how many were not approved (200), AMPECO answers per second in the measured window (202,
503) and the 503 share, the gateway's own shed counter, and a check that every AMPECO
request answered 202 is in the inbox. Writes <out>.json and <out>.md; docs/benchmarks.md
explains.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import (
    AMPECO_SECRET,
    PG_URL,
    PY,
    RESULTS,
    ZAPTEC,
    Hookgate,
    HookgatePostgres,
    _raw,
    ampeco_stream,
    free_port,
    git_commit,
    token_uids,
    wait_port,
)
from loadgen import _LENGTH, run_open

from hookgate.emulate.base import encode

MODES = ("unbounded", "bounded")
SENDERS_LEAD = 2.0  # seconds of flood before the Zaptec starts begin


def config_text(port: int, url: str, mode: str, queue_max: int | None) -> str:
    """The gateway's file: AMPECO by webhook, Zaptec with OAuth, as the contract says."""
    if mode == "unbounded":
        queue = "queue_max = 0\n"
    elif queue_max is not None:
        queue = f"queue_max = {queue_max}\nqueue_reserve = {max(1, queue_max // 10)}\n"
    else:
        queue = ""  # the defaults
    return (
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[storage]\nurl = "{url}"\n{queue}'
        '[logging]\nlevel = "error"\n'
        f'[[sources]]\nname = "ampeco"\nprovider = "ampeco"\nsecrets = ["{AMPECO_SECRET}"]\n'
        f'[[sources]]\nname = "zaptec"\nprovider = "zaptec"\nauth = "oauth"\n'
        f'username = "{ZAPTEC[0]}"\npassword = "{ZAPTEC[1]}"\n'
    )


def oauth_token(port: int) -> str:
    """Zaptec's first call: the password grant on the source's token endpoint."""
    import httpx

    answer = httpx.post(
        f"http://127.0.0.1:{port}/hooks/zaptec/oauth/token",
        data={"grant_type": "password", "username": ZAPTEC[0], "password": ZAPTEC[1]},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def zaptec_starts(port: int, token: str, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    uids = token_uids()
    auth = [("Authorization", f"Bearer {token}")]
    out = []
    for _ in range(count):
        body = encode(
            {
                "ChargerId": str(uuid.UUID(int=rng.getrandbits(128))),
                "DeviceId": f"ZAP{rng.randint(100000, 999999)}",
                "InstallationId": str(uuid.UUID(int=rng.getrandbits(128))),
                "UserId": str(uuid.UUID(int=rng.getrandbits(128))),
                "TokenId": rng.choice(uids),
            }
        )
        out.append(_raw(port, "/hooks/zaptec/session-start", auth, body))
    return out


# -- the AMPECO flood (one process per sender) ---------------------------------------------

_RETRY_AFTER = re.compile(rb"\r\nretry-after:\s*(\d+)", re.IGNORECASE)


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes
) -> tuple[int, int]:
    """Send one request; its status and Retry-After (0 when absent)."""
    reader, writer = conn
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    if length is None:
        raise ValueError("answer without Content-Length")
    await reader.readexactly(int(length.group(1)))
    retry = _RETRY_AFTER.search(head)
    return int(head[9:12]), int(retry.group(1)) if retry else 0


async def _flood(
    port: int,
    requests: list[bytes],
    connections: int,
    window: tuple[float, float],
    stop: float,
    honour: bool,
) -> dict[str, Any]:
    counts: dict[int, int] = {}
    in_window: dict[int, int] = {}
    acked: list[int] = []
    errors = 0
    position = 0

    async def connection() -> None:
        nonlocal position, errors
        conn = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop:
                index = position
                position += 1
                try:
                    status, retry = await _exchange(conn, requests[index % len(requests)])
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    errors += 1
                    conn[1].close()
                    conn = await asyncio.open_connection("127.0.0.1", port)
                    continue
                counts[status] = counts.get(status, 0) + 1
                if window[0] <= time.monotonic() < window[1]:
                    in_window[status] = in_window.get(status, 0) + 1
                if status == 202:
                    acked.append(index)
                elif retry and honour:
                    # As a provider does: this connection waits as long as it is told.
                    await asyncio.sleep(min(retry, max(0.0, stop - time.monotonic())))
        finally:
            conn[1].close()

    await asyncio.gather(*(connection() for _ in range(connections)), return_exceptions=True)
    return {
        "counts": counts,
        "in_window": in_window,
        "acked": acked,
        "errors": errors,
        "sent": position,
    }


def _sender(
    number: int,
    port: int,
    requests: list[bytes],
    connections: int,
    window: tuple[float, float],
    stop: float,
    honour: bool,
    out: Any,
) -> None:
    import uvloop

    result = uvloop.run(_flood(port, requests, connections, window, stop, honour))
    out.put({"sender": number, **result})


# -- one run -------------------------------------------------------------------------------


class _Sqlite(Hookgate):
    name = "sqlite"


class _Postgres(HookgatePostgres):
    name = "postgresql"


def run_mode(mode: str, args: argparse.Namespace, ampeco: list[Any], seed: int) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hg-shed-") as tmp:
        work = Path(tmp)
        peer: Hookgate = (_Postgres if args.backend == "postgresql" else _Sqlite)(work, [port])
        if isinstance(peer, HookgatePostgres):
            peer.admin_url = args.pg_url
            peer._admin(f"CREATE SCHEMA {peer.schema}")
        try:
            config = work / "hookgate.toml"
            config.write_text(
                config_text(port, peer.storage_url(), mode, args.queue_max), encoding="utf-8"
            )
            subprocess.run(
                [PY, "-m", "hookgate", "migrate", "--config", str(config)],
                check=True,
                capture_output=True,
            )
            asyncio.run(peer._load_tokens())
            log = (work / "serve.log").open("wb")
            server = subprocess.Popen(
                [PY, "-m", "hookgate", "serve", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_port(port, server)
                return _measure(mode, args, ampeco, seed, port, peer, server)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
                log.close()
        finally:
            peer.cleanup()


def _metric(port: int, name: str, **labels: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _measure(
    mode: str,
    args: argparse.Namespace,
    ampeco: list[Any],
    seed: int,
    port: int,
    peer: Hookgate,
    server: subprocess.Popen[bytes],
) -> dict[str, Any]:
    token = oauth_token(port)
    warmup = 2.0
    starts = zaptec_starts(port, token, int(args.rate * (warmup + args.seconds)) + 1, seed)
    raws = [r.raw for r in ampeco]
    share = len(raws) // args.senders
    begin = time.monotonic() + 0.5
    window = (begin + SENDERS_LEAD + warmup, begin + SENDERS_LEAD + warmup + args.seconds)
    stop = window[1] + 1.0
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    senders = [
        ctx.Process(
            target=_sender,
            args=(
                k,
                port,
                raws[k * share : (k + 1) * share],
                args.connections,
                window,
                stop,
                not args.ignore_retry_after,
                results,
            ),
            daemon=True,
        )
        for k in range(args.senders)
    ]
    for process in senders:
        process.start()
    time.sleep(max(0.0, begin + SENDERS_LEAD - time.monotonic()))
    depths: list[float] = []
    sampling = threading.Event()

    def sample_depth() -> None:
        # The writer queue's depth as the gateway reports it, ten times a second.
        while not sampling.wait(0.1):
            with contextlib.suppress(Exception):
                depths.append(_metric(port, "hookgate_queued_writes"))

    sampler = threading.Thread(target=sample_depth, daemon=True)
    sampler.start()
    zaptec = run_open(port, starts, args.rate, args.seconds, warmup)
    sampling.set()
    sampler.join()
    floods = [results.get(timeout=120) for _ in senders]
    for process in senders:
        process.join(30)
    # The gateway's own count of refusals over the whole flood, beside the 503s seen.
    shed = _metric(port, "hookgate_shed_total")
    seen_503 = sum(flood["counts"].get(503, 0) for flood in floods)
    summary = zaptec.summary()

    # Every AMPECO request answered 202 is in the inbox (after the server went idle).
    acked_keys = set()
    for flood in floods:
        k = flood["sender"]
        for index in flood["acked"]:
            acked_keys.add(ampeco[k * share + index % share].key)
    stored = peer.keys()
    missing = len(acked_keys - stored)

    in_window: dict[str, int] = {}
    for flood in floods:
        for status, n in flood["in_window"].items():
            in_window[str(status)] = in_window.get(str(status), 0) + n
    answered = sum(in_window.values())
    wrapped = any(flood["sent"] > share for flood in floods)
    return {
        "mode": mode,
        "zaptec": summary,
        "zaptec_not_approved": sum(1 for i in zaptec.measured if zaptec.statuses[i] != 200),
        "ampeco_in_window": in_window,
        "ampeco_accepted_per_s": in_window.get("202", 0) / args.seconds,
        "ampeco_answers_per_s": answered / args.seconds,
        "ampeco_503_share": in_window.get("503", 0) / answered if answered else math.nan,
        "ampeco_errors": sum(flood["errors"] for flood in floods),
        "ampeco_wrapped": wrapped,
        "shed_counter_total": shed,
        "ampeco_503_total": seen_503,
        "queue_depth_samples": depths,
        "queue_depth_max": max(depths, default=math.nan),
        "queue_depth_median": sorted(depths)[len(depths) // 2] if depths else math.nan,
        "acknowledged_missing": missing,
        "acknowledged_checked": len(acked_keys),
    }


# -- report --------------------------------------------------------------------------------


def _ms(value: float) -> str:
    if not math.isfinite(value):
        return "∞"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown(report: dict[str, Any]) -> str:
    args = report["args"]
    lines = [
        f"Load shedding benchmark, {report['started']}: {report['machine']['nproc']} cores, "
        f"{args['backend']}, commit {str(report['machine']['commit'])[:12]}, bounded mode "
        f"with queue_max = {args['queue_max'] or 'the default'}. Zaptec session "
        f"starts at {args['rate']}/s (open model, OAuth bearer, {args['seconds']} s measured "
        f"after 2 s warm-up) while {args['senders']} AMPECO senders x {args['connections']} "
        "connections flood the server (closed loop; after a 503 a connection "
        f"{'sends again at once' if args['ignore_retry_after'] else 'waits its Retry-After'}). "
        "Load "
        f"average at start: {report['load_average']}.",
        "",
        "| round | mode | Zaptec p50 / p99 / p99.9 / max ms | inside the server p50 / p99 ms | "
        "Zaptec not 200 | "
        "AMPECO 202/s | AMPECO answers/s | AMPECO 503 share | 503s seen / shed counted | "
        "queued writes median / max | acknowledged lost |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        z = run["zaptec"]
        lines.append(
            f"| {run['round']} | {run['mode']} | {_ms(z['p50_ms'])} / {_ms(z['p99_ms'])} / "
            f"{_ms(z['p999_ms'])} / {_ms(z['max_ms'])} | "
            f"{_ms(z['server_p50_ms'] or math.nan)} / {_ms(z['server_p99_ms'] or math.nan)} | "
            f"{run['zaptec_not_approved']} | "
            f"{run['ampeco_accepted_per_s']:.0f} | {run['ampeco_answers_per_s']:.0f} | "
            f"{run['ampeco_503_share'] * 100:.1f} % | "
            f"{run['ampeco_503_total']} / {run['shed_counter_total']:.0f} | "
            f"{run['queue_depth_median']:.0f} / {run['queue_depth_max']:.0f} | "
            f"{run['acknowledged_missing']} of {run['acknowledged_checked']} |"
        )
    lines += ["", "Bounded ÷ unbounded, per round (Zaptec p99; AMPECO accepted/s):", ""]
    by_round: dict[int, dict[str, Any]] = {}
    for run in report["runs"]:
        by_round.setdefault(run["round"], {})[run["mode"]] = run
    for number, pair in sorted(by_round.items()):
        if set(pair) == set(MODES):
            b, u = pair["bounded"], pair["unbounded"]
            p99 = b["zaptec"]["p99_ms"] / u["zaptec"]["p99_ms"]
            acc = (
                b["ampeco_accepted_per_s"] / u["ampeco_accepted_per_s"]
                if u["ampeco_accepted_per_s"]
                else math.nan
            )
            lines.append(f"- round {number}: Zaptec p99 {p99:.2f}x, AMPECO accepted/s {acc:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--connections", type=int, default=300, help="per sender")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("HOOKGATE_BENCH_PG_URL", PG_URL))
    parser.add_argument("--out", type=Path, default=RESULTS / "shedding")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--render", type=Path, help="rewrite the .md of this .json and exit")
    parser.add_argument(
        "--ignore-retry-after",
        action="store_true",
        help="senders send again at once after a 503 (default: they wait its Retry-After)",
    )
    parser.add_argument(
        "--queue-max",
        type=int,
        default=None,
        help="queue_max of the bounded mode (reserve: a tenth); default: the shipped default",
    )
    args = parser.parse_args()
    if args.render:
        args.render.with_suffix(".md").write_text(markdown(json.loads(args.render.read_text())))
        return

    # Distinct signed AMPECO notifications, more than the flood can send in a run.
    count = 120_000
    print(f"preparing {count} AMPECO requests ...", flush=True)
    report: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"nproc": os.cpu_count(), "commit": git_commit()},
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "runs": [],
    }
    # The Host header names port 0: servers ignore it. Every run has a fresh database.
    ampeco = list(itertools.islice(ampeco_stream(0, 0), count))
    for number in range(1, args.rounds + 1):
        modes = MODES if number % 2 else tuple(reversed(MODES))
        modes = tuple(m for m in modes if m in args.modes.split(","))
        for mode in modes:
            print(f"round {number}: {mode} ...", flush=True)
            run = run_mode(mode, args, ampeco, seed=number)
            run["round"] = number
            report["runs"].append(run)
            z = run["zaptec"]
            print(
                f"  Zaptec p50 {_ms(z['p50_ms'])} p99 {_ms(z['p99_ms'])} ms; AMPECO "
                f"{run['ampeco_accepted_per_s']:.0f} accepted/s, "
                f"{run['ampeco_503_share'] * 100:.1f} % 503; "
                f"queue max {run['queue_depth_max']:.0f}; lost {run['acknowledged_missing']}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
