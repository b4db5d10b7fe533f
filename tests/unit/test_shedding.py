"""Load shedding (ADR 0015): a bounded writer queue refuses ingest at once with 503 +
Retry-After, while Zaptec session starts keep a reserve and open the next batch.

The queue is filled for real: the test holds the database's write lock from a connection
of its own (SQLite: BEGIN IMMEDIATE on the file; PostgreSQL: a SHARE lock on the inbox),
so the writer's batch waits exactly as it would behind a slow disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hookgate.config import ConfigError, StorageConfig, parse_config
from hookgate.domain.decisions import Decision
from hookgate.domain.errors import Overloaded
from hookgate.domain.events import InboundEvent, Rejection
from hookgate.domain.queries import EventFilter
from hookgate.emulate.base import sign
from hookgate.ids import new_id
from hookgate.store import Store, make_store
from hookgate.store.sqlite import SqliteStore
from support.gateway import AMPECO_NEW, ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config
from support.polling import until_async

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@contextlib.contextmanager
def writes_held(url: str) -> Iterator[None]:
    """Hold the lock every write of the store needs, until the block ends."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE inbox IN SHARE MODE")  # reads go on; inserts wait
        try:
            yield
        finally:
            pg.rollback()


def waiting(store: Store) -> int:
    """Jobs queued and not yet taken into a batch by a writer."""
    if isinstance(store, SqliteStore):
        assert store._writer is not None
        return store._writer.jobs.qsize()
    return int(store._queue.qsize())  # type: ignore[attr-defined]


def event(dedup: str, source: str = "ampeco") -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source=source,
        provider=source,
        event_type="test",
        received_at=datetime.now(UTC),
        dedup_key=dedup,
        raw_body=b"{}",
        body_sha256="00",
        headers={},
        document={},
    )


def decision(session_id: str | None, event_id: str) -> Decision:
    return Decision(
        id=new_id(),
        decided_at=datetime.now(UTC),
        source="zaptec",
        event_id=event_id,
        charger_id="CH1",
        token=f"TAG-{event_id}",
        user_id=None,
        installation_id=None,
        result="ALLOWED" if session_id else "BLOCKED",
        reasons=[],
        session_id=session_id,
    )


def rejection(source: str) -> Rejection:
    return Rejection(
        id=new_id(),
        received_at=datetime.now(UTC),
        source=source,
        provider="ampeco",
        method="POST",
        path="/hooks/ampeco",
        status=503,
        reason="overloaded",
        detail="test",
        headers={},
        remote=None,
        body_sha256="00",
        body_size=0,
        body=b"",
    )


