"""Load for the end-to-end tests: valid EasyPark and AMPECO calls from concurrent senders,
and the ledger of what the gateway acknowledged, to check against the database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from hookgate.emulate.ampeco_samples import NAMES, sample
from hookgate.emulate.easypark import transaction
from support.e2e import query
from support.gateway import AMPECO_OLD, EASYPARK_PASSWORD, EASYPARK_USER
from support.polling import Timeout, until_async

_BASIC = "Basic " + base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()

# (source, body, headers, dedup key) of the call number `seq`.
Call = tuple[str, bytes, dict[str, str], str]


@dataclass
class Load:
    """What the senders saw: every acknowledged (source, dedup key), and every status."""

    acked: set[tuple[str, str]] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    inflight: int = 0
    # Calls sent whose answer was not a 2xx (refused, failed or cut off): may be stored.
    unacked: set[tuple[str, str]] = field(default_factory=set)


def easypark_call(seq: int) -> Call:
    parking_id = 4_000_000_000 + seq
    body = json.dumps(transaction(parking_id, end=datetime.now(UTC))).encode()
    headers = {"Content-Type": "application/json", "Authorization": _BASIC}
    return "easypark", body, headers, f"parking:{parking_id}"


def ampeco_call(seq: int) -> Call:
    body = json.dumps(sample(NAMES[seq % len(NAMES)], seq)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": hmac.new(AMPECO_OLD.encode(), body, hashlib.sha256).hexdigest(),
        "X-Timestamp": "2025-12-04T12:00:00Z",
    }
    return "ampeco", body, headers, hashlib.sha256(body).hexdigest()


async def sender(
    client: httpx.AsyncClient,
    base_url: str,
    make: Callable[[int], Call],
    ids: itertools.count[int],
    load: Load,
    stop: asyncio.Event,
    deadline: float,
    *,
    pause_on_error: float = 0.01,
) -> None:
    """Send calls one after another until `stop` or the loop time `deadline`; a refused or
    failed call is not sent again (a provider would retry it with the same key later)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set() and loop.time() < deadline:
        source, body, headers, key = make(next(ids))
        load.inflight += 1
        try:
            response = await client.post(
                f"{base_url}/hooks/{source}", content=body, headers=headers
            )
        except httpx.HTTPError:
            load.errors += 1
            load.unacked.add((source, key))
            if stop.is_set():
                return
            await asyncio.sleep(pause_on_error)
            continue
        finally:
            load.inflight -= 1
        load.statuses[response.status_code] += 1
        if 200 <= response.status_code < 300:
            load.acked.add((source, key))
        else:
            load.unacked.add((source, key))
            if response.status_code >= 500:
                await asyncio.sleep(pause_on_error)


def senders(
    client: httpx.AsyncClient,
    base_url: str,
    per_provider: int,
    ids: itertools.count[int],
    load: Load,
    stop: asyncio.Event,
    deadline: float,
) -> list[asyncio.Task[None]]:
    """`per_provider` EasyPark and as many AMPECO senders, started."""
    return [
        asyncio.create_task(sender(client, base_url, make, ids, load, stop, deadline))
        for make in (easypark_call, ampeco_call)
        for _ in range(per_provider)
    ]


def _raw_request(call: Call, host: str) -> bytes:
    source, body, headers, _key = call
    head = [f"POST /hooks/{source} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    """The status of one HTTP/1.1 answer; its body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def raw_sender(
    host: str,
    port: int,
    make: Callable[[int], Call],
    ids: itertools.count[int],
    load: Load,
    deadline: float,
    stop: asyncio.Event | None = None,
) -> None:
    """Like `sender`, on one keep-alive connection written by hand: an httpx client costs
    more CPU per call than the gateway, and on a small machine it would set the pace."""
    loop = asyncio.get_running_loop()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while loop.time() < deadline and not (stop is not None and stop.is_set()):
            call = make(next(ids))
            source, _body, _headers, key = call
            load.inflight += 1
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, port)
                reader, writer = conn
                writer.write(_raw_request(call, f"{host}:{port}"))
                status = await asyncio.wait_for(_answer(reader), 30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                load.errors += 1
                load.unacked.add((source, key))
                if conn is not None:
                    conn[1].close()
                conn = None
                await asyncio.sleep(0.01)
                continue
            finally:
                load.inflight -= 1
            load.statuses[status] += 1
            if 200 <= status < 300:
                load.acked.add((source, key))
            else:
                load.unacked.add((source, key))
                if status >= 500:
                    await asyncio.sleep(0.01)
    finally:
        if conn is not None:
            conn[1].close()


def raw_senders(
    host: str,
    port: int,
    per_provider: int,
    ids: itertools.count[int],
    load: Load,
    deadline: float,
    stop: asyncio.Event | None = None,
) -> list[asyncio.Task[None]]:
    """`per_provider` EasyPark and as many AMPECO raw senders, started; they end at the
    loop time `deadline` or when `stop` is set."""
    return [
        asyncio.create_task(raw_sender(host, port, make, ids, load, deadline, stop))
        for make in (easypark_call, ampeco_call)
        for _ in range(per_provider)
    ]


def missing(db: str, acked: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """Acknowledged (source, dedup key) pairs that are not in the inbox of `db` (a storage
    URL), sorted."""
    stored = {(str(s), str(k)) for s, k in query(db, "SELECT source, dedup_key FROM inbox")}
    return sorted(acked - stored)


async def load_until(
    host: str,
    port: int,
    ids: itertools.count[int],
    load: Load,
    done: Callable[[Load], bool],
    within: float,
    *,
    per_provider: int = 4,
    tick: Callable[[Load], Awaitable[None]] | None = None,
) -> bool:
    """Raw senders until `done(load)` holds (checked after `tick`, polled) or `within`
    seconds have passed; whether `done` held. The senders finish their calls in flight."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    tasks = raw_senders(host, port, per_provider, ids, load, loop.time() + within + 60, stop)

    async def holds() -> bool:
        if tick is not None:
            await tick(load)
        return done(load)

    try:
        await until_async(holds, "the load's condition", within)
        met = True
    except Timeout:
        met = False
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return met
