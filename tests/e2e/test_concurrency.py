"""Identical deliveries released at the same instant: the unique constraint decides, once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from hookgate.emulate.ampeco_samples import sample
from hookgate.emulate.easypark import transaction
from support.e2e import LOOPBACK, Server, migrate, query, serving, write_config
from support.gateway import AMPECO_NEW, EASYPARK_PASSWORD, EASYPARK_USER, ZTLMENT_SECRET
from support.polling import until_async
from support.storage import fresh_storage

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]


@pytest.fixture(scope="module")
def served(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    home = tmp_path_factory.mktemp("concurrency")
    with fresh_storage(backend, home) as url:
        # Bursts of up to 100 at once to one source: more than the edge admits by default
        # (that cap has its own tests, test_admission.py).
        server = {"host": LOOPBACK, "port": 0, "max_body_bytes": 65536}
        config = write_config(home, url=url, server={**server, "ingest_in_flight_max": 0})
        migrate(config)
        with serving(config) as server:
            yield server, url


async def _burst(url: str, body: bytes, headers: dict[str, str], n: int) -> list[tuple[int, bytes]]:
    """Open n connections first, then release n identical POSTs together."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        base = url.split("/hooks/", 1)[0]
        # Warm the pool: n concurrent GETs leave n keep-alive connections behind.
        warm = await asyncio.wait_for(
            asyncio.gather(*(client.get(f"{base}/healthz") for _ in range(n))), 30
        )
        assert {r.status_code for r in warm} == {200}
        gate = asyncio.Event()
        arrived = 0

        async def one() -> tuple[int, bytes]:
            nonlocal arrived
            arrived += 1
            await gate.wait()
            response = await client.post(url, content=body, headers=headers)
            return response.status_code, response.content

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await until_async(lambda: arrived == n, f"{n} requests arrived")
        gate.set()
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)


def _count(db: str, source: str) -> list[tuple[str, str]]:
    return [
        (str(r[0]), str(r[1]))
        for r in query(db, "SELECT id, dedup_key FROM inbox WHERE source = ?", source)
    ]


def test_100_identical_easypark_posts_one_200_and_99_409(served: tuple[Server, str]) -> None:
    server, db = served
    document = transaction(7_700_000_001)
    body = json.dumps(document).encode()
    auth = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {auth}"}

    answers = asyncio.run(_burst(f"{server.url}/hooks/easypark", body, headers, 100))

    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: 1, 409: 99}, f"{statuses}\n{server.stderr()}"
    rows = _count(db, "easypark")
    assert len(rows) == 1
    event_id, dedup_key = rows[0]
    assert dedup_key == f"parking:{document['parkingId']}"
    conflicts = [json.loads(content) for status, content in answers if status == 409]
    assert {c["event_id"] for c in conflicts} == {event_id}


def test_50_identical_ampeco_posts_all_202_one_row(served: tuple[Server, str]) -> None:
    server, db = served
    body = json.dumps(sample("session.start.stop.notification", 4242)).encode()
    signature = hmac.new(AMPECO_NEW.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": signature,
        "X-Timestamp": "2025-12-04T12:00:00Z",
        "X-Tenant": "concurrency",
    }

    answers = asyncio.run(_burst(f"{server.url}/hooks/ampeco", body, headers, 50))

    assert Counter(status for status, _ in answers) == {202: 50}, server.stderr()
    rows = _count(db, "ampeco")
    assert len(rows) == 1
    assert rows[0][1] == hashlib.sha256(body).hexdigest()


def test_50_identical_ztlment_posts_all_200_one_row(served: tuple[Server, str]) -> None:
    server, db = served
    body = json.dumps({"id": 990_001, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}).encode()
    signature = base64.b64encode(
        hmac.new(ZTLMENT_SECRET.encode(), body, hashlib.sha512).digest()
    ).decode()
    headers = {"Content-Type": "application/json", "X-Payload-Signature": signature}

    answers = asyncio.run(_burst(f"{server.url}/hooks/ztlment", body, headers, 50))

    assert Counter(status for status, _ in answers) == {200: 50}, server.stderr()
    rows = _count(db, "ztlment")
    assert len(rows) == 1
    assert rows[0][1] == "PAYMENT_OBJECT:990001:PROCESSED"