async def test_a_full_queue_refuses_ingest_at_once_and_keeps_the_reserve_for_decisions(
    storage_url: str,
) -> None:
    store = make_store(
        StorageConfig(url=storage_url, auto_migrate=True, queue_max=6, queue_reserve=2)
    )
    await store.open()
    try:
        done: list[str] = []

        def track(name: str, coro: Any) -> asyncio.Future[Any]:
            task = asyncio.ensure_future(coro)
            task.add_done_callback(lambda _t: done.append(name))
            return task

        with writes_held(storage_url):
            ingests = []
            writers = int(getattr(store, "_writers", 1))
            for n in range(4):
                ingests.append(track(f"k{n}", store.ingest(event(f"k{n}"))))
                # Queued; and while a writer is free, taken into a batch that waits on the lock.
                await until_async(
                    lambda n=n: (
                        store.queued_writes() == n + 1 and (n >= writers or waiting(store) == 0)
                    ),
                    "the write queued",
                )
            await until_async(lambda: store.queued_writes() == 4, "four writes queued")

            # Ingest beyond bound - reserve is refused at once, with a Retry-After.
            with pytest.raises(Overloaded) as refused:
                await store.ingest(event("refused"))
            assert refused.value.retry_after >= 1
            with pytest.raises(Overloaded):
                store.check_ingest_room()

            # Zaptec starts use the reserve, up to the bound itself.
            first = event("start-1", "zaptec")
            second = event("start-2", "zaptec")
            starts = [
                track("s1", store.record_session_start(first, decision("S1", first.id))),
                track("s2", store.record_session_start(second, decision("S2", second.id))),
            ]
            await until_async(lambda: store.queued_writes() == 6, "the reserve used")
            if not isinstance(store, SqliteStore):
                # PostgreSQL: the writer of urgent work took both starts at once, though
                # both ingest writers are busy and two ingests are queued ahead.
                await until_async(lambda: not store._urgent, "the starts taken")  # type: ignore[attr-defined]
                assert waiting(store) >= 2
            third = event("start-3", "zaptec")
            with pytest.raises(Overloaded):
                await store.record_session_start(third, decision("S3", third.id))
            # The audit of an answer already given, and internal writes, are never refused.
            fallback = event("start-4", "zaptec")
            audit = track("f", store.record_fallback(fallback, decision(None, fallback.id), None))
            logged = track("r", store.record_rejection(rejection("ampeco")))
            await until_async(lambda: store.queued_writes() == 8, "audit and log queued")
            assert not any(t.done() for t in [*ingests, *starts, audit, logged])

        results = await asyncio.gather(*ingests, *starts, audit, logged)
        assert [r.stored for r in results[:4]] == [True] * 4
        if isinstance(store, SqliteStore):
            # One writer: urgent work opened the batch after the one that was waiting on the
            # lock, so the starts finished before the ingest queued ahead of them. (On
            # PostgreSQL every writer's transaction waits on the same lock and they commit
            # in any order once it is released.)
            assert done.index("s1") < done.index("k3") and done.index("s2") < done.index("k3")
        assert store.queued_writes() == 0
        keys = {e.dedup_key for e in (await store.list_events(EventFilter(), None, 100)).items}
        assert keys == {"k0", "k1", "k2", "k3", "start-1", "start-2", "start-4"}
        store.check_ingest_room()  # room again
        assert (await store.ingest(event("after"))).stored
    finally:
        await store.close()


async def test_an_unbounded_queue_never_refuses(storage_url: str) -> None:
    store = make_store(StorageConfig(url=storage_url, auto_migrate=True, queue_max=0))
    await store.open()
    try:
        with writes_held(storage_url):
            pending = [asyncio.ensure_future(store.ingest(event(f"u{n}"))) for n in range(50)]
            await until_async(lambda: store.queued_writes() == 50, "fifty writes queued")
            store.check_ingest_room()
        assert all(r.stored for r in await asyncio.gather(*pending))
    finally:
        await store.close()


# -- over HTTP ---------------------------------------------------------------------------


FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"


def fixture_doc(provider: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / provider / f"{name}.json").read_bytes())
    return doc


def compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def ampeco_body(n: int) -> bytes:
    doc = fixture_doc("ampeco", "BootNotification")
    doc["chargePointId"] = 10_000 + n
    return compact(doc)


def ampeco_headers(body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Signature": sign(body, AMPECO_NEW, "sha256", "hex"),
    }


