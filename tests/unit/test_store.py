"""Both stores: group commit, dedup on the unique key, isolation, sessions, paging,
limits, retention."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from hookgate.authorization.decider import Claim
from hookgate.config import StorageConfig
from hookgate.domain.decisions import ConsumptionReport, Decision, Limit, SessionEnd
from hookgate.domain.errors import Abandoned, LimitReached, SchemaOutdated, StoreError
from hookgate.domain.events import InboundEvent, Rejection, StoredEvent
from hookgate.domain.queries import DecisionFilter, EventFilter
from hookgate.domain.rules import AuthEntity
from hookgate.domain.tariffs import Priced, Tariff, price
from hookgate.domain.tariffs import Session as PricedSession
from hookgate.ids import floor_id, new_id
from hookgate.store import Store, make_store
from hookgate.store.base import ViewTx
from hookgate.store.migrations import migrations
from support.clock import id_at
from support.storage import query_url

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@contextlib.asynccontextmanager
async def open_stores(storage_url: str, count: int) -> AsyncIterator[list[Store]]:
    """`count` stores on one database, as that many instances would open them."""
    stores = [make_store(StorageConfig(url=storage_url, auto_migrate=True)) for _ in range(count)]
    for s in stores:
        await s.open()
    try:
        yield stores
    finally:
        for s in stores:
            await s.close()


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
async def store(storage_url: str):  # type: ignore[no-untyped-def]
    batches: list[int] = []
    s = make_store(StorageConfig(url=storage_url, auto_migrate=True), batches.append)
    s.batches = batches  # type: ignore[attr-defined]
    await s.open()
    yield s
    await s.close()


async def test_unmigrated_database_is_refused(storage_url: str) -> None:
    store = make_store(StorageConfig(url=storage_url))
    with pytest.raises(SchemaOutdated, match="hookgate migrate"):
        await store.open()
    assert await store.migrate() == [version for version, _, _ in migrations("sqlite")]
    assert await store.migrate() == []
    assert await store.pending_migrations() == []


async def test_concurrent_migrations_apply_each_version_once(storage_url: str) -> None:
    stores = [make_store(StorageConfig(url=storage_url)) for _ in range(3)]
    applied = await asyncio.gather(*(s.migrate() for s in stores))
    everything = [version for version, _, _ in migrations("sqlite")]
    assert sorted(v for versions in applied for v in versions) == everything


async def test_concurrent_writes_share_commits(store: Store) -> None:
    results = await asyncio.gather(*(store.ingest(event(f"k{i}")) for i in range(200)))
    assert all(r.stored for r in results)
    batches = store.batches  # type: ignore[attr-defined]
    assert sum(batches) == 200
    assert len(batches) < 200, "200 concurrent writes must not take 200 commits"


async def test_dedup_rests_on_the_unique_key(store: Store) -> None:
    first = event("parking:7")
    results = await asyncio.gather(*(store.ingest(first) for _ in range(1)))
    dupes = await asyncio.gather(*(store.ingest(event("parking:7")) for _ in range(20)))
    assert results[0].stored
    assert not any(d.stored for d in dupes)
    assert {d.event_id for d in dupes} == {first.id}
    assert (await store.ingest(event("parking:7", source="other"))).stored


async def test_a_failing_write_does_not_lose_its_neighbours(store: Store) -> None:
    bad = event("dup-id")
    good = [event(f"ok{i}") for i in range(10)]
    await store.ingest(bad)
    clash = event("other-key", id=bad.id)  # same primary key: ignored, not an error

    async def explode(_: Any) -> None:
        raise RuntimeError("boom")

    write = store._write  # type: ignore[attr-defined]
    results = await asyncio.gather(
        *(store.ingest(e) for e in good[:5]),
        write(explode),
        store.ingest(clash),
        *(store.ingest(e) for e in good[5:]),
        return_exceptions=True,
    )
    assert isinstance(results[5], StoreError)
    assert [r.stored for r in results[:5] + results[7:]] == [True] * 10  # type: ignore[union-attr]
    page = await store.list_events(EventFilter(), None, 100)
    assert len(page.items) == 11


async def test_session_start_end_and_repeat(store: Store) -> None:
    start = event("start:1", source="zaptec", event_type="session.start")
    await store.record_session_start(start, decision("S-1", start.id))
    assert (await store.get_session("zaptec", "S-1")).status == "active"  # type: ignore[union-attr]

    end = SessionEnd(session_ids=["S-1"], ended_at=None, energy_kwh="12.5")
    first = await store.record_session_end(event("end:S-1", source="zaptec"), end)
    again = await store.record_session_end(event("end:S-1", source="zaptec"), end)
    assert first.stored and first.matched
    assert not again.stored and again.event_id == first.event_id
    row = await store.get_session("zaptec", "S-1")
    assert row is not None and row.status == "ended" and row.energy_kwh == "12.5"


async def test_end_without_start_is_flagged_unmatched(store: Store) -> None:
    end_event = event("end:X", source="zaptec")
    result = await store.record_session_end(
        end_event, SessionEnd(session_ids=["X", "ext-9"], ended_at=None, energy_kwh=None)
    )
    assert result.stored and not result.matched
    stored = await store.get_event(result.event_id)
    assert stored is not None and "unmatched" in stored.flags
    assert (await store.get_session("zaptec", "X")).status == "unmatched"  # type: ignore[union-attr]


async def test_an_end_without_money_is_priced_from_its_start_for_the_budgets(
    store: Store,
) -> None:
    """The pricing hook sees the charger, installation and start the start call stored
    (the end names none of them here) and the token; its total is the money accounted."""
    start = event("start:priced", source="zaptec", event_type="session.start")
    approved = msgspec.structs.replace(decision("P-1", start.id), installation_id="SITE-9")
    await store.record_session_start(start, approved)
    seen: list[tuple[PricedSession, str | None]] = []

    def pricing(session: PricedSession, token: str | None) -> Priced | None:
        seen.append((session, token))
        tariff = Tariff(name="site", currency="SEK", per_kwh="2.50", installations=["SITE-9"])
        return price(session, [tariff])

    ended = datetime.now(UTC)
    end = SessionEnd(session_ids=["P-1"], ended_at=ended, energy_kwh="30")
    await store.record_session_end(event("end:P-1", source="zaptec"), end, pricing)
    unmatched = SessionEnd(
        session_ids=["P-2"], ended_at=ended, energy_kwh="4", token="TAG2", installation_id="X"
    )
    await store.record_session_end(event("end:P-2", source="zaptec"), unmatched, pricing)
    # An end that says what the session cost (an OCPI CDR) is not priced again.
    billed = SessionEnd(
        session_ids=["P-3"], ended_at=ended, energy_kwh="30", money="12.00", currency="EUR"
    )
    await store.record_session_end(event("end:P-3", source="zaptec"), billed, pricing)

    [(session, token), (other, other_token)] = seen
    assert (session.charger_id, session.installation_id, token) == ("CH1", "SITE-9", "TAG1")
    assert session.started_at is not None and session.started_at <= ended
    assert (other.installation_id, other.started_at, other_token) == ("X", None, "TAG2")
    snapshot = await store.auth_snapshot(ended - timedelta(days=1))
    money = {row["session_key"]: (row["money"], row["currency"]) for row in snapshot.consumption}
    assert money == {
        "session:P-1": ("75.00", "SEK"),
        "session:P-2": (None, None),
        "session:P-3": ("12.00", "EUR"),
    }


async def test_external_id_matches_the_issued_session(store: Store) -> None:
    start = event("start:2", source="zaptec")
    await store.record_session_start(start, decision("OURS", start.id))
    result = await store.record_session_end(
        event("end:theirs", source="zaptec"),
        SessionEnd(session_ids=["theirs", "OURS"], ended_at=None, energy_kwh="1"),
    )
    assert result.matched
    assert (await store.get_session("zaptec", "OURS")).status == "ended"  # type: ignore[union-attr]


async def test_claimed_by_fallback_abandons_the_write(store: Store) -> None:
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
    assert [d.fallback for d in page.items] == [True]


async def test_fallback_voids_a_session_nobody_was_told_about(store: Store) -> None:
    start = event("start:4", source="zaptec")
    await store.record_session_start(start, decision("ORPHAN", start.id))
    answered = decision(None, start.id)
    answered.fallback = True
    await store.record_fallback(start, answered, void_session="ORPHAN")
    assert (await store.get_session("zaptec", "ORPHAN")).status == "void"  # type: ignore[union-attr]


async def test_cursor_pages_walk_every_row_once_newest_first(store: Store) -> None:
    ids = []
    for i in range(7):
        # Ids of one process strictly increase, even within a millisecond.
        ids.append((await store.ingest(event(f"p{i}"))).event_id)
    seen, cursor = [], None
    while True:
        page = await store.list_events(EventFilter(), cursor, 3)
        seen.extend(item.id for item in page.items)
        if page.next is None:
            break
        cursor = page.next
    assert seen == list(reversed(ids))


async def test_since_filter(store: Store) -> None:
    now = datetime.now(UTC)
    a_minute_ago = now - timedelta(minutes=1)
    await store.ingest(event("old", id=id_at(a_minute_ago), received_at=a_minute_ago))
    cut = now - timedelta(seconds=30)
    recent = await store.ingest(event("new"))
    page = await store.list_events(EventFilter(since=cut), None, 10)
    assert [item.id for item in page.items] == [recent.event_id]
    later = await store.list_events(EventFilter(since=cut + timedelta(hours=1)), None, 10)
    assert later.items == []


def test_floor_id_orders_with_new_ids() -> None:
    before = floor_id(datetime.now(UTC) - timedelta(milliseconds=5))
    now_id = new_id()
    after = floor_id(datetime.now(UTC) + timedelta(seconds=1))
    assert before <= now_id < after
    assert len(now_id) == 26 and len(before) == 26


def test_ids_of_one_process_strictly_increase() -> None:
    ids = [new_id() for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(set(ids))


async def test_closed_store_refuses_writes(storage_url: str) -> None:
    store = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await store.open()
    await store.close()
    with pytest.raises(StoreError):
        await store.ingest(event("late"))


async def test_writes_queued_before_close_are_committed(storage_url: str) -> None:
    store = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await store.open()
    pending = [asyncio.ensure_future(store.ingest(event(f"q{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert all(f.result().stored for f in pending)
    assert query_url(storage_url, "SELECT count(*) FROM inbox")[0][0] == 50


def limit(**fields: Any) -> Limit:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "subject": "token",
        "subject_id": "TAG1",
        "active_since": now - timedelta(hours=24),
        "max_kwh": "10",
        "reserve_kwh": "6",
        "since": now - timedelta(hours=1),
        "until": now + timedelta(hours=1),
    }
    data.update(fields)
    return Limit(**data)


async def test_a_limit_counts_committed_sessions_and_consumption(store: Store) -> None:
    first = event("start:L1", source="zaptec")
    held = decision("L-1", first.id)
    held.reserved_kwh = "6"
    await store.record_session_start(first, held, limits=[limit()])
    second = event("start:L2", source="zaptec")
    with pytest.raises(LimitReached, match="6 kWh reserved of 10 kWh"):
        await store.record_session_start(second, decision("L-2", second.id), limits=[limit()])
    assert await store.get_session("zaptec", "L-2") is None
    assert await store.get_event(second.id) is None  # nothing of the refused start is kept

    # The first session ends having used 3 kWh: 3 used + 6 reserve fits in 10.
    await store.record_session_end(
        event("end:L-1", source="zaptec"),
        SessionEnd(session_ids=["L-1"], ended_at=None, energy_kwh="3"),
    )
    await store.record_session_start(second, decision("L-2", second.id), limits=[limit()])
    third = event("start:L3", source="zaptec")
    with pytest.raises(LimitReached, match="active sessions"):
        await store.record_session_start(
            third,
            decision("L-3", third.id),
            limits=[limit(max_kwh=None, max_sessions=1)],
        )


async def test_consumption_reports_of_one_batch_apply_in_arrival_order(store: Store) -> None:
    def report(session: str, kwh: str, money: str | None = None) -> ConsumptionReport:
        return ConsumptionReport(
            session_key=f"session:{session}",
            origin="ampeco",
            token="T1",
            kwh=kwh,
            money=money,
            currency="EUR" if money else None,
            occurred_at=datetime.now(UTC),
        )

    first = event("amp-0", source="ampeco")
    # Queued together, so they share commits: a larger report replaces the energy, a
    # smaller one changes nothing, money is kept when a report names none, a re-delivered
    # event is not accounted again, and another session is its own row.
    results = await asyncio.gather(
        store.ingest(first, report("S1", "1.5")),
        store.ingest(event("amp-1", source="ampeco"), report("S1", "4", "9.10")),
        store.ingest(event("amp-2", source="ampeco"), report("S1", "2")),
        store.ingest(event("amp-0", source="ampeco"), report("S1", "99")),
        store.ingest(event("amp-3", source="ampeco"), report("S2", "0.25")),
        store.ingest(event("amp-4", source="ampeco"), report("S1", "4", "9.10")),
    )
    assert [r.stored for r in results] == [True, True, True, False, True, True]
    changes = await store.auth_changes(0, 100)
    rows = {c.row["session_key"]: c.row for c in changes if c.kind == "consumption" and c.row}
    assert {k: (Decimal(r["kwh"]), r["money"]) for k, r in rows.items()} == {
        "session:S1": (Decimal(4), "9.10"),
        "session:S2": (Decimal("0.25"), None),
    }
    # Entries only for reports that changed something: S1 inserted and raised, S2 inserted.
    assert len([c for c in changes if c.kind == "consumption"]) == 3


async def test_two_stores_on_one_database_cannot_both_take_the_last_reservation(
    storage_url: str, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("one process per SQLite file")
    async with open_stores(storage_url, 2) as stores:
        starts = [event(f"start:race{i}", source="zaptec") for i in range(6)]
        decisions = [decision(f"R-{i}", e.id) for i, e in enumerate(starts)]
        for d in decisions:
            d.reserved_kwh = "6"
        results = await asyncio.gather(
            *(
                stores[i % 2].record_session_start(e, d, limits=[limit()])
                for i, (e, d) in enumerate(zip(starts, decisions, strict=True))
            ),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 1, results
        assert all(isinstance(r, LimitReached) for r in results if r is not None)
        assert query_url(storage_url, "SELECT count(*) FROM authorized_sessions")[0][0] == 1


async def test_a_duplicate_storm_across_stores_stores_one_event(
    storage_url: str, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("one process per SQLite file")
    async with open_stores(storage_url, 3) as stores:
        copies = [event(f"parking:{n}") for n in range(20) for _ in range(6)]
        results = await asyncio.gather(
            *(stores[i % 3].ingest(e) for i, e in enumerate(copies)), return_exceptions=True
        )
        assert not [r for r in results if isinstance(r, BaseException)]
        stored = [r for r in results if r.stored]  # type: ignore[union-attr]
        assert len(stored) == 20
        by_key = {}
        for e, r in zip(copies, results, strict=True):
            by_key.setdefault(e.dedup_key, set()).add(r.event_id)  # type: ignore[union-attr]
        assert all(len(ids) == 1 for ids in by_key.values())
        assert query_url(storage_url, "SELECT count(*) FROM inbox")[0][0] == 20


async def test_stores_processing_one_database_together_never_fail_an_event_on_a_lock(
    storage_url: str, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("one process per SQLite file")
    async with open_stores(storage_url, 2) as stores:
        # Events of a few sessions, interleaved, so both stores' batches touch the same
        # view rows; each event updates two sessions' rows, in its own order.
        for n in range(120):
            await stores[n % 2].ingest(event(f"k{n}", subject=f"session/{n % 6}"))

        def handler(tx: ViewTx, ev: StoredEvent) -> list[str]:
            here = int((ev.subject or "session/0").rpartition("/")[2])
            for key in (str(here), str((here + 1) % 6)):
                row = tx.get("provider_refs", {"source": "s", "kind": "k", "ref_id": key})
                seen = list(row["event_ids"]) if row else []
                tx.upsert(
                    "provider_refs",
                    {
                        "source": "s",
                        "kind": "k",
                        "ref_id": key,
                        "id": row["id"] if row else new_id(),
                        "first_seen_at": ev.received_at,
                        "last_occurred_at": ev.received_at,
                        "last_event_id": ev.id,
                        "event_ids": sorted({*seen, ev.id}),
                    },
                )
            return []

        async def drain(store: Any) -> None:
            for _ in range(200):
                result = await store.process_pending(handler, 15)
                if not (result.processed or result.failed):
                    return

        await asyncio.gather(*(drain(s) for s in stores))
        statuses = query_url(storage_url, "SELECT status, count(*) FROM inbox GROUP BY status")
        assert dict(statuses) == {"processed": 120}


async def test_change_log_follows_writes_from_every_store(storage_url: str) -> None:
    async with open_stores(storage_url, 2) as stores:
        writes = [
            stores[i % 2].auth_put([AuthEntity(kind="token", key=f"T{i}", doc=b'{"uid":"x"}')])
            for i in range(40)
        ]
        await asyncio.gather(*writes)
        changes = await stores[0].auth_changes(0, 1000)
        assert sorted(c.key for c in changes) == sorted(f"T{i}" for i in range(40))
        seqs = [c.seq for c in changes]
        assert seqs == sorted(seqs)


async def test_documents_and_odd_text_come_back_as_written(store: Store) -> None:
    doc = {"zeta": 1, "alpha": {"b": 2, "a": 1}, "text": "nul\u0000byte"}
    stored = await store.ingest(event("odd\x00key", document=doc, subject="plate\x00"))
    item = await store.get_event(stored.event_id)
    assert item is not None
    assert list(item.document) == ["zeta", "alpha", "text"]
    assert list(item.document["alpha"]) == ["b", "a"]
    assert item.document["text"] == "nul\u0000byte"
    assert isinstance(item.received_at, str) and item.received_at.endswith("Z")


async def test_prune_clears_old_bodies_and_rejections(store: Store) -> None:
    now = datetime.now(UTC)
    before = now - timedelta(minutes=1)
    old = await store.ingest(event("old-1", id=id_at(before), received_at=before))
    failing = await store.ingest(event("old-2", id=id_at(before), received_at=before))
    await store.record_rejection(
        Rejection(
            id=id_at(before),
            received_at=before,
            source="easypark",
            provider="easypark",
            method="POST",
            path="/hooks/easypark",
            status=401,
            reason="bad-credentials",
            detail="no",
            headers={},
            remote=None,
            body_sha256="00",
            body_size=2,
            body=b"{}",
        )
    )
    cut = now - timedelta(seconds=30)
    new = await store.ingest(event("new-1"))

    def handler(tx: Any, ev: Any) -> list[str]:
        if ev.id == failing.event_id:
            raise ValueError("cannot project")
        return []

    await store.process_pending(handler, 100)
    assert await store.prune(cut, dry_run=True) == {
        "inbox_bodies": 1,
        "rejections": 1,
        "rejection_counts": 0,
        "delivery_attempts": 0,
        "deliveries": 0,
        "auth_changes": 0,
        "console_revocations": 0,
    }
    assert (await store.prune(cut))["inbox_bodies"] == 1
    kept = await store.get_event(old.event_id)
    assert kept is not None and kept.raw_body == b"" and kept.body_sha256 == "00"
    assert kept.document == {"parkingId": 1, "price": "22.45"}
    kept_for_rerun = await store.get_event(failing.event_id)
    assert kept_for_rerun is not None and kept_for_rerun.raw_body != b""
    fresh = await store.get_event(new.event_id)
    assert fresh is not None and fresh.raw_body == b'{"parkingId": 1}'
    assert (await store.list_rejections(None, None, 10)).items == []
    assert (await store.prune(cut))["inbox_bodies"] == 0


async def test_connections_dropped_by_the_server_are_replaced_without_failing_a_write(
    storage_url: str, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("no server to drop connections")
    import psycopg

    from support.storage import PG_URL

    name = f"hg-drop-{new_id()[-8:].lower()}"
    store = make_store(
        StorageConfig(url=f"{storage_url}&application_name={name}", auto_migrate=True)
    )
    await store.open()
    try:
        assert (await store.ingest(event("before-restart"))).stored
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
        assert (await store.ingest(event("after-restart"))).stored
        assert len((await store.list_events(EventFilter(), None, 10)).items) == 2
    finally:
        await store.close()
