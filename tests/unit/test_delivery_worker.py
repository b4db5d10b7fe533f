"""The delivery worker against a real SQLite store, a real local receiver that verifies
every delivery with `standardwebhooks`, and librdkafka's mock cluster; time is a
controllable clock."""

from __future__ import annotations

import asyncio
import base64
import tomllib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from hookgate.config import Config, parse_config
from hookgate.delivery.router import Router
from hookgate.delivery.worker import DeliveryWorker, claim_limit
from hookgate.domain.events import InboundEvent, StoredEvent
from hookgate.domain.outbox import Delivery
from hookgate.domain.queries import ViewFilter
from hookgate.ids import new_id
from hookgate.metrics import Metrics
from hookgate.providers.base import Provider
from hookgate.providers.easypark import EasyPark
from hookgate.store.base import ViewTx
from hookgate.store.sqlite import SqliteStore
from support.delivery_receiver import HANG, Receiver, closed_port, serve
from support.kafka import MockKafka
from support.polling import until_async

SECRET = "whsec_" + base64.b64encode(b"worker test secret of 32 bytes!!").decode()
PROVIDERS: dict[str, Provider[Any]] = {"easypark": EasyPark()}


class Clock:
    """Wall time that only moves when a test says so."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(str(tmp_path / "delivery.db"), auto_migrate=True)
    await db.open()
    yield db
    await db.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver(secret=SECRET, hang_seconds=2))


def config(*destinations: dict[str, Any], lease_seconds: float = 60) -> Config:
    return parse_config(
        {
            "processing": {"lease_seconds": lease_seconds, "poll_interval_ms": 50},
            "destinations": list(destinations),
        },
        env={},
    )


def http(url: str, **keys: Any) -> dict[str, Any]:
    return {"name": "erp", "kind": "http", "url": url, "secret": SECRET, **keys}


async def accept(store: SqliteStore, cfg: Config, *parking_ids: int) -> None:
    """Ingest EasyPark events and run the processing step with the router as handler."""
    for parking_id in parking_ids:
        await store.ingest(
            InboundEvent(
                id=new_id(),
                source="easypark",
                provider="easypark",
                event_type="parking.completed",
                received_at=datetime.now(UTC),
                dedup_key=f"parking:{parking_id}",
                raw_body=b"{}",
                body_sha256="00",
                headers={},
                document={"parkingId": parking_id, "price": "12.50", "currency": "NOK"},
                subject=f"parking/{parking_id}",
            )
        )
    router = Router(cfg.destinations, PROVIDERS)

    def handler(tx: ViewTx, event: StoredEvent) -> list[str]:
        return router.destinations_for(event)

    await store.process_pending(handler, 100)


def worker(
    store: SqliteStore, cfg: Config, clock: Clock, metrics: Metrics | None = None
) -> DeliveryWorker:
    return DeliveryWorker(store, cfg, PROVIDERS, metrics, owner="w1", clock=clock, rand=lambda: 0.5)


async def deliveries(store: SqliteStore) -> list[Delivery]:
    page = await store.list_deliveries(ViewFilter(), None, 100)
    return sorted(page.items, key=lambda d: d.id)


async def test_every_delivery_is_signed_verifiable_and_recorded(
    store: SqliteStore, receiver: Receiver
) -> None:
    cfg = config(http(receiver.url), http(receiver.url, name="parking-only", event_types=["x.*"]))
    await accept(store, cfg, 1, 2, 3)
    metrics = Metrics()
    w = worker(store, cfg, Clock(), metrics)
    try:
        assert await w.run_once() == 3
        assert await w.run_once() == 0
    finally:
        await w.close()
    assert len(receiver.received) == 3
    assert all(r.verified for r in receiver.received), [r.error for r in receiver.received]
    envelopes = sorted((r.payload for r in receiver.received), key=lambda e: e["subject"])
    assert [e["type"] for e in envelopes] == ["hookgate.easypark.parking.completed"] * 3
    assert [e["subject"] for e in envelopes] == ["parking/1", "parking/2", "parking/3"]
    assert {r.headers["webhook-id"] for r in receiver.received} == {e["id"] for e in envelopes}
    rows = await deliveries(store)
    assert [(d.destination, d.status, d.attempts) for d in rows] == [("erp", "delivered", 1)] * 3
    attempts = await store.delivery_attempts(rows[0].id)
    assert [(a.outcome, a.status_code) for a in attempts] == [("delivered", 204)]
    assert (
        metrics.registry.get_sample_value(
            "hookgate_deliveries_total", {"destination": "erp", "outcome": "delivered"}
        )
        == 3
    )


async def test_a_5xx_is_retried_on_the_jittered_schedule(
    store: SqliteStore, receiver: Receiver
) -> None:
    cfg = config(http(receiver.url, initial_backoff_seconds=10))
    await accept(store, cfg, 1)
    receiver.script = [503]
    clock = Clock()
    w = worker(store, cfg, clock)
    try:
        assert await w.run_once() == 1
        (row,) = await deliveries(store)
        assert (row.status, row.last_status_code) == ("failed", 503)
        # rand = 0.5 of a 10 s cap: due 5 s after the failure, not before.
        clock.advance(4.9)
        assert await w.run_once() == 0
        clock.advance(0.2)
        assert await w.run_once() == 1
    finally:
        await w.close()
    (row,) = await deliveries(store)
    assert (row.status, row.attempts) == ("delivered", 2)
    attempts = await store.delivery_attempts(row.id)
    assert [(a.outcome, a.status_code) for a in attempts] == [
        ("failed", 503),
        ("delivered", 204),
    ]
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # same id on retry
    assert all(r.verified for r in receiver.received)


async def test_a_timeout_is_a_failed_attempt(store: SqliteStore, receiver: Receiver) -> None:
    cfg = config(http(receiver.url, timeout_seconds=0.3))
    await accept(store, cfg, 1)
    receiver.script = [HANG]
    w = worker(store, cfg, Clock())
    try:
        await w.run_once()
    finally:
        await w.close()
    (row,) = await deliveries(store)
    assert (row.status, row.last_status_code) == ("failed", None)
    assert row.last_error == "timed out after 0.3 s"


async def test_a_receiver_that_stays_down_makes_the_delivery_dead(store: SqliteStore) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks"
    cfg = config(http(url, max_attempts=3, initial_backoff_seconds=1, breaker_failures=100))
    await accept(store, cfg, 1)
    clock = Clock()
    metrics = Metrics()
    w = worker(store, cfg, clock, metrics)
    try:
        for _ in range(3):
            assert await w.run_once() == 1
            clock.advance(60)
        assert await w.run_once() == 0
    finally:
        await w.close()
    (row,) = await deliveries(store)
    assert (row.status, row.attempts) == ("dead", 3)
    assert "ConnectError" in row.last_error and "dead: 3 attempts failed" in row.last_error
    attempts = await store.delivery_attempts(row.id)
    assert [a.outcome for a in attempts] == ["failed", "failed", "dead"]
    assert (
        metrics.registry.get_sample_value("hookgate_deliveries_dead_total", {"destination": "erp"})
        == 1
    )


async def test_410_disables_the_destination_until_it_is_enabled_again(
    store: SqliteStore, receiver: Receiver
) -> None:
    cfg = config(http(receiver.url))
    await accept(store, cfg, 1, 2)
    receiver.script = [410, 410]
    clock = Clock()
    w = worker(store, cfg, clock)
    try:
        await w.run_once()
        states = await store.destination_states()
        assert "410 Gone" in states["erp"].reason
        clock.advance(3600)
        assert await w.run_once() == 0  # disabled: its deliveries wait
        assert {d.status for d in await deliveries(store)} <= {"failed", "pending"}
        await store.set_destination_disabled("erp", None)
        clock.advance(120)  # past the lease of a delivery left unsent after the 410
        assert await w.run_once() == 2
    finally:
        await w.close()
    assert {d.status for d in await deliveries(store)} == {"delivered"}


async def test_the_breaker_opens_probes_and_closes(store: SqliteStore, receiver: Receiver) -> None:
    cfg = config(
        http(
            receiver.url,
            concurrency=1,
            timeout_seconds=1,  # with the 6 s lease: claims of 3 (see claim_limit)
            breaker_failures=2,
            breaker_cooldown_seconds=10,
            initial_backoff_seconds=1,
        ),
        lease_seconds=6,
    )
    await accept(store, cfg, 1, 2, 3)
    receiver.default = 500
    clock = Clock()
    metrics = Metrics()
    w = worker(store, cfg, clock, metrics)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value(
            "hookgate_destination_breaker_state", {"destination": "erp"}
        )

    try:
        assert await w.run_once() == 3
        assert len(receiver.received) == 2  # the third is not sent once the circuit opened
        assert w.breakers["erp"].state == "open" and gauge() == 2
        clock.advance(9)
        assert await w.run_once() == 0
        assert len(receiver.received) == 2
        clock.advance(1)  # cooldown over: one trial
        assert await w.run_once() == 1
        assert len(receiver.received) == 3
        assert w.breakers["erp"].state == "open"
        assert w.breakers["erp"].cooldown == 20  # the failed trial doubled it
        clock.advance(19)
        assert await w.run_once() == 0
        receiver.default = 204
        clock.advance(1)
        assert await w.run_once() == 1  # the trial succeeds and closes the circuit
        assert w.breakers["erp"].state == "closed" and gauge() == 0
        assert await w.run_once() == 2
    finally:
        await w.close()
    assert {d.status for d in await deliveries(store)} == {"delivered"}
    assert len(receiver.received) == 6


async def test_a_dead_delivery_is_a_warning_and_a_retry_is_not(store: SqliteStore) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks"
    cfg = config(http(url, max_attempts=2, initial_backoff_seconds=1, breaker_failures=100))
    await accept(store, cfg, 1)
    clock = Clock()
    w = worker(store, cfg, clock)
    try:
        with capture_logs() as lines:
            assert await w.run_once() == 1
            clock.advance(60)
            assert await w.run_once() == 1
    finally:
        await w.close()
    sent = [line for line in lines if line["event"].startswith("delivery_")]
    assert [(line["event"], line["log_level"]) for line in sent] == [
        ("delivery_failed", "info"),
        ("delivery_dead", "warning"),
    ]
    assert sent[1]["destination"] == "erp" and sent[1]["state"] == "dead"
    assert "dead: 2 attempts failed" in sent[1]["error"]


async def test_breaker_openings_and_closings_are_logged(
    store: SqliteStore, receiver: Receiver
) -> None:
    cfg = config(
        http(
            receiver.url,
            concurrency=1,
            timeout_seconds=1,
            breaker_failures=2,
            breaker_cooldown_seconds=10,
            initial_backoff_seconds=1,
        ),
        lease_seconds=6,
    )
    await accept(store, cfg, 1, 2, 3)
    receiver.default = 500
    clock = Clock()
    w = worker(store, cfg, clock)

    def breaker_lines(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(x["event"], x["log_level"]) for x in lines if "breaker" in x["event"]]

    try:
        with capture_logs() as opened:
            await w.run_once()
        assert breaker_lines(opened) == [("circuit_breaker_opened", "warning")]
        (line,) = (x for x in opened if x["event"] == "circuit_breaker_opened")
        assert line["destination"] == "erp" and line["cooldown_seconds"] == 10
        assert line["cause"] == "2 consecutive failures" and "500" in line["error"]
        clock.advance(10)
        with capture_logs() as reopened:
            await w.run_once()  # the trial fails
        assert breaker_lines(reopened) == [("circuit_breaker_opened", "warning")]
        (line,) = (x for x in reopened if x["event"] == "circuit_breaker_opened")
        assert line["cooldown_seconds"] == 20 and line["cause"] == "the trial delivery failed"
        receiver.default = 204
        clock.advance(20)
        with capture_logs() as closed:
            await w.run_once()  # the trial succeeds
            await w.run_once()  # the rest go out; nothing more to log about the breaker
        assert breaker_lines(closed) == [("circuit_breaker_closed", "info")]
    finally:
        await w.close()


async def test_deliveries_of_destinations_no_longer_configured_are_left_alone(
    store: SqliteStore, receiver: Receiver
) -> None:
    old = config(http(receiver.url, name="retired"))
    await accept(store, old, 1)
    w = worker(store, config(http(receiver.url)), Clock())
    try:
        assert await w.run_once() == 0
    finally:
        await w.close()
    assert [(d.destination, d.status) for d in await deliveries(store)] == [("retired", "pending")]


async def test_kafka_destination_end_to_end(
    store: SqliteStore,
    kafka_mock: MockKafka,
) -> None:
    cfg = config(
        {"name": "lake", "kind": "kafka", "brokers": kafka_mock.bootstrap, "topic": "events"}
    )
    await accept(store, cfg, 1, 2, 3)
    w = worker(store, cfg, Clock())
    try:
        assert await w.run_once() == 3
    finally:
        await w.close()
    assert {d.status for d in await deliveries(store)} == {"delivered"}
    records = kafka_mock.consume("events", 3)
    envelopes = {r.key(): msgspec.json.decode(r.value()) for r in records}
    assert set(envelopes) == {b"parking/1", b"parking/2", b"parking/3"}
    for key, envelope in envelopes.items():
        assert envelope["subject"] == key.decode()
        assert envelope["source"] == "/hookgate/sources/easypark"
        assert envelope["type"] == "hookgate.easypark.parking.completed"
        assert envelope["data"]["price"] == "12.50"
    assert all(
        r.headers() == [("content-type", b"application/cloudevents+json; charset=UTF-8")]
        for r in records
    )


async def test_run_delivers_when_woken_and_stops(store: SqliteStore, receiver: Receiver) -> None:
    cfg = config(http(receiver.url))
    w = DeliveryWorker(store, cfg, PROVIDERS, None, owner="w1")
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(w.run(stop, wake))
    try:
        await accept(store, cfg, 7)
        wake.set()
        await until_async(lambda: receiver.received, "a delivery")
        assert receiver.received[0].verified
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await w.close()


def test_destination_keys_work_as_written_in_toml() -> None:
    text = f"""
