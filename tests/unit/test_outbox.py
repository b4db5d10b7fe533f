"""The outbox in both stores: processing batches, delivery leases, replay, requeue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from hookgate.config import StorageConfig
from hookgate.domain.events import InboundEvent, StoredEvent
from hookgate.domain.outbox import DeliveryOutcome
from hookgate.domain.queries import EventFilter, ReplayFilter, ViewFilter
from hookgate.ids import new_id
from hookgate.store import Store, make_store
from hookgate.store.base import ViewTx

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def event(dedup: str, source: str = "easypark", status: str = "received") -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source=source,
        provider="easypark",
        event_type="parking.completed",
        received_at=datetime.now(UTC),
        dedup_key=dedup,
        raw_body=b"{}",
        body_sha256="00",
        headers={},
        document={"parkingId": dedup},
        subject=f"parking/{dedup}",
        status=status,
    )


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[Store]:
    db = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await db.open()
    yield db
    await db.close()


def to(*names: str):  # type: ignore[no-untyped-def]
    def handler(tx: ViewTx, ev: StoredEvent) -> list[str]:
        return list(names)

    return handler


async def test_processing_marks_events_and_fans_out_one_delivery_per_destination(
    store: Store,
) -> None:
    for key in ("a", "b", "c"):
        await store.ingest(event(key))
    seen: list[str] = []

    def handler(tx: ViewTx, ev: StoredEvent) -> list[str]:
        seen.append(ev.document["parkingId"])
        return ["erp", "lake", "erp"]

    result = await store.process_pending(handler, 10)
    assert (result.processed, result.failed, result.deliveries) == (3, 0, 6)
    assert sorted(seen) == ["a", "b", "c"]
    again = await store.process_pending(handler, 10)
    assert (again.processed, again.deliveries) == (0, 0)
    page = await store.list_events(EventFilter(status="processed"), None, 10)
    assert len(page.items) == 3
    deliveries = await store.list_deliveries(ViewFilter(equal={"destination": "erp"}), None, 10)
    assert {d.status for d in deliveries.items} == {"pending"}
    assert len(deliveries.items) == 3


async def test_a_failing_handler_fails_only_its_event_and_rolls_its_changes_back(
    store: Store,
) -> None:
    await store.ingest(event("good"))
    bad = event("bad")
    await store.ingest(bad)

    def handler(tx: ViewTx, ev: StoredEvent) -> list[str]:
        if ev.document["parkingId"] == "bad":
            raise ValueError("cannot project")
        return ["erp"]

    result = await store.process_pending(handler, 10)
    assert (result.processed, result.failed, result.deliveries) == (1, 1, 1)
    row = await store.get_event(bad.id)
    assert row is not None and row.status == "failed"
    assert (await store.replay(ReplayFilter(event_ids=[bad.id]))) == 1
    result = await store.process_pending(to("erp"), 10)
    assert (result.processed, result.deliveries) == (1, 1)


async def test_quarantined_events_wait_until_requeued(store: Store) -> None:
    held = event("quarantine:x", status="quarantined")
    await store.ingest(held)
    assert (await store.process_pending(to("erp"), 10)).processed == 0
    taken = event("parking:1")
    await store.ingest(taken)
    assert not await store.requeue_event(
        held.id, {"parkingId": 1}, "parking.completed", "parking:1", "parking/1", []
    )
    assert await store.requeue_event(
        held.id, {"parkingId": 2}, "parking.completed", "parking:2", "parking/2", []
    )
    assert (await store.process_pending(to(), 10)).processed == 2


async def test_leases_give_a_delivery_to_one_worker_until_they_expire(store: Store) -> None:
    await store.ingest(event("a"))
    await store.process_pending(to("erp"), 10)
    now = datetime.now(UTC)
    first = await store.claim_deliveries("w1", now, 10, 30, ["erp"])
    assert [job.attempt for job in first] == [1]
    assert first[0].event.document == {"parkingId": "a"}
    assert await store.claim_deliveries("w2", now, 10, 30, ["erp"]) == []
    assert await store.claim_deliveries("w2", now, 10, 30, ["other"]) == []
    # w1 dies; after the lease w2 takes it over, and w1's late report is refused.
    later = now + timedelta(seconds=31)
    second = await store.claim_deliveries("w2", later, 10, 30, ["erp"])
    assert [job.id for job in second] == [first[0].id]
    done = DeliveryOutcome(state="delivered", started_at=later, duration_ms=3, status_code=200)
    assert not await store.finish_delivery(first[0], "w1", done)
    assert await store.finish_delivery(second[0], "w2", done)
    attempts = await store.delivery_attempts(first[0].id)
    assert [a.outcome for a in attempts] == ["delivered", "delivered"]
    assert await store.claim_deliveries("w3", later + timedelta(hours=1), 10, 30, ["erp"]) == []


async def test_failed_deliveries_wait_for_their_retry_time_and_dead_ones_for_replay(
    store: Store,
) -> None:
    await store.ingest(event("a"))
    await store.process_pending(to("erp"), 10)
    now = datetime.now(UTC)
    [job] = await store.claim_deliveries("w", now, 10, 30, ["erp"])
    retry_at = now + timedelta(seconds=10)
    failed = DeliveryOutcome(
        state="failed", started_at=now, duration_ms=5, status_code=503, retry_at=retry_at
    )
    assert await store.finish_delivery(job, "w", failed)
    assert await store.claim_deliveries("w", now + timedelta(seconds=9), 10, 30, ["erp"]) == []
    [job] = await store.claim_deliveries("w", retry_at, 10, 30, ["erp"])
    assert job.attempt == 2
    dead = DeliveryOutcome(state="dead", started_at=retry_at, duration_ms=5, error="timeout")
    assert await store.finish_delivery(job, "w", dead)
    far = now + timedelta(days=30)
    assert await store.claim_deliveries("w", far, 10, 30, ["erp"]) == []
    assert await store.replay(ReplayFilter(source="easypark", status="dead")) == 1
    [job] = await store.claim_deliveries("w", datetime.now(UTC), 10, 30, ["erp"])
    assert job.attempt == 1


async def test_replay_to_a_named_destination_creates_the_missing_delivery(
    store: Store,
) -> None:
    ev = event("a")
    await store.ingest(ev)
    await store.process_pending(to("erp"), 10)
    assert await store.replay(ReplayFilter(event_ids=[ev.id], destination="lake")) == 1
    assert await store.replay(ReplayFilter(event_ids=["0" * 26])) == 0
    claimed = await store.claim_deliveries("w", datetime.now(UTC), 10, 30, ["erp", "lake"])
    assert sorted(job.destination for job in claimed) == ["erp", "lake"]


async def test_destinations_are_disabled_and_enabled_again(store: Store) -> None:
    await store.set_destination_disabled("erp", "410 Gone")
    states = await store.destination_states()
    assert states["erp"].reason == "410 Gone"
    await store.set_destination_disabled("erp", None)
    assert await store.destination_states() == {}
