"""A 2xx is a promise: what was acknowledged survives SIGKILL, and SIGTERM drains cleanly."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support.e2e import Server, migrate, write_config
from support.load import Load, easypark_call, senders
from support.load import missing as _missing_in

pytestmark = pytest.mark.e2e

SENDERS_PER_PROVIDER = 6
KILL_AFTER_SECONDS = 1.0
KILL_ROUNDS = 3
SLOW_REQUESTS = 5


async def _run_load(
    server: Server,
    ids: itertools.count[int],
    *,
    after: float,
    sig: int,
    load: Load,
    signalled: asyncio.Event | None = None,
) -> int:
    """Senders until `after` seconds, then `sig` to the server; the requests in flight then."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    deadline = loop.time() + after + 10
    limits = httpx.Limits(max_connections=4 * SENDERS_PER_PROVIDER)
    async with httpx.AsyncClient(timeout=5, limits=limits) as client:
        tasks = senders(client, server.url, SENDERS_PER_PROVIDER, ids, load, stop, deadline)
        await asyncio.sleep(after)
        inflight = load.inflight
        server.send_signal(sig)
        if signalled is not None:
            signalled.set()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return inflight


def _missing(db: str | Path, acked: set[tuple[str, str]]) -> list[tuple[str, str]]:
    return _missing_in(db if isinstance(db, str) else f"sqlite:///{db}", acked)


@pytest.mark.backends("sqlite", "postgresql")
def test_acknowledged_events_survive_sigkill(tmp_path: Path, storage_url: str) -> None:
    config = write_config(tmp_path, url=storage_url)
    migrate(config)
    db = storage_url
    ids = itertools.count(1)
    acked: set[tuple[str, str]] = set()
    started = time.monotonic()
    for round_no in range(1, KILL_ROUNDS + 1):
        server = Server(config)
        try:
            server.start()
            missing = _missing(db, acked)
            assert not missing, (
                f"round {round_no}: {len(missing)} acknowledged events lost after SIGKILL, "
                f"e.g. {missing[:5]}"
            )
            load = Load()
            inflight = asyncio.run(
                _run_load(server, ids, after=KILL_AFTER_SECONDS, sig=signal.SIGKILL, load=load)
            )
            assert server.wait(10) == -signal.SIGKILL
        finally:
            server.kill()
        assert inflight > 0, "the kill should land while requests are in flight"
        assert load.acked, f"round {round_no}: nothing was acknowledged\n{server.stderr()}"
        assert set(load.statuses) <= {200, 202}, f"{load.statuses}\n{server.stderr()}"
        acked |= load.acked
        assert time.monotonic() - started < 60

    server = Server(config)
    try:
        server.start()
        missing = _missing(db, acked)
        assert not missing, (
            f"{len(missing)} of {len(acked)} acknowledged events lost, e.g. {missing[:5]}"
        )
        assert {s for s, _ in acked} == {"easypark", "ampeco"}
    finally:
        server.stop()
        server.kill()


async def _slow_post(
    client: httpx.AsyncClient,
    base_url: str,
    seq: int,
    head_sent: asyncio.Event,
    release: asyncio.Event,
) -> tuple[str, int]:
    """An EasyPark post that sends half its body, then waits for `release` to send the rest."""
    _, body, headers, key = easypark_call(seq)
    half = len(body) // 2

    async def parts() -> AsyncIterator[bytes]:
        yield body[:half]
        head_sent.set()  # httpx asks for more only after writing the first part
        await release.wait()
        yield body[half:]

    headers = {**headers, "Content-Length": str(len(body))}
    response = await client.post(f"{base_url}/hooks/easypark", content=parts(), headers=headers)
    return key, response.status_code


def test_sigterm_drains_in_flight_requests_and_exits_0(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        server={
            "host": "127.0.0.1",
            "port": 0,
            "max_body_bytes": 65536,
            "graceful_timeout_seconds": 10,
        },
    )
    migrate(config)
    db = tmp_path / "hookgate.db"
    ids = itertools.count(1)
    server = Server(config)

    async def scenario() -> tuple[Load, list[tuple[str, int] | BaseException], int]:
        load = Load()
        release = asyncio.Event()
        heads = [asyncio.Event() for _ in range(SLOW_REQUESTS)]
        async with httpx.AsyncClient(timeout=20) as slow_client:
            slow = [
                asyncio.create_task(_slow_post(slow_client, server.url, next(ids), head, release))
                for head in heads
            ]
            await asyncio.wait_for(asyncio.gather(*(h.wait() for h in heads)), 10)
            await asyncio.sleep(0.2)  # the server has the request heads: these are in flight

            signalled = asyncio.Event()

            async def release_later() -> None:
                await signalled.wait()
                await asyncio.sleep(0.5)  # the rest of the bodies arrive after SIGTERM
                release.set()

            releaser = asyncio.create_task(release_later())
            inflight = await _run_load(
                server, ids, after=0.7, sig=signal.SIGTERM, load=load, signalled=signalled
            )
            await releaser
            answers = await asyncio.wait_for(asyncio.gather(*slow, return_exceptions=True), 20)
        return load, list(answers), inflight

    try:
        server.start()
        load, slow_answers, inflight = asyncio.run(scenario())
        try:
            code: int | None = server.wait(20)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        server.kill()

    assert inflight > 0
    assert load.acked, f"nothing was acknowledged\n{server.stderr()}"
    missing = _missing(db, load.acked)
    assert not missing, f"{len(missing)} acknowledged events not stored, e.g. {missing[:5]}"
    assert not [s for s in load.statuses if s >= 500], f"{load.statuses}\n{server.stderr()}"

    # The requests whose bodies were still arriving at SIGTERM were answered and stored.
    failed = [a for a in slow_answers if isinstance(a, BaseException)]
    assert not failed, f"in-flight requests were cut off by SIGTERM: {failed!r}"
    answered = [a for a in slow_answers if not isinstance(a, BaseException)]
    assert [status for _, status in answered] == [200] * SLOW_REQUESTS
    assert not _missing(db, {("easypark", key) for key, _ in answered})

    assert code == 0, (
        f"hookgate serve should exit 0 after a graceful SIGTERM, got {code}\n{server.stderr()}"
    )