[[destinations]]
name = "erp"
kind = "http"
url = "https://erp.example/hooks"
secret = "{SECRET}"
timeout_seconds = 5
[destinations.filter]
providers = ["easypark"]
event_types = ["hookgate.easypark.*"]
where = {{ "data.currency" = ["NOK", "SEK"] }}
[destinations.retry]
max_attempts = 4
initial_backoff_seconds = 2
max_backoff_seconds = 30
max_age_seconds = 600
"""
    cfg = parse_config(tomllib.loads(text), env={})
    (destination,) = cfg.destinations
    assert destination.policy().max_attempts == 4
    assert destination.selection().where == {"data.currency": ["NOK", "SEK"]}
    assert claim_limit(destination, batch_size=200, lease_seconds=60) == 8 * 6


async def test_one_subject_is_sent_in_order_within_a_pass(
    store: SqliteStore, receiver: Receiver
) -> None:
    cfg = config(http(receiver.url, concurrency=4))
    received = datetime.now(UTC)
    for n in range(5):
        await store.ingest(
            InboundEvent(
                id=new_id(),
                source="easypark",
                provider="easypark",
                event_type="parking.completed",
                received_at=received + timedelta(milliseconds=n),
                dedup_key=f"parking:1:{n}",
                raw_body=b"{}",
                body_sha256="00",
                headers={},
                document={"parkingId": 1, "n": n},
                subject="parking/1",
            )
        )
    router = Router(cfg.destinations, PROVIDERS)
    await store.process_pending(lambda tx, event: router.destinations_for(event), 100)
    w = worker(store, cfg, Clock())
    try:
        assert await w.run_once() == 5
    finally:
        await w.close()
    assert [r.payload["data"]["n"] for r in receiver.received] == [0, 1, 2, 3, 4]


class Broken(EasyPark):
    """A provider whose payload hook fails for one parking."""

    def cloudevent_data(self, event: StoredEvent) -> Any:
        if event.document["parkingId"] == 2:
            raise KeyError("zone")
        return event.document


async def test_a_failing_provider_hook_fails_only_its_delivery(
    store: SqliteStore, receiver: Receiver
) -> None:
    cfg = config(http(receiver.url))
    await accept(store, cfg, 1, 2, 3)
    w = DeliveryWorker(store, cfg, {"easypark": Broken()}, None, owner="w1", clock=Clock())
    try:
        assert await w.run_once() == 3
    finally:
        await w.close()
    by_subject = {d.event_id: d for d in await deliveries(store)}
    assert sorted(d.status for d in by_subject.values()) == ["delivered", "delivered", "failed"]
    (failed,) = [d for d in by_subject.values() if d.status == "failed"]
    assert failed.last_error == "KeyError: 'zone'"
    assert w.breakers["erp"].state == "closed"
