"""A real `hookgate serve` under a flood of signed AMPECO notifications: beyond
`[server] ingest_in_flight_max` AMPECO is answered 503 + Retry-After (problem+json),
every refusal is counted, every acknowledged event is stored, and Zaptec session starts
sent meanwhile are decided and answered."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hookgate.emulate.ampeco_samples import NAMES, sample
from support.e2e import LOOPBACK, Server, migrate, query, serving, write_config
from support.gateway import AMPECO_NEW, ZAPTEC_PASSWORD, ZAPTEC_USER
from support.polling import until_async

pytestmark = pytest.mark.e2e

CAP = 2
FLOODERS = 48
STARTS = 20


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    home = tmp_path_factory.mktemp("admission")
    server = {"host": LOOPBACK, "port": 0, "max_body_bytes": 65536}
    config = write_config(home, server={**server, "ingest_in_flight_max": CAP})
    migrate(config)
    with serving(config) as running:
        yield running, home / "hookgate.db"


def _ampeco(seq: int) -> tuple[bytes, str]:
    """A signed AMPECO notification over HTTP/1.1 and its dedup key (the body's hash)."""
    body = json.dumps(sample(NAMES[seq % len(NAMES)], 900_000 + seq)).encode()
    signature = hmac.new(AMPECO_NEW.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /hooks/ampeco HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
        "Content-Type: application/json\r\n"
        f"X-Signature: {signature}\r\nX-Timestamp: 2025-12-04T12:00:00Z\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body, hashlib.sha256(body).hexdigest()


@dataclass
class _Flood:
    statuses: Counter[int] = field(default_factory=Counter)
    acked: set[str] = field(default_factory=set)
    refusals: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    seq: int = 0


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines[1:])
    }
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


async def _flooder(port: int, flood: _Flood, stop: asyncio.Event) -> None:
    """Sends the next notification as soon as an answer comes (ignoring Retry-After, to
    keep the source at its cap), on one keep-alive connection."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        while not stop.is_set():
            flood.seq += 1
            raw, key = _ampeco(flood.seq)
            writer.write(raw)
            status, headers, body = await _answer(reader)
            flood.statuses[status] += 1
            if status == 202:
                flood.acked.add(key)
            elif status == 503:
                flood.refusals.append((headers, body))
    finally:
        writer.close()


async def _starts(url: str) -> list[httpx.Response]:
    """Zaptec session starts, one after another, while the flood goes on."""
    answers = []
    async with httpx.AsyncClient(timeout=30, auth=(ZAPTEC_USER, ZAPTEC_PASSWORD)) as client:
        for n in range(STARTS):
            answers.append(
                await client.post(
                    f"{url}/hooks/zaptec-basic/session-start",
                    json={
                        "ChargerId": f"ZAPCHG-{n}",
                        "TokenId": f"RFID-FLOOD-{n}",
                        "InstallationId": "7d3f0a4e-9a55-4c52-9d4c-27d0e6c5f001",
                        "UserId": "7d3f0a4e-9a55-4c52-9d4c-27d0e6c5f002",
                    },
                )
            )
    return answers


async def _run(server: Server) -> tuple[_Flood, list[httpx.Response]]:
    flood, stop = _Flood(), asyncio.Event()
    flooders = [asyncio.create_task(_flooder(server.port, flood, stop)) for _ in range(FLOODERS)]
    try:
        starts = await _starts(server.url)
        # Go on until the cap has refused something.
        await until_async(lambda: flood.statuses[503], "the cap to refuse a flood call", 30)
    finally:
        stop.set()
        await asyncio.gather(*flooders)
    return flood, starts


def _metric(server: Server, name: str, source: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'^{name}\{{source="{source}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_flood_is_refused_at_the_edge_while_zaptec_starts_are_answered(
    served: tuple[Server, Path],
) -> None:
    server, db = served
    flood, starts = asyncio.run(_run(server))

    assert [s.status_code for s in starts] == [200] * STARTS, [s.text for s in starts]
    assert all(s.json()["sessionId"] for s in starts)

    assert set(flood.statuses) <= {202, 503}, flood.statuses
    assert flood.statuses[503] > 0, "the flood was never refused"
    for headers, body in flood.refusals:
        assert headers["content-type"] == "application/problem+json"
        assert int(headers["retry-after"]) >= 1
        assert json.loads(body)["type"] == "urn:hookgate:problem:overloaded"
    # Every refusal is counted: at the edge, or by the writer queue's bound.
    counted = _metric(server, "hookgate_edge_shed_total", "ampeco") + _metric(
        server, "hookgate_shed_total", "ampeco"
    )
    assert counted == flood.statuses[503]
    assert _metric(server, "hookgate_edge_shed_total", "ampeco") > 0

    # Nothing acknowledged is lost.
    stored = {str(k) for (k,) in query(db, "SELECT dedup_key FROM inbox WHERE source = 'ampeco'")}
    assert flood.acked <= stored
    assert len(flood.acked) == flood.statuses[202]
