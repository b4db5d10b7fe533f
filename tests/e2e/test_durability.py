"""A 2xx is a promise: what was acknowledged survives SIGKILL, and SIGTERM drains cleanly."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support.e2e import LOOPBACK, Server, migrate, write_config
from support.load import Load, easypark_call, senders
from support.load import missing as _missing_in
from support.polling import until_async
from support.sockets import has_read_everything

pytestmark = pytest.mark.e2e

SENDERS_PER_PROVIDER = 6
ACKED_BEFORE_KILL = 100
KILL_ROUNDS = 3
SLOW_REQUESTS = 5
ACKED_BEFORE_SIGTERM = 60


async def _run_load(
    server: Server,
    ids: itertools.count[int],
    *,
    acked: int,
    sig: int,
    load: Load,
    signalled: asyncio.Event | None = None,
) -> int:
    """Senders until the server has acknowledged `acked` calls while more are in flight,
    then `sig` to the server; the requests in flight then."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=4 * SENDERS_PER_PROVIDER)
    async with httpx.AsyncClient(timeout=5, limits=limits) as client:
        tasks = senders(client, server.url, SENDERS_PER_PROVIDER, ids, load, stop, loop.time() + 60)
        try:
            await until_async(
                lambda: len(load.acked) >= acked and load.inflight > 0,
                timeout=30,
                what=f"{acked} acknowledged calls with more in flight",
            )
            inflight = load.inflight
            server.send_signal(sig)
            if signalled is not None:
                signalled.set()
        finally:
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
                _run_load(server, ids, acked=ACKED_BEFORE_KILL, sig=signal.SIGKILL, load=load)
            )
            assert server.wait(10) == -signal.SIGKILL
        finally:
            server.kill()
        assert inflight > 0, "the kill should land while requests are in flight"
        assert load.acked, f"round {round_no}: nothing was acknowledged\n{server.stderr()}"
        assert set(load.statuses) <= {200, 202}, f"{load.statuses}\n{server.stderr()}"
        acked |= load.acked

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

    async def refuses_connections() -> bool:
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, server.port)
        except OSError:
            return True
        writer.close()
        return False

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
            await until_async(
                lambda: has_read_everything(server.port, SLOW_REQUESTS),
                what="the server to read the request heads (these are in flight)",
            )
            signalled = asyncio.Event()

            async def release_when_draining() -> None:
                await signalled.wait()
                # The rest of the bodies arrive once the server has begun its graceful
                # shutdown: it stops listening first, then waits for requests in flight.
                await until_async(refuses_connections, what="the server to stop listening")
                release.set()

            releaser = asyncio.create_task(release_when_draining())
            inflight = await _run_load(
                server,
                ids,
                acked=ACKED_BEFORE_SIGTERM,
                sig=signal.SIGTERM,
                load=load,
                signalled=signalled,
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
