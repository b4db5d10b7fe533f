"""Load shedding benchmark: Zaptec session starts at a fixed rate, quiet and while AMPECO floods.

    .venv/bin/python bench/shedding.py [--seconds 10] [--rate 100] [--senders 4]
        [--connections 300] [--rounds 2] [--backend sqlite|postgresql] [--queue-max N]
        [--in-flight-max N] [--modes queue,admission] [--no-quiet] [--ignore-retry-after]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--out bench/results/shedding]

Modes of `hookgate serve`, side by side in one run (each round runs every mode, the order
alternating between rounds):

- `unbounded`: `[storage] queue_max = 0` and `[server] ingest_in_flight_max = 0`, no
  shedding at all;
- `queue`: the writer queue bounded (the default `queue_max` and `queue_reserve`, or
  `--queue-max`), no per-source admission at the edge (`ingest_in_flight_max = 0`);
- `admission`: as shipped, the queue bound and the edge's per-source in-flight cap (the
  default, or `--in-flight-max`); `admission:N` the same with a cap of N (several caps
  side by side: `--modes admission:16,admission:32`).

For each mode, unless `--no-quiet`, first a quiet run (no flood: the starts alone), then a
flooded run: each on a fresh database with 10,000 charge tokens. In a flooded run
`--senders` processes flood the server with signed AMPECO notifications, each over
`--connections` keep-alive connections, sending the next request as soon as an answer comes
(a closed loop); after a 503 the connection waits its Retry-After, as a provider does,
unless `--ignore-retry-after` (it sends again at once: on one machine those senders then
spin on 503s and take the cores from the server and the Zaptec generator). After 2 s of
that, Zaptec session starts arrive at `--rate` per second (open model, bench/loadgen.py,
latency from each start's due time) with a Bearer token from the OAuth token endpoint, as
Zaptec calls (2 s warm-up, then `--seconds` measured). Reported: p50/p99/p99.9/max of the
Zaptec starts, how many were not approved (200), AMPECO answers per second in the measured
window (202, 503) and the 503 share, the gateway's own shed counters (writer queue and
edge), and a check that every AMPECO request answered 202 is in the inbox; then, per round,
each mode's flooded ÷ quiet p99 and AMPECO's accepted rate against the `queue` mode.
Writes <out>.json and <out>.md; docs/benchmarks.md explains.
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

MODES = ("unbounded", "queue", "admission")
SENDERS_LEAD = 2.0  # seconds of flood before the Zaptec starts begin


def config_text(
    port: int,
    url: str,
    mode: str,
    queue_max: int | None,
    in_flight_max: int | None = None,
) -> str:
    """The gateway's file: AMPECO by webhook, Zaptec with OAuth, as the contract says."""
    if mode == "unbounded":
        queue = "queue_max = 0\n"
    elif queue_max is not None:
        queue = f"queue_max = {queue_max}\nqueue_reserve = {max(1, queue_max // 10)}\n"
    else:
        queue = ""  # the defaults
    if mode.startswith("admission:"):
        in_flight_max = int(mode.split(":", 1)[1])
    if not mode.startswith("admission"):
        edge = "ingest_in_flight_max = 0\n"
    else:
        edge = "" if in_flight_max is None else f"ingest_in_flight_max = {in_flight_max}\n"
    return (
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n{edge}'
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


def run_mode(
    mode: str, flood: bool, args: argparse.Namespace, ampeco: list[Any], seed: int
) -> dict[str, Any]:
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
                config_text(
                    port,
                    peer.storage_url(),
                    mode,
                    args.queue_max,
                    args.in_flight_max,
                ),
                encoding="utf-8",
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
                return _measure(mode, flood, args, ampeco, seed, port, peer, server)
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
    flood: bool,
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
    if not flood:
        raws = []  # quiet: the starts alone
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
        for k in range(args.senders if flood else 0)
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
    edge_shed = _metric(port, "hookgate_edge_shed_total")
    seen_503 = sum(result["counts"].get(503, 0) for result in floods)
    summary = zaptec.summary()

    # Every AMPECO request answered 202 is in the inbox (after the server went idle).
    acked_keys = set()
    for result in floods:
        k = result["sender"]
        for index in result["acked"]:
            acked_keys.add(ampeco[k * share + index % share].key)
    stored = peer.keys()
    missing = len(acked_keys - stored)

    in_window: dict[str, int] = {}
    for result in floods:
        for status, n in result["in_window"].items():
            in_window[str(status)] = in_window.get(str(status), 0) + n
    answered = sum(in_window.values())
    wrapped = any(result["sent"] > share for result in floods)
    return {
        "mode": mode,
        "flood": flood,
        "zaptec": summary,
        "zaptec_not_approved": sum(1 for i in zaptec.measured if zaptec.statuses[i] != 200),
        "ampeco_in_window": in_window,
        "ampeco_accepted_per_s": in_window.get("202", 0) / args.seconds,
        "ampeco_answers_per_s": answered / args.seconds,
        "ampeco_503_share": in_window.get("503", 0) / answered if answered else 0.0,
        "ampeco_errors": sum(result["errors"] for result in floods),
        "ampeco_wrapped": wrapped,
        "shed_counter_total": shed + edge_shed,
        "shed_queue_total": shed,
        "shed_edge_total": edge_shed,
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
        f"{args['backend']}, commit {str(report['machine']['commit'])[:12]}, queue_max = "
        f"{args['queue_max'] or 'the default'}, ingest_in_flight_max (admission mode) = "
        f"{args.get('in_flight_max') or 'the default'}. Zaptec session "
        f"starts at {args['rate']}/s (open model, OAuth bearer, {args['seconds']} s measured "
        f"after 2 s warm-up), quiet and while {args['senders']} AMPECO senders x "
        f"{args['connections']} connections flood the server (closed loop; after a 503 a "
        "connection "
        f"{'sends again at once' if args['ignore_retry_after'] else 'waits its Retry-After'}). "
        "Load "
        f"average at start: {report['load_average']}.",
        "",
        "| round | mode | flood | Zaptec p50 / p99 / p99.9 / max ms | inside the server "
        "p50 / p99 ms | Zaptec not 200 | AMPECO 202/s | AMPECO answers/s | AMPECO 503 share | "
        "503s seen / shed counted (queue + edge) | queued writes median / max | "
        "acknowledged lost |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report["runs"]:
        z = run["zaptec"]
        flood = run.get("flood", True)
        lines.append(
            f"| {run['round']} | {run['mode']} | {'flood' if flood else 'quiet'} | "
            f"{_ms(z['p50_ms'])} / {_ms(z['p99_ms'])} / "
            f"{_ms(z['p999_ms'])} / {_ms(z['max_ms'])} | "
            f"{_ms(z['server_p50_ms'] or math.nan)} / {_ms(z['server_p99_ms'] or math.nan)} | "
            f"{run['zaptec_not_approved']} | "
            f"{run['ampeco_accepted_per_s']:.0f} | {run['ampeco_answers_per_s']:.0f} | "
            f"{run['ampeco_503_share'] * 100:.1f} % | "
            f"{run['ampeco_503_total']} / {run.get('shed_queue_total', 0):.0f} + "
            f"{run.get('shed_edge_total', 0):.0f} | "
            f"{run['queue_depth_median']:.0f} / {run['queue_depth_max']:.0f} | "
            f"{run['acknowledged_missing']} of {run['acknowledged_checked']} |"
        )
    lines += [
        "",
        "Per round: each mode's Zaptec p99 flooded ÷ quiet (and the difference), and AMPECO's "
        "accepted rate ÷ that of the `queue` mode (the writer-queue bound alone):",
        "",
    ]
    by_round: dict[int, dict[tuple[str, bool], Any]] = {}
    for run in report["runs"]:
        by_round.setdefault(run["round"], {})[(run["mode"], run.get("flood", True))] = run
    for number, runs in sorted(by_round.items()):
        parts = []
        for mode in dict.fromkeys(mode for mode, _ in runs):
            flooded, quiet = runs.get((mode, True)), runs.get((mode, False))
            if flooded is None:
                continue
            text = f"{mode}: flooded p99 {_ms(flooded['zaptec']['p99_ms'])} ms"
            if quiet is not None:
                f99, q99 = flooded["zaptec"]["p99_ms"], quiet["zaptec"]["p99_ms"]
                text += f" = {f99 / q99:.1f}x quiet ({_ms(q99)} ms; +{_ms(f99 - q99)} ms)"
            base = runs.get(("queue", True))
            if base is not None and mode != "queue" and base["ampeco_accepted_per_s"]:
                ratio = flooded["ampeco_accepted_per_s"] / base["ampeco_accepted_per_s"]
                text += f", AMPECO accepted/s {ratio:.2f}x queue"
            parts.append(text)
        lines.append(f"- round {number}: " + "; ".join(parts))
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
    parser.add_argument("--modes", default="queue,admission", help=f"of {', '.join(MODES)}")
    parser.add_argument("--no-quiet", action="store_true", help="flooded runs only")
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
        help="queue_max of the bounded modes (reserve: a tenth); default: the shipped default",
    )
    parser.add_argument(
        "--in-flight-max",
        type=int,
        default=None,
        help="ingest_in_flight_max of the admission mode; default: the shipped default",
    )

    args = parser.parse_args()
    if args.render:
        args.render.with_suffix(".md").write_text(markdown(json.loads(args.render.read_text())))
        return
    chosen = args.modes.split(",")
    unknown = {m for m in chosen if m not in MODES and not re.fullmatch(r"admission:\d+", m)}
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}: choose from {', '.join(MODES)}")

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
        modes = list(chosen)
        if number % 2 == 0:
            modes.reverse()
        for mode in modes:
            for flood in (False, True) if not args.no_quiet else (True,):
                label = f"{mode}, {'flood' if flood else 'quiet'}"
                print(f"round {number}: {label} ...", flush=True)
                run = run_mode(mode, flood, args, ampeco, seed=number)
                run["round"] = number
                report["runs"].append(run)
                z = run["zaptec"]
                print(
                    f"  Zaptec p50 {_ms(z['p50_ms'])} p99 {_ms(z['p99_ms'])} ms; AMPECO "
                    f"{run['ampeco_accepted_per_s']:.0f} accepted/s, "
                    f"{run['ampeco_503_share'] * 100:.1f} % 503; "
                    f"queue max {run['queue_depth_max']:.0f}; "
                    f"lost {run['acknowledged_missing']}",
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
