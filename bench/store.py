"""Store write throughput: the inbox write path of each backend, without HTTP.

    .venv/bin/python bench/store.py [--seconds 5] [--concurrency 1,16,64,256]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--instances 1] [--process]

For each backend x concurrency: a fresh database (a SQLite file in a temporary directory, or
a fresh schema in the PostgreSQL database of `--pg-url`), `migrate`, then `concurrency`
coroutines each ingesting distinct EasyPark-shaped events back to back for `--seconds`,
through `Store.ingest` (each call returns after COMMIT). With `--instances N` the
PostgreSQL run opens N stores on one schema (as N gateways would) and spreads the
coroutines over them. Reports events/s, this process's CPU per event, mean commit batch
size and p50/p99 latency, and checks the row count against the acknowledged writes.
Writes bench/results/store.{json,md}. With `--process` each store also runs processing (a
projection that does nothing) as the gateway's worker does, so what processing adds to
the acknowledgement (SQLite's one writer is shared) shows in the latencies; events
processed per second are reported too.
This isolates what the database costs; bench/ingest.py measures the whole gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from hookgate.config import StorageConfig
from hookgate.domain.events import InboundEvent
from hookgate.emulate.base import encode
from hookgate.emulate.easypark import transaction
from hookgate.ids import new_id
from hookgate.store import Store, make_store

ROOT = Path(__file__).resolve().parent.parent


def _event(n: int) -> InboundEvent:
    document = transaction(10**9 + n)
    body = encode(document)
    return InboundEvent(
        id=new_id(),
        source="easypark",
        provider="easypark",
        event_type="parking.completed",
        received_at=datetime.now(UTC),
        dedup_key=f"parking:{10**9 + n}",
        raw_body=body,
        body_sha256="0" * 64,
        headers={"content-type": "application/json"},
        document=document,
        subject=f"parking/{n}",
    )


def _project(tx: Any, event: Any) -> list[str]:
    return []


async def _run(
    stores: list[Store], concurrency: int, seconds: float, process: bool = False
) -> dict[str, Any]:
    counter = iter(range(10**9))
    latencies: list[float] = []
    processed = [0]
    deadline = time.perf_counter() + seconds

    async def processing(store: Store) -> None:
        # As the gateway's processing worker does: take what was stored, index for search
        # when there is nothing to process, pause when idle.
        while time.perf_counter() < deadline:
            done = await store.process_pending(_project, 100)
            processed[0] += done.processed
            if not done.processed and not await store.index_search(500):
                await asyncio.sleep(0.005)

    async def one(store: Store) -> None:
        while time.perf_counter() < deadline:
            event = _event(next(counter))
            started = time.perf_counter()
            result = await store.ingest(event)
            latencies.append(time.perf_counter() - started)
            assert result.stored

    began, cpu = time.perf_counter(), time.process_time()
    workers = [processing(store) for store in stores] if process else []
    await asyncio.gather(*(one(stores[i % len(stores)]) for i in range(concurrency)), *workers)
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    latencies.sort()
    return {
        "processed_per_s": processed[0] / elapsed,
        "events": len(latencies),
        "events_per_s": len(latencies) / elapsed,
        # This process's CPU (every thread, the SQLite writer's included) per event: less
        # sensitive than throughput to other work on a shared machine.
        "cpu_us": 1e6 * cpu / max(len(latencies), 1),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def _measure(
    url: str, instances: int, concurrency: int, seconds: float, process: bool = False
) -> dict[str, Any]:
    batches: list[int] = []
    stores = [
        make_store(StorageConfig(url=url, auto_migrate=(i == 0)), batches.append)
        for i in range(instances)
    ]
    for store in stores:
        await store.open()
    try:
        result = await _run(stores, concurrency, seconds, process)
        page = await stores[0].list_events(_all(), None, 1)
        assert page.items, "nothing stored"
    finally:
        for store in stores:
            await store.close()
    result["mean_batch"] = statistics.fmean(batches) if batches else 0.0
    return result


def _all() -> Any:
    from hookgate.domain.queries import EventFilter

    return EventFilter()


def _count(url: str) -> int:
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM inbox").fetchone()
        return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument(
        "--pg-url", default=os.environ.get("HOOKGATE_BENCH_PG_URL", ""), help="PostgreSQL URL"
    )
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument(
        "--process", action="store_true", help="run processing alongside, as the gateway does"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in levels:
            backends: list[tuple[str, str, int]] = [
                ("sqlite", f"sqlite:///{Path(tmp) / f'c{concurrency}.db'}", 1)
            ]
            if args.pg_url:
                schema = f"bench_{uuid.uuid4().hex[:10]}"
                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(f"CREATE SCHEMA {schema}")
                joiner = "&" if "?" in args.pg_url else "?"
                url = f"{args.pg_url}{joiner}options=-csearch_path%3D{schema}"
                backends.append(("postgresql", url, args.instances))
            for name, url, instances in backends:
                try:
                    result = asyncio.run(
                        _measure(url, instances, concurrency, args.seconds, args.process)
                    )
                    result["rows"] = _count(url)
                    result["check"] = "ok" if result["rows"] == result["events"] else "MISMATCH"
                finally:
                    if name == "postgresql":
                        with psycopg.connect(args.pg_url, autocommit=True) as conn:
                            conn.execute(f"DROP SCHEMA {url.rsplit('%3D', 1)[1]} CASCADE")
                runs.append(
                    {"backend": name, "instances": instances, "concurrency": concurrency, **result}
                )
                print(json.dumps(runs[-1]), flush=True)
    header = (
        f"Store write benchmark, {datetime.now(UTC).isoformat(timespec='seconds')}: "
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), Python "
        f"{sys.version.split()[0]}, {args.seconds:.0f} s per run, EasyPark-shaped events, "
        f"load average {os.getloadavg()[0]:.1f} at the end.\n\n"
        "| backend | instances | concurrency | events/s | processed/s | CPU µs/event | "
        "mean batch | p50 ms | p99 ms | rows |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    lines = [
        f"| {r['backend']} | {r['instances']} | {r['concurrency']} | {r['events_per_s']:.0f} | "
        f"{r['processed_per_s']:.0f} | {r['cpu_us']:.0f} | {r['mean_batch']:.1f} | "
        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['check']} |"
        for r in runs
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "store.json").write_text(json.dumps(runs, indent=2), encoding="utf-8")
    (args.out / "store.md").write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(header + "\n".join(lines))
    return 0 if all(r["check"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
