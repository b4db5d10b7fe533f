"""WAL benchmark: hookgate (SQLite, in-process workers, as shipped) held at saturation for a
bounded time while the size of `hookgate.db-wal` is sampled every 20 ms.

    .venv/bin/python bench/wal.py [--seconds 30] [--rate 2500]
        [--variant NAME=SRC_DIR ...]

Each variant is a source tree whose `src/` is put first on PYTHONPATH (default: this
checkout, named `current`); to compare against an older version, check it out next to
this one (`git worktree add /tmp/before <commit>`) and pass `--variant before=/tmp/before`.
The variants run one after another in the same run on the same machine, each on a fresh
database with the same pre-signed requests (bench/ingest.py's `mix` scenario: AMPECO,
EasyPark and ZTLment, 30 % re-deliveries) offered by the open-model generator
(bench/loadgen.py) above what the server can take. Reported per variant: acknowledged
events per second, the WAL's peak and final size, the database size, WAL bytes per
acknowledged event at the peak. Writes bench/results/wal.json and bench/results/wal.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest import ROOT, Hookgate, build, free_port, wait_port
from loadgen import run_open

RESULTS = ROOT / "bench" / "results"
MiB = 2**20


class Sampler(threading.Thread):
    """The WAL file's size every `every` seconds: peak and time series (0.5 s buckets)."""

    def __init__(self, wal: Path, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.wal, self.every = wal, every
        self.peak = 0
        self.series: list[tuple[float, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        bucket = -1
        while not self.stopping.wait(self.every):
            try:
                size = os.stat(self.wal).st_size
            except FileNotFoundError:
                size = 0
            self.peak = max(self.peak, size)
            at = time.monotonic() - start
            if int(at * 2) != bucket:
                bucket = int(at * 2)
                self.series.append((round(at, 1), size))


def run_variant(name: str, src: Path, seconds: float, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"hookgate-wal-{name}-") as tmp:
        work = Path(tmp)
        port = free_port()
        peer = Hookgate(work, [port])
        env = {**os.environ, "PYTHONPATH": str(src / "src")}
        peer.prepare("mix")
        requests = build("mix", port, 1, int(rate * (seconds + 1)) + 10)
        proc = subprocess.Popen(
            [sys.executable, "-m", "hookgate", "serve", "--config", str(peer.config())],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "serve.stderr", "wb"),  # noqa: SIM115
        )
        sampler = Sampler(work / "hookgate.db-wal")
        try:
            wait_port(port, proc)
            sampler.start()
            result = run_open(port, [r.raw for r in requests.requests], rate, seconds, 1.0)
        finally:
            sampler.stopping.set()
            sampler.join()
            wal_end = (work / "hookgate.db-wal").stat().st_size
            proc.terminate()
            proc.wait(60)
        db_size = (work / "hookgate.db").stat().st_size
        acked = sum(1 for s in result.statuses if 200 <= s < 300)
        return {
            "variant": name,
            "src": str(src),
            "seconds": seconds,
            "offered_rate": rate,
            "acked": acked,
            "acked_per_second": round(acked / (seconds + 1.0), 1),
            "statuses": result.summary()["statuses"],
            "p99_ms": round(result.summary()["p99_ms"], 1),
            "wal_peak_mib": round(sampler.peak / MiB, 1),
            "wal_end_mib": round(wal_end / MiB, 1),
            "db_mib": round(db_size / MiB, 1),
            "wal_peak_bytes_per_event": round(sampler.peak / max(acked, 1)),
            "wal_series": sampler.series,
        }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| variant | acked/s | p99 ms | WAL peak MiB | WAL at end MiB | database MiB "
        "| WAL peak bytes per event |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['acked_per_second']} | {r['p99_ms']} | {r['wal_peak_mib']} "
            f"| {r['wal_end_mib']} | {r['db_mib']} | {r['wal_peak_bytes_per_event']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=2500.0)
    parser.add_argument("--variant", action="append", default=[], help="NAME=SRC_DIR")
    args = parser.parse_args()
    variants = [v.split("=", 1) for v in args.variant] or [["current", str(ROOT)]]
    rows = []
    for name, src in variants:
        row = run_variant(name, Path(src), args.seconds, args.rate)
        print(json.dumps({k: v for k, v in row.items() if k != "wal_series"}), flush=True)
        rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    doc = {"machine": os.uname().nodename, "cpus": os.cpu_count(), "runs": rows}
    (RESULTS / "wal.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    (RESULTS / "wal.md").write_text(markdown(rows), encoding="utf-8")
    print(markdown(rows))


if __name__ == "__main__":
    main()
