"""The SQLite WAL stays bounded while a real server runs at saturation with its in-process
workers, instead of growing until a clean shutdown truncates it."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from pathlib import Path

import pytest

from hookgate.store.sqlite import WAL_LIMIT_BYTES
from support.e2e import LOOPBACK, db_path, migrate, serving, write_config
from support.load import Load, missing, raw_senders

pytestmark = pytest.mark.e2e

SENDERS_PER_PROVIDER = 6
SUSTAIN_SECONDS = 12.0
# The WAL is rewound near WAL_RESTART_BYTES; with no long reader it never reaches the
# journal_size_limit the file is cut back to.
WAL_BOUND = WAL_LIMIT_BYTES


class WalSampler(threading.Thread):
    """Samples the size of `<db>-wal` every few milliseconds; keeps the peak."""

    def __init__(self, db: Path, every: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.wal = Path(f"{db}-wal")
        self.every = every
        self.peak = 0
        self.samples = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                size = os.stat(self.wal).st_size
            except FileNotFoundError:
                continue
            self.samples += 1
            self.peak = max(self.peak, size)


async def _saturate(port: int, seconds: float) -> Load:
    load = Load()
    deadline = asyncio.get_running_loop().time() + seconds
    tasks = raw_senders(LOOPBACK, port, SENDERS_PER_PROVIDER, itertools.count(1), load, deadline)
    await asyncio.wait_for(asyncio.gather(*tasks), seconds + 60)
    return load


def test_wal_stays_bounded_at_saturation(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    migrate(config)
    db = db_path(tmp_path)
    sampler = WalSampler(db)
    with serving(config) as server:
        sampler.start()
        try:
            load = asyncio.run(_saturate(server.port, SUSTAIN_SECONDS))
        finally:
            sampler.stopping.set()
            sampler.join()
        wal_at_end = os.stat(f"{db}-wal").st_size
    db_size = db.stat().st_size
    acked = len(load.acked)
    report = (
        f"{acked} events acknowledged in {SUSTAIN_SECONDS:.0f} s; WAL peak "
        f"{sampler.peak / 2**20:.1f} MiB over {sampler.samples} samples (bound "
        f"{WAL_BOUND / 2**20:.0f} MiB), {wal_at_end / 2**20:.1f} MiB at the end; database "
        f"{db_size / 2**20:.1f} MiB; statuses {dict(load.statuses)}"
    )
    print(report)
    assert set(load.statuses) <= {200, 202}, report
    # Enough load that an unbounded WAL (~26 KB per event) would pass the bound twice over.
    assert acked * 26_000 > 2 * WAL_BOUND, f"too little load to tell: {report}"
    assert sampler.peak < WAL_BOUND, report
    assert not missing(f"sqlite:///{db}", load.acked)
