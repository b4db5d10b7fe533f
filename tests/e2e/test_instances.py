"""Several `hookgate serve` processes on one PostgreSQL database, driven by the provider
emulators: a duplicate storm split across instances, an instance killed under load, a
budget race, rule changes and OAuth tokens that hold on every instance."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from hookgate.emulate import ampeco, easypark
from hookgate.emulate.base import encode
from hookgate.emulate.zaptec import ZaptecEmulator
from support.e2e import Server, migrate, write_config
from support.gateway import (
    ADMIN_TOKEN,
    AMPECO_NEW,
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    ZAPTEC_PASSWORD,
    ZAPTEC_USER,
)
from support.polling import until_async
from support.receiver import Receiver, receiver
from support.storage import fresh_storage, pg_available, query_url

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not pg_available() and not os.environ.get("HOOKGATE_TEST_REQUIRE_PG"),
        reason="PostgreSQL not reachable",
    ),
]


class Cluster:
    """N servers on one database."""

    def __init__(self, url: str, servers: list[Server]) -> None:
        self.url = url
        self.servers = servers

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return query_url(self.url, sql, *params)

    def count(self, table: str, where: str = "1=1", *params: Any) -> int:
        return int(self.rows(f"SELECT count(*) FROM {table} WHERE {where}", *params)[0][0])


SECRET = "whsec_" + base64.b64encode(b"receiver-secret-for-instances!!").decode()


@pytest.fixture(scope="module")
def erp() -> Iterator[Receiver]:
    """The customer's endpoint every AMPECO event is delivered to."""
    with receiver(SECRET) as inbox:
        yield inbox


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, erp: Receiver) -> Iterator[Cluster]:
    """Three instances on one fresh schema, started together; each test uses its own
    keys, tokens and sources of rows."""
    directory = tmp_path_factory.mktemp("instances")
    with fresh_storage("postgresql", directory) as url:
        config = write_config(
            directory,
            storage={"url": url, "pool_size": 6},
            authorization={"refresh_interval_ms": 200, "session_reserve_kwh": 6},
            processing={"lease_seconds": 2, "poll_interval_ms": 100},
            destinations=[
                {
                    "name": "erp",
                    "kind": "http",
                    "url": erp.url,
                    "secret": SECRET,
                    "providers": ["ampeco"],
                }
            ],
        )
        migrate(config)
        servers = [Server(config) for _ in range(3)]
        try:
            with ThreadPoolExecutor(3) as pool:
                list(pool.map(lambda s: s.start(timeout=60), servers))
            yield Cluster(url, servers)
        finally:
            for server in servers:
                server.stop()
                server.kill()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_a_duplicate_storm_across_instances_stores_one_event(cluster: Cluster) -> None:
    body = encode(easypark.transaction(4_200_000_001))
    headers = {
        "Content-Type": "application/json",
        "Authorization": _basic(EASYPARK_USER, EASYPARK_PASSWORD),
    }
    async with httpx.AsyncClient(timeout=20) as client:
        answers = await asyncio.gather(
            *(
                client.post(
                    f"{cluster.servers[i % 3].url}/hooks/easypark", content=body, headers=headers
                )
                for i in range(60)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(409) == 59, statuses
    assert cluster.count("inbox", "dedup_key = ?", "parking:4200000001") == 1


async def test_an_instance_killed_under_load_loses_no_acknowledged_event(
    cluster: Cluster, erp: Receiver
) -> None:
    victim = cluster.servers[0]
    acknowledged: list[bytes] = []
    failed = 0
    by_victim = 0
    victim_busy = asyncio.Event()

    async def load(server: Server, first: int) -> None:
        nonlocal failed, by_victim
        async with httpx.AsyncClient(timeout=10) as client:
            for round_ in range(12):
                sent = await ampeco.run(
                    client,
                    server.url,
                    "ampeco",
                    secret=AMPECO_NEW,
                    event="session.start.stop.notification",
                    count=10,
                    seq_start=first + round_ * 10,
                )
                for item in sent:
                    if item.status is not None and 200 <= item.status < 300:
                        acknowledged.append(item.body)
                        by_victim += server is victim
                    else:
                        failed += 1
                if by_victim >= 20:
                    victim_busy.set()

    async def kill_under_load() -> None:
        # Two rounds acknowledged by the victim: it holds work, and ten rounds remain.
        await asyncio.wait_for(victim_busy.wait(), 30)
        victim.kill()

    await asyncio.gather(
        *(load(s, 1_000_000 * (n + 1)) for n, s in enumerate(cluster.servers)),
        kill_under_load(),
    )
    assert not victim.alive()
    assert failed > 0, "the killed instance should have refused some calls"
    stored = {r[0] for r in cluster.rows("SELECT body_sha256 FROM inbox WHERE source = 'ampeco'")}
    missing = [b for b in acknowledged if hashlib.sha256(b).hexdigest() not in stored]
    assert not missing, f"{len(missing)} acknowledged events are not stored"
    assert len(acknowledged) >= 200  # the survivors kept taking load
    for server in cluster.servers[1:]:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200

    # The outbox work the victim had claimed is done by the survivors: every stored event
    # is processed and delivered (expired leases taken over), once for the receiver.
    stored_ids = {r[0] for r in cluster.rows("SELECT id FROM inbox WHERE source = 'ampeco'")}
    await until_async(
        lambda: (
            cluster.count("deliveries", "destination = 'erp' AND status = 'delivered'")
            == len(stored_ids)
        ),
        timeout=60,
        what=f"{len(stored_ids)} deliveries",
    )
    assert cluster.count("inbox", "source = 'ampeco' AND status <> 'processed'") == 0
    assert {key.split(" ", 1)[1] for key in erp.processed} >= stored_ids
    assert erp.invalid == 0
    victim.start(timeout=60)  # back for the next test


def _admin(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )


async def test_two_instances_cannot_both_spend_the_last_kwh(cluster: Cluster) -> None:
    with _admin(cluster.servers[0]) as admin:
        assert admin.post("/api/v1/tokens", json={"uid": "RACE-1"}).status_code == 201
        response = admin.post(
            "/api/v1/budgets",
            json={
                "id": "race-day",
                "subject": "token",
                "subject_id": "RACE-1",
                "period": "day",
                "metric": "kwh",
                "limit": "10",
            },
        )
        assert response.status_code == 201, response.text
        # Written after the budget: an instance that knows these has applied the budget
        # too (the change log is applied in order).
        for n in range(3):
            assert admin.post("/api/v1/tokens", json={"uid": f"PROBE-{n}"}).status_code == 201

    async with httpx.AsyncClient(timeout=20) as client:
        emulators = [
            ZaptecEmulator(client, s.url, "zaptec", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD)
            for s in cluster.servers
        ]
        for emulator in emulators:
            await emulator.authenticate()

        async def start(emulator: ZaptecEmulator, uid: str = "RACE-1") -> int:
            document = {"ChargerId": f"CH-{uid}", "TokenId": uid}
            sent = await emulator._post("session-start", "session-start", document)
            assert sent.status is not None
            return sent.status

        async def knows_the_budget(n: int) -> bool:
            return await start(emulators[n], f"PROBE-{n}") == 200

        for n in range(3):
            await until_async(
                lambda n=n: knows_the_budget(n), what=f"instance {n} to know the budget"
            )

        statuses = await asyncio.gather(*(start(emulators[i % 3]) for i in range(12)))
    assert sorted(statuses).count(200) == 1, statuses
    assert set(statuses) == {200, 403}
    results = dict(
        cluster.rows(
            "SELECT result, count(*) FROM decisions WHERE token = 'RACE-1' GROUP BY result"
        )
    )
    assert results == {"ALLOWED": 1, "NO_CREDIT": 11}
    assert cluster.count("authorized_sessions", "status = 'active' AND token = 'RACE-1'") == 1
    # The instances that approved from memory were overruled by the database.
    rechecks = 0.0
    for server in cluster.servers:
        for line in httpx.get(f"{server.url}/metrics", timeout=5).text.splitlines():
            if line.startswith("hookgate_decision_rechecks_total{"):
                rechecks += float(line.rsplit(" ", 1)[1])
    assert rechecks >= 1


async def test_changes_and_tokens_hold_on_every_instance(cluster: Cluster) -> None:
    first, second, third = cluster.servers
    with _admin(first) as admin:
        assert admin.post("/api/v1/tokens", json={"uid": "EVERY-1"}).status_code == 201
    async with httpx.AsyncClient(timeout=20) as client:
        # A token issued by one instance is accepted by the others.
        issuer = ZaptecEmulator(
            client, first.url, "zaptec", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD
        )
        bearer = await issuer.authenticate()

        async def answers(server: Server, status: int) -> bool:
            response = await client.post(
                f"{server.url}/hooks/zaptec/session-start",
                content=encode({"ChargerId": "CH-1", "TokenId": "EVERY-1"}),
                headers={"Authorization": bearer, "Content-Type": "application/json"},
            )
            assert response.status_code in (200, 403), response.text  # never a 401
            return response.status_code == status

        # Each instance follows the change log every 200 ms (`refresh_interval_ms`).
        for server in (second, third):
            await until_async(lambda s=server: answers(s, 200), what="a new token")

        # Blocked through the third instance: refused by the others.
        with _admin(third) as admin:
            assert admin.post("/api/v1/tokens/EVERY-1/block").status_code == 200
        for server in (first, second):
            await until_async(lambda s=server: answers(s, 403), what="a block")
