"""The SQLite store: group commit, dedup on the unique key, isolation, sessions, paging."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hookgate.authorization.decider import Claim
from hookgate.ids import floor_id, new_id
from hookgate.store.base import (
    Abandoned,
    Decision,
    DecisionFilter,
    EventFilter,
    InboundEvent,
    SchemaOutdated,
    SessionEnd,
    StoreError,
)
from hookgate.store.migrations import migrations
from hookgate.store.sqlite import SqliteStore


def event(dedup: str, source: str = "easypark", **fields: object) -> InboundEvent:
    data: dict[str, object] = {
        "id": new_id(),
        "source": source,
        "provider": "easypark",
        "event_type": "parking.completed",
        "received_at": datetime.now(UTC),
        "dedup_key": dedup,
        "raw_body": b'{"parkingId": 1}',
        "body_sha256": "00",
        "headers": {"content-type": "application/json"},
        "document": {"parkingId": 1, "price": "22.45"},
    }
    data.update(fields)
    return InboundEvent(**data)  # type: ignore[arg-type]


def decision(session_id: str | None, event_id: str, source: str = "zaptec") -> Decision:
    return Decision(
        id=new_id(),
        decided_at=datetime.now(UTC),
        source=source,
        event_id=event_id,
        charger_id="CH1",
        token="TAG1",
        user_id=None,
        installation_id=None,
        result="ALLOWED" if session_id else "UNKNOWN",
        reasons=["test"],
        session_id=session_id,
    )


@pytest.fixture
async def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    batches: list[int] = []
    s = SqliteStore(str(tmp_path / "t.db"), auto_migrate=True, on_batch=batches.append)
    s.batches = batches  # type: ignore[attr-defined]
    await s.open()
    yield s
    await s.close()


async def test_unmigrated_database_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "new.db"))
    with pytest.raises(SchemaOutdated, match="hookgate migrate"):
        await store.open()
    assert await store.migrate() == [version for version, _, _ in migrations("sqlite")]
    assert await store.migrate() == []
    assert await store.pending_migrations() == []


async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    results = await asyncio.gather(*(store.ingest(event(f"k{i}")) for i in range(200)))
    assert all(r.stored for r in results)
    batches = store.batches  # type: ignore[attr-defined]
    assert sum(batches) == 200
    assert len(batches) < 200, "200 concurrent writes must not take 200 commits"


async def test_dedup_rests_on_the_unique_key(store: SqliteStore) -> None:
    first = event("parking:7")
    results = await asyncio.gather(*(store.ingest(first) for _ in range(1)))
    dupes = await asyncio.gather(*(store.ingest(event("parking:7")) for _ in range(20)))
    assert results[0].stored
    assert not any(d.stored for d in dupes)
    assert {d.event_id for d in dupes} == {first.id}
    assert (await store.ingest(event("parking:7", source="other"))).stored


async def test_a_failing_write_does_not_lose_its_neighbours(store: SqliteStore) -> None:
    bad = event("dup-id")
    good = [event(f"ok{i}") for i in range(10)]
    await store.ingest(bad)
    clash = event("other-key", id=bad.id)  # same primary key: ignored, not an error

    def explode(_: sqlite3.Connection) -> None:
        raise sqlite3.IntegrityError("boom")

    results = await asyncio.gather(
        *(store.ingest(e) for e in good[:5]),
        store._write(explode),
        store.ingest(clash),
        *(store.ingest(e) for e in good[5:]),
        return_exceptions=True,
    )
    assert isinstance(results[5], StoreError)
    assert [r.stored for r in results[:5] + results[7:]] == [True] * 10  # type: ignore[union-attr]
    page = await store.list_events(EventFilter(), None, 100)
    assert len(page.items) == 11


async def test_session_start_end_and_repeat(store: SqliteStore) -> None:
    start = event("start:1", source="zaptec", event_type="session.start")
    await store.record_session_start(start, decision("S-1", start.id))
    assert (await store.get_session("zaptec", "S-1"))["status"] == "active"  # type: ignore[index]

    end = SessionEnd(session_ids=["S-1"], ended_at=None, energy_kwh="12.5")
    first = await store.record_session_end(event("end:S-1", source="zaptec"), end)
    again = await store.record_session_end(event("end:S-1", source="zaptec"), end)
    assert first.stored and first.matched
    assert not again.stored and again.event_id == first.event_id
    row = await store.get_session("zaptec", "S-1")
    assert row is not None and row["status"] == "ended" and row["energy_kwh"] == "12.5"


async def test_end_without_start_is_flagged_unmatched(store: SqliteStore) -> None:
    end_event = event("end:X", source="zaptec")
    result = await store.record_session_end(
        end_event, SessionEnd(session_ids=["X", "ext-9"], ended_at=None, energy_kwh=None)
    )
    assert result.stored and not result.matched
    stored = await store.get_event(result.event_id)
    assert stored is not None and "unmatched" in stored["flags"]
    assert (await store.get_session("zaptec", "X"))["status"] == "unmatched"  # type: ignore[index]


async def test_external_id_matches_the_issued_session(store: SqliteStore) -> None:
    start = event("start:2", source="zaptec")
    await store.record_session_start(start, decision("OURS", start.id))
    result = await store.record_session_end(
        event("end:theirs", source="zaptec"),
        SessionEnd(session_ids=["theirs", "OURS"], ended_at=None, energy_kwh="1"),
    )
    assert result.matched
    assert (await store.get_session("zaptec", "OURS"))["status"] == "ended"  # type: ignore[index]


async def test_claimed_by_fallback_abandons_the_write(store: SqliteStore) -> None:
    claim = Claim()
    assert claim.take(Claim.FALLBACK)
    start = event("start:3", source="zaptec")
    with pytest.raises(Abandoned):
        await store.record_session_start(
            start, decision("LOST", start.id), claim=lambda: claim.take(Claim.WRITER)
        )
    assert await store.get_session("zaptec", "LOST") is None
    assert await store.get_event(start.id) is None

    fallback = decision(None, start.id)
    fallback.fallback = True
    await store.record_fallback(start, fallback, void_session=None)
    assert await store.get_event(start.id) is not None
    page = await store.list_decisions(DecisionFilter(source="zaptec"), None, 10)
    assert [d["fallback"] for d in page.items] == [True]


async def test_fallback_voids_a_session_nobody_was_told_about(store: SqliteStore) -> None:
    start = event("start:4", source="zaptec")
    await store.record_session_start(start, decision("ORPHAN", start.id))
    answered = decision(None, start.id)
    answered.fallback = True
    await store.record_fallback(start, answered, void_session="ORPHAN")
    assert (await store.get_session("zaptec", "ORPHAN"))["status"] == "void"  # type: ignore[index]


async def test_cursor_pages_walk_every_row_once_newest_first(store: SqliteStore) -> None:
    ids = []
    for i in range(7):
        ids.append((await store.ingest(event(f"p{i}"))).event_id)
        await asyncio.sleep(0.002)
    seen, cursor = [], None
    while True:
        page = await store.list_events(EventFilter(), cursor, 3)
        seen.extend(item["id"] for item in page.items)
        if page.next is None:
            break
        cursor = page.next
    assert seen == list(reversed(ids))


async def test_since_filter(store: SqliteStore) -> None:
    await store.ingest(event("old"))
    await asyncio.sleep(0.01)
    cut = datetime.now(UTC)
    await asyncio.sleep(0.01)
    recent = await store.ingest(event("new"))
    page = await store.list_events(EventFilter(since=cut), None, 10)
    assert [item["id"] for item in page.items] == [recent.event_id]
    later = await store.list_events(EventFilter(since=cut + timedelta(hours=1)), None, 10)
    assert later.items == []


def test_floor_id_orders_with_new_ids() -> None:
    before = floor_id(datetime.now(UTC) - timedelta(milliseconds=5))
    now_id = new_id()
    after = floor_id(datetime.now(UTC) + timedelta(seconds=1))
    assert before <= now_id < after
    assert len(now_id) == 26 and len(before) == 26


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "c.db"), auto_migrate=True)
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.ingest(event("late"))


async def test_writes_queued_before_close_are_committed(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = SqliteStore(str(path), auto_migrate=True)
    await store.open()
    pending = [asyncio.ensure_future(store.ingest(event(f"q{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert all(f.result().stored for f in pending)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 50
    conn.close()