def zaptec_token(client: httpx.Client, source: str) -> str:
    """An access token by the password grant, as Zaptec gets one."""
    response = client.post(
        f"/hooks/{source}/oauth/token",
        data={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """A sample of the gateway's /metrics (0 when absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_ampeco_is_answered_503_while_a_zaptec_start_still_gets_its_decision(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Any
) -> None:
    data = base_config(tmp_path / "hookgate.db")
    # Room for three ingest writes; the reserve also holds the rejection-log records of
    # the refusals below (queued behind the held lock too) and the Zaptec start.
    data["storage"]["queue_max"] = 9
    data["storage"]["queue_reserve"] = 6
    data["processing"] = {"in_process": False}  # only the requests below write
    for source in data["sources"]:
        if source["name"] == "zaptec-allow":
            source["decision_deadline_ms"] = 30000  # the lock is held on purpose
    gateway = make_gateway(data)
    client = httpx.Client(base_url=gateway.url, timeout=30)
    token = zaptec_token(client, "zaptec-allow")
    answers: dict[int, httpx.Response] = {}

    def post_ampeco(n: int) -> None:
        body = ampeco_body(n)
        with httpx.Client(base_url=gateway.url, timeout=30) as own:
            answers[n] = own.post("/hooks/ampeco", content=body, headers=ampeco_headers(body))

    start_answer: list[httpx.Response] = []

    def post_start() -> None:
        doc = fixture_doc("zaptec", "start_pascal")
        doc["TokenId"] = f"TAG-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=gateway.url, timeout=30) as own:
            start_answer.append(
                own.post(
                    "/hooks/zaptec-allow/session-start",
                    content=compact(doc),
                    headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/json",
                    },
                )
            )

    threads: list[threading.Thread] = []
    with writes_held(gateway.storage_url):
        for n in range(3):  # bound - reserve: these wait for the lock
            threads.append(threading.Thread(target=post_ampeco, args=(n,)))
            threads[-1].start()
        asyncio.run(
            until_async(
                lambda: metric(client, "hookgate_queued_writes") == 3, "three writes queued"
            )
        )
        for n in range(3, 6):  # no room left for ingest: answered at once
            post_ampeco(n)
        for n in range(3, 6):
            response = answers[n]
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["type"] == "urn:hookgate:problem:overloaded"
            assert problem["status"] == 503
        # The Zaptec start is admitted into the reserve, not refused.
        threads.append(threading.Thread(target=post_start))
        threads[-1].start()
        asyncio.run(
            until_async(lambda: metric(client, "hookgate_queued_writes") >= 4, "the start queued")
        )
        assert start_answer == []  # waiting for its durable write, like the first three
    for thread in threads:
        thread.join(30)

    assert start_answer[0].status_code == 200, start_answer[0].text
    assert start_answer[0].json()["sessionId"]
    assert [answers[n].status_code for n in range(3)] == [202] * 3
    stored = {r[0] for r in gateway.rows("SELECT body_sha256 FROM inbox WHERE source = 'ampeco'")}
    assert stored == {hashlib.sha256(ampeco_body(n)).hexdigest() for n in range(3)}
    assert metric(client, "hookgate_shed_total", source="ampeco") == 3
    assert metric(client, "hookgate_requests_total", source="ampeco", outcome="shed") == 3

    # Recorded in the rejection log like any refusal (all three are within its sample).
    def shed_rows() -> list[tuple[Any, ...]]:
        return gateway.rows(
            "SELECT status, reason, body_sha256, detail FROM rejections WHERE source = 'ampeco'"
        )

    asyncio.run(until_async(lambda: len(shed_rows()) == 3, "the shed requests recorded"))
    assert {(row[0], row[1]) for row in shed_rows()} == {(503, "overloaded")}
    assert {row[2] for row in shed_rows()} == {
        hashlib.sha256(ampeco_body(n)).hexdigest() for n in range(3, 6)
    }
    assert all("retry after" in row[3] for row in shed_rows())
    client.close()


def test_a_reserve_as_large_as_the_bound_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^storage: queue_reserve \(10\) must be below"):
        parse_config({"storage": {"queue_max": 10, "queue_reserve": 10}}, env={})
    unbounded = parse_config({"storage": {"queue_max": 0}}, env={})
    assert unbounded.storage.queue_max == 0  # 0 turns shedding off; the reserve is moot


@pytest.mark.backends("sqlite")
async def test_a_long_sqlite_batch_is_cut_short_for_a_zaptec_start(storage_url: str) -> None:
    store = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    assert isinstance(store, SqliteStore)
    await store.open()
    try:
        started = threading.Event()

        async def slow(tx: Any) -> None:
            # A write that holds the batch (as a large processing step would).
            started.set()
            time.sleep(0.05)

        done: list[str] = []

        def track(name: str, fut: Any) -> asyncio.Future[Any]:
            task = asyncio.ensure_future(fut)
            task.add_done_callback(lambda _t: done.append(name))
            return task

        async def write_slow() -> None:
            await store._write(slow)

        slow1 = track("slow1", write_slow())
        slow2 = track("slow2", write_slow())
        await until_async(started.is_set, "the first slow write running")
        start = event("start", "zaptec")
        urgent = track("start", store.record_session_start(start, decision("S", start.id)))
        await asyncio.gather(slow1, slow2, urgent)
        # The batch committed the first slow write and let the start go before the second.
        assert done == ["slow1", "start", "slow2"]
    finally:
        await store.close()
