"""Storage faults under load, for real: SQLite on a small filesystem filled until ENOSPC and
grown again; PostgreSQL with the gateway's backends terminated mid-load. Every
acknowledged event is stored afterwards, and nothing unstored was answered 2xx."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.e2e import LOOPBACK, hookgate_cmd, migrate, serving, write_config
from support.load import Load, load_until, missing
from support.polling import until

pytestmark = pytest.mark.e2e

STORED = {200, 202}


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (needs root); skipped, with the reason, where
    mounting is impossible."""
    where.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where}: {result.stderr.strip() or result}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem answers ENOSPC; the file."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError:
                break
    with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as out:
        while True:  # what a 64 KiB write left over
            out.write(b"\0" * 4096)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def ready_status(url: str) -> tuple[int, str]:
    response = httpx.get(f"{url}/readyz", timeout=10)
    return response.status_code, response.text


def poll_ready(url: str, wanted: int, within: float = 20) -> str:
    """Poll /readyz until it answers `wanted` (bounded); its last body."""

    def answered() -> str | None:
        status, body = ready_status(url)
        return body if status == wanted else None

    return until(answered, f"/readyz to answer {wanted}", within)


def test_sqlite_disk_full_refuses_what_it_cannot_store_and_recovers(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", "16m") as mnt:
        db = mnt / "hookgate.db"
        config = write_config(tmp_path, url=f"sqlite:///{db}")
        migrate(config)
        url = f"sqlite:///{db}"
        ids = itertools.count(1)
        load = Load()
        with serving(config) as server:

            def run(done: object, within: float) -> bool:
                return asyncio.run(load_until(LOOPBACK, server.port, ids, load, done, within))  # type: ignore[arg-type]

            # Healthy: some events stored.
            assert run(lambda ld: len(ld.acked) >= 200, 30), dict(load.statuses)
            acked_before_full = len(load.acked)

            # Full: calls are answered 503 (with Retry-After), never 2xx without storing.
            filler = fill(mnt)
            refusals = load.statuses[503]
            assert run(lambda ld: ld.statuses[503] >= refusals + 100, 60), (
                f"no 503s on a full disk: {dict(load.statuses)}\n{server.stderr()}"
            )
            body = poll_ready(server.url, 503)
            assert "database or disk is full" in body, body
            assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200

            # `hookgate migrate` on the full disk: a message that says what to fix.
            other = tmp_path / "other"
            other.mkdir()
            other_config = write_config(other, url=f"sqlite:///{mnt / 'other.db'}")
            result = subprocess.run(
                hookgate_cmd("migrate", "--config", str(other_config)),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 1, result
            assert "Traceback" not in result.stderr, result.stderr
            assert "database or disk is full" in result.stderr, result.stderr
            assert "free space on the filesystem holding" in result.stderr, result.stderr

            # Grown: writes and readiness come back without a restart.
            grow(mnt, "64m")
            poll_ready(server.url, 200)
            acked_when_grown = len(load.acked)
            assert run(lambda ld: len(ld.acked) >= acked_when_grown + 200, 30), (
                f"no recovery after the filesystem grew: {dict(load.statuses)}"
            )
            assert filler.exists()

        print(f"statuses {dict(load.statuses)}, {len(load.acked)} acknowledged")
        assert set(load.statuses) <= STORED | {503}, dict(load.statuses)
        assert len(load.acked) > acked_before_full
        lost = missing(url, load.acked)
        assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged events lost: {lost[:5]}"
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()


@pytest.mark.backends("postgresql")
def test_postgresql_backends_terminated_mid_load(
    tmp_path: Path, backend: str, storage_url: str
) -> None:
    if backend != "postgresql":
        pytest.skip("PostgreSQL excluded by HOOKGATE_TEST_BACKENDS")
    name = f"hookgate-fault-{uuid.uuid4().hex[:8]}"
    url = f"{storage_url}&application_name={name}"
    config = write_config(tmp_path, url=url)
    migrate(config)
    import psycopg

    admin = psycopg.connect(storage_url, autocommit=True)
    kills: list[int] = []
    marks: list[int] = []

    async def terminate(load: Load) -> None:
        # Terminate every connection of this gateway each time another 150 events were
        # acknowledged, three times.
        if len(kills) < 3 and len(load.acked) >= 150 * (len(kills) + 1):
            rows = await asyncio.to_thread(
                lambda: admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (name,),
                ).fetchall()
            )
            kills.append(len(rows))
            marks.append(len(load.acked))

    ids = itertools.count(1)
    load = Load()
    try:
        with serving(config) as server:
            done = asyncio.run(
                load_until(
                    LOOPBACK,
                    server.port,
                    ids,
                    load,
                    lambda ld: len(kills) == 3 and len(ld.acked) >= marks[-1] + 300,
                    90,
                    tick=terminate,
                )
            )
            assert done, f"kills {kills}, statuses {dict(load.statuses)}\n{server.stderr()}"
            poll_ready(server.url, 200)
    finally:
        admin.close()
    print(f"terminated {kills} backends at {marks} acknowledged; statuses {dict(load.statuses)}")
    assert all(n > 0 for n in kills), f"no backend of the gateway to terminate: {kills}"
    assert set(load.statuses) <= STORED | {503}, dict(load.statuses)
    lost = missing(storage_url, load.acked)
    assert not lost, f"{len(lost)} of {len(load.acked)} acknowledged events lost: {lost[:5]}"
