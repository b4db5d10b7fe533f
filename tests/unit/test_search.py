"""Search and aggregates on both backends: text and payload fields over processed events,
combined with the inbox filters and cursor paging; the chart aggregates; and one run of
the same data and queries on SQLite and PostgreSQL side by side, compared."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner, Result

from hookgate.cli import main
from hookgate.config import StorageConfig
from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.errors import BadCursor
from hookgate.domain.events import InboundEvent, RejectionCount, StoredEvent
from hookgate.domain.queries import ReplayFilter
from hookgate.emulate.ampeco_samples import sample
from hookgate.emulate.base import encode
from hookgate.emulate.easypark import transaction
from hookgate.emulate.ztlment import notification
from hookgate.ids import floor_id, new_id
from hookgate.store import Store, make_store
from hookgate.store.aggregates import (
    CostQuery,
    DecisionQuery,
    DeliveryQuery,
    EnergyQuery,
    EventCountQuery,
    RejectionQuery,
)
from hookgate.store.base import ViewTx
from hookgate.store.migrations import migrations
from hookgate.store.search import EventSearch, FieldMatch, InvalidQuery
from hookgate.timeutil import iso
from support.storage import fresh_storage, pg_available

pytestmark = pytest.mark.backends("sqlite", "postgresql")

T0 = datetime(2026, 3, 2, 10, 15, 30, tzinfo=UTC)
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def id_at(moment: datetime) -> str:
    """An id made at `moment` (ids carry their time, and time ranges are id ranges)."""
    return floor_id(moment)[:10] + "".join(random.choice(_DIGITS) for _ in range(16))


def _event(source: str, event_type: str, document: Any, at: datetime, **kw: Any) -> InboundEvent:
    return InboundEvent(
        id=id_at(at),
        source=source,
        provider=source,
        event_type=event_type,
        received_at=at,
        dedup_key=new_id(),
        raw_body=encode(document),
        body_sha256="00",
        headers={},
        document=document,
        **kw,
    )


def corpus() -> list[InboundEvent]:
    """Twelve events of three providers over three hours; one fails in processing."""
    events = []
    for n in range(6):
        doc = transaction(1000 + n)
        doc["licenseNumber"] = "ABC123" if n % 2 == 0 else f"XYZ{n}"
        doc["parkingOperatorName"] = "EuroPark Svenska AB"
        events.append(_event("easypark", "parking.completed", doc, T0 + timedelta(minutes=n)))
    for n, state in enumerate(("PENDING_APPROVAL", "PROCESSED", "PROCESSED")):
        doc = notification(500 + n, "PAYMENT_OBJECT", state)
        events.append(_event("ztlment", "payment", doc, T0 + timedelta(hours=1, minutes=n)))
    for n in range(3):
        doc = sample("BootNotification", n)
        doc["chargePointId"] = 17 if n < 2 else 18
        events.append(_event("ampeco", "BootNotification", doc, T0 + timedelta(hours=2, minutes=n)))
    return events


def write_url(url: str, sql: str, *params: Any) -> None:
    """Write one row on a connection of our own, `?` placeholders."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            with conn:
                conn.execute(sql, params)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(sql.replace("?", "%s").encode(), params)


def handler(tx: ViewTx, event: StoredEvent) -> list[str]:
    if isinstance(event.document, dict) and event.document.get("parkingId") == 1005:
        raise ValueError("cannot project")
    return ["archive"]


async def _fill(store: Store, events: list[InboundEvent] | None = None) -> list[InboundEvent]:
    events = events if events is not None else corpus()
    for ev in events:
        await store.ingest(ev)
    assert await process_all(store, handler) == (11, 1)
    return events


async def process_all(store: Store, work: Any) -> tuple[int, int]:
    """Process until nothing is left (SQLite stops a job when its time budget is spent),
    then index what processing settled."""
    processed = failed = 0
    while True:
        result = await store.process_pending(work, 100)
        if not result.processed + result.failed:
            while await store.index_search(500):
                pass  # as the worker does when processing is idle
            return processed, failed
        processed += result.processed
        failed += result.failed


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[Store]:
    db = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await db.open()
    yield db
    await db.close()


async def _ids(store: Store, where: EventSearch, limit: int = 50) -> list[str]:
    found, cursor = [], None
    while True:
        page = await store.search_events(where, cursor, limit)
        found.extend(hit.id for hit in page.items)
        if page.next is None:
            return found
        cursor = page.next


async def test_a_payload_field_finds_events_at_any_depth_ignoring_case_and_number_text(
    store: Store,
) -> None:
    events = await _fill(store)
    plates = [e.id for e in events if e.document.get("licenseNumber") == "ABC123"]
    found = await _ids(store, EventSearch(fields=[FieldMatch("licenseNumber", "abc123")]))
    assert found == plates[::-1]
    points = [e.id for e in events if e.document.get("chargePointId") == 17]
    assert (
        await _ids(store, EventSearch(fields=[FieldMatch("chargepointid", "17")])) == (points[::-1])
    )
    processed = [e.id for e in events if e.document.get("state") == "PROCESSED"]
    assert (
        await _ids(store, EventSearch(fields=[FieldMatch("state", "PROCESSED")]))
        == (processed[::-1])
    )
    # A dotted path names a nested field; the leaf's own name finds it too.
    nested = events[9].document["bootNotification"]
    leaf, value = next((k, v) for k, v in nested.items() if isinstance(v, str))
    by_path = await _ids(store, EventSearch(fields=[FieldMatch(f"bootNotification.{leaf}", value)]))
    assert events[9].id in by_path
    assert await _ids(store, EventSearch(fields=[FieldMatch("licenseNumber", "ABC12")])) == []


async def test_text_words_and_prefixes_match_the_raw_body_and_document(store: Store) -> None:
    events = await _fill(store)
    europark = [e.id for e in events if e.source == "easypark"][::-1]
    assert await _ids(store, EventSearch(text="EuroPark svenska")) == europark
    assert await _ids(store, EventSearch(text="europ*")) == europark
    assert await _ids(store, EventSearch(text="europark nosuchword")) == []
    # Words of the parsed document and fields combine.
    assert await _ids(
        store, EventSearch(text="europark", fields=[FieldMatch("licenseNumber", "ABC123")])
    ) == [europark[1], europark[3], europark[5]]


async def test_search_combines_with_inbox_filters_and_pages_by_cursor(store: Store) -> None:
    events = await _fill(store)
    where = EventSearch(fields=[FieldMatch("currency", "SEK")], status="processed")
    expected = [e.id for e in events if e.source == "easypark" and e.document["parkingId"] != 1005]
    assert await _ids(store, where, limit=2) == expected[::-1]
    failed = await store.search_events(EventSearch(text="europark", status="failed"), None, 10)
    assert [hit.id for hit in failed.items] == [events[5].id]
    assert failed.items[0].document["parkingId"] == 1005
    assert failed.items[0].body_size == len(events[5].raw_body)
    window = EventSearch(
        text="europark", since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)
    )
    assert await _ids(store, window) == [events[2].id, events[1].id]
    assert await _ids(store, EventSearch(text="europark", source="ztlment")) == []
    # Without text or fields the inbox itself is listed, filters and paging alike.
    assert (
        await _ids(store, EventSearch(source="ampeco"), limit=1) == [e.id for e in events[9:]][::-1]
    )


async def test_events_wait_for_processing_and_indexing_before_text_finds_them(
    store: Store,
) -> None:
    ev = _event("ztlment", "payment", notification(9, "PAYMENT_OBJECT", "PROCESSED"), T0)
    await store.ingest(ev)
    by_state = EventSearch(fields=[FieldMatch("state", "processed")])
    assert await _ids(store, by_state) == []
    assert await _ids(store, EventSearch(status="received")) == [ev.id]
    assert (await store.process_pending(handler, 10)).processed == 1
    assert await _ids(store, by_state) == []
    assert (await store.backlog(datetime.now(UTC))).search_waiting == 1
    assert await store.index_search(10) == 1
    assert await store.index_search(10) == 0
    assert await _ids(store, by_state) == [ev.id]
    assert (await store.backlog(datetime.now(UTC))).search_waiting == 0


def test_the_migration_queues_events_processed_before_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db")
    steps = migrations("sqlite")
    for version, _, statements in steps:
        if version == 8:
            conn.execute(
                "INSERT INTO inbox (id, source, provider, event_type, received_at, dedup_key, "
                "status, flags, headers, raw_body, body_sha256) VALUES "
                "('A', 's', 'p', 't', '2026-01-01T00:00:00.000000Z', 'a', 'processed', '[]', "
                "'{}', x'', ''), ('B', 's', 'p', 't', '2026-01-01T00:00:00.000000Z', 'b', "
                "'received', '[]', '{}', x'', ''), ('C', 's', 'p', 't', "
                "'2026-01-01T00:00:00.000000Z', 'c', 'failed', '[]', '{}', x'', '')"
            )
        for statement in statements:
            conn.execute(statement)
    assert conn.execute("SELECT event_id, status FROM search_queue ORDER BY seq").fetchall() == [
        ("A", "processed"),
        ("C", "failed"),
    ]
    conn.close()


async def test_bad_search_input_is_refused_with_what_to_fix(store: Store) -> None:
    with pytest.raises(InvalidQuery, match="letters or digits"):
        await store.search_events(EventSearch(text=" -- "), None, 10)
    with pytest.raises(InvalidQuery, match="two characters"):
        await store.search_events(EventSearch(text="a*"), None, 10)
    with pytest.raises(InvalidQuery, match="status"):
        await store.search_events(EventSearch(status="done"), None, 10)
    with pytest.raises(InvalidQuery, match="before"):
        await store.search_events(EventSearch(since=T0, until=T0), None, 10)
    with pytest.raises(BadCursor):
        await store.search_events(EventSearch(text="x1"), "bm90LWEtY3Vyc29y", 10)


async def test_event_counts_per_bucket_follow_processing_and_replay(store: Store) -> None:
    await _fill(store)
    late = _event("easypark", "parking.completed", transaction(7), T0 + timedelta(minutes=5))
    held = _event(
        "easypark", "parking.completed", {"x": 1}, T0 + timedelta(minutes=4), status="quarantined"
    )
    await store.ingest(late)
    await store.ingest(held)
    query = EventCountQuery(since=T0, until=T0 + timedelta(hours=3), grain="hour")
    counts = {(c.bucket.hour, c.source, c.status): c.count for c in await store.event_counts(query)}
    assert counts == {
        (10, "easypark", "processed"): 5,
        (10, "easypark", "failed"): 1,
        (10, "easypark", "received"): 1,
        (10, "easypark", "quarantined"): 1,
        (11, "ztlment", "processed"): 3,
        (12, "ampeco", "processed"): 3,
    }
    per_minute = await store.event_counts(
        EventCountQuery(
            since=T0, until=T0 + timedelta(minutes=10), grain="minute", by=[], source="easypark"
        )
    )
    assert [(c.bucket.minute, c.count) for c in per_minute] == [
        (15, 1),
        (16, 1),
        (17, 1),
        (18, 1),
        (19, 2),
        (20, 2),
    ]
    # A replayed failure is counted once, under its new status.
    await store.replay(ReplayFilter(source="easypark", status="failed"))
    await process_all(store, lambda tx, ev: [])
    day = await store.event_counts(
        EventCountQuery(
            since=T0, until=T0 + timedelta(days=1), grain="day", by=["status"], source="easypark"
        )
    )
    assert {c.status: c.count for c in day} == {"processed": 7, "quarantined": 1}
    with pytest.raises(InvalidQuery, match="buckets"):
        await store.event_counts(
            EventCountQuery(since=T0, until=T0 + timedelta(days=3), grain="minute")
        )


async def _fill_views(store: Store, url: str, events: list[InboundEvent] | None = None) -> None:
    """Decisions, consumption, parking, deliveries and refusal counts of a known shape."""
    await _fill(store, events)
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"

    def at(minutes: float) -> Any:
        moment = T0 + timedelta(minutes=minutes)
        return iso(moment) if backend == "sqlite" else moment

    for n, (result, fallback) in enumerate(
        [("approved", False), ("approved", False), ("denied", False), ("approved", True)]
    ):
        write_url(
            url,
            "INSERT INTO decisions (id, decided_at, source, result, reasons, fallback, "
            "latency_us) VALUES (?, ?, 'zaptec', ?, '[]', ?, 10)",
            id_at(T0 + timedelta(minutes=n * 70)),
            at(n * 70),
            result,
            fallback if backend == "postgresql" else int(fallback),
        )
    for n, (token, group, kwh) in enumerate(
        [("t1", "g1", "1.5"), ("t1", "g1", "2.25"), ("t2", None, "0.125"), ("t1", "g1", "4")]
    ):
        await store.ingest(
            _event("zaptec", "session.end", {"n": n}, T0 + timedelta(hours=n * 10)),
            ConsumptionReport(
                session_key=f"s{n}",
                origin="zaptec",
                token=token,
                group_id=group,
                kwh=kwh,
                occurred_at=T0 + timedelta(hours=n * 10),
            ),
        )
    for n, (plate, price, month) in enumerate(
        [("ABC123", "15.62", 3), ("ABC123", "4.38", 3), ("XYZ9", "9.99", 3), ("ABC123", "1", 4)]
    ):
        ended = datetime(2026, month, 5 + n, 8, tzinfo=UTC)
        write_url(
            url,
            "INSERT INTO parking_transactions (source, parking_id, id, event_id, license_number, "
            "started_at, ended_at, currency, price, price_vat, price_excl_vat, consistent, "
            "flags, received_at) VALUES ('easypark', ?, ?, 'e', ?, ?, ?, 'SEK', ?, '0', ?, "
            f"{'1' if backend == 'sqlite' else 'TRUE'}, '[]', ?)",
            str(n),
            new_id(),
            plate,
            iso(ended) if backend == "sqlite" else ended,
            iso(ended) if backend == "sqlite" else ended,
            price,
            price,
            iso(ended) if backend == "sqlite" else ended,
        )
    await store.count_rejections(
        [
            RejectionCount(
                minute=T0.replace(second=0, microsecond=0),
                source="easypark",
                reason="bad-signature",
                total=5,
                recorded=2,
                body_bytes=10,
            ),
            RejectionCount(
                minute=T0.replace(second=0, microsecond=0) + timedelta(hours=1),
                source="easypark",
                reason="bad-signature",
                total=1,
                recorded=1,
                body_bytes=1,
            ),
            RejectionCount(
                minute=T0.replace(second=0, microsecond=0),
                source="zaptec",
                reason="too-large",
                total=3,
                recorded=0,
                body_bytes=3,
            ),
        ]
    )


async def test_chart_aggregates_sum_what_each_table_holds(store: Store, storage_url: str) -> None:
    await _fill_views(store, storage_url)
    day = (T0 - timedelta(hours=1), T0 + timedelta(days=2))
    decisions = await store.decision_stats(DecisionQuery(since=day[0], until=day[1]))
    assert [(d.result, d.count, d.fallback) for d in decisions] == [
        ("approved", 3, 1),
        ("denied", 1, 0),
    ]
    hourly = await store.decision_stats(DecisionQuery(since=day[0], until=day[1], grain="hour"))
    assert [(d.bucket.hour, d.result, d.count) for d in hourly if d.bucket] == [
        (10, "approved", 1),
        (11, "approved", 1),
        (12, "denied", 1),
        (13, "approved", 1),
    ]
    energy = await store.energy_per_day(EnergyQuery(since=day[0], until=day[1]))
    assert [(e.day.day, e.token, e.group_id, e.kwh, e.sessions) for e in energy] == [
        (2, "t1", "g1", "3.750", 2),
        (3, "t1", "g1", "4.000", 1),
        (3, "t2", None, "0.125", 1),
    ]
    costs = await store.vehicle_costs(
        CostQuery(since=datetime(2026, 3, 1, tzinfo=UTC), until=datetime(2026, 5, 1, tzinfo=UTC))
    )
    assert [(c.month.month, c.license_number, c.total, c.parkings) for c in costs] == [
        (3, "ABC123", "20.00", 2),
        (3, "XYZ9", "9.99", 1),
        (4, "ABC123", "1.00", 1),
    ]
    refusals = await store.rejection_stats(RejectionQuery(since=day[0], until=day[1]))
    assert [(r.source, r.reason, r.total, r.recorded) for r in refusals] == [
        ("easypark", "bad-signature", 6, 3),
        ("zaptec", "too-large", 3, 0),
    ]
    per_hour = await store.rejection_stats(RejectionQuery(since=day[0], until=day[1], grain="hour"))
    assert [(r.bucket.hour, r.total) for r in per_hour if r.bucket] == [(10, 5), (10, 3), (11, 1)]
    now = datetime.now(UTC)
    deliveries = await store.delivery_stats(
        DeliveryQuery(since=now - timedelta(hours=1), until=now + timedelta(minutes=1))
    )
    assert [(d.destination, d.status, d.count) for d in deliveries] == [("archive", "pending", 11)]
    backlog = await store.backlog(now)
    assert (backlog.received, backlog.failed, backlog.deliveries_waiting) == (4, 1, 11)
    assert backlog.oldest_received_at == T0
    assert backlog.oldest_received_age_seconds == (now - T0).total_seconds()


async def test_both_backends_answer_every_query_alike(tmp_path: Path) -> None:
    """The same events and queries on SQLite and PostgreSQL give the same answers."""
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable")
    answers = []
    events = corpus()
    for backend in ("sqlite", "postgresql"):
        with fresh_storage(backend, tmp_path) as url:
            db = make_store(StorageConfig(url=url, auto_migrate=True))
            await db.open()
            try:
                await _fill_views(db, url, events)
                answers.append(await _every_answer(db))
            finally:
                await db.close()
    for key in answers[0]:
        assert answers[0][key] == answers[1][key], key
    assert len(answers[0]["search"]) == 9


async def _every_answer(store: Store) -> dict[str, Any]:
    searches = [
        EventSearch(text="europark"),
        EventSearch(text="sek nyk*"),
        EventSearch(text="eu*"),
        EventSearch(text="europ*"),
        EventSearch(fields=[FieldMatch("licenseNumber", "ABC123")]),
        EventSearch(fields=[FieldMatch("chargePointId", "17")], source="ampeco"),
        EventSearch(fields=[FieldMatch("state", "processed")], status="processed"),
        EventSearch(text="payment_object"),
        EventSearch(text="europark", since=T0 + timedelta(minutes=2)),
    ]
    out: dict[str, Any] = {"search": []}
    for where in searches:
        hits = []
        cursor = None
        while True:
            page = await store.search_events(where, cursor, 2)
            hits.extend((h.source, h.event_type, h.document, h.status) for h in page.items)
            if page.next is None:
                break
            cursor = page.next
        out["search"].append(hits)
    span = {"since": T0 - timedelta(days=1), "until": T0 + timedelta(days=2)}
    out["counts"] = await store.event_counts(EventCountQuery(grain="hour", **span))
    out["decisions"] = await store.decision_stats(DecisionQuery(grain="day", **span))
    out["energy"] = await store.energy_per_day(EnergyQuery(**span))
    out["refusals"] = await store.rejection_stats(RejectionQuery(grain="hour", **span))
    out["costs"] = await store.vehicle_costs(
        CostQuery(since=datetime(2026, 1, 1, tzinfo=UTC), until=datetime(2027, 1, 1, tzinfo=UTC))
    )
    return msgspec.to_builtins(out)  # type: ignore[no-any-return]


# -- the command line --------------------------------------------------------------------


def _cli(tmp_path: Path, url: str, *args: str) -> Result:
    config = tmp_path / "hookgate.toml"
    if not config.exists():
        config.write_text(
            f'[storage]\nurl = "{url}"\n\n[[sources]]\nname = "zaptec"\n'
            'provider = "zaptec"\npassword = "pw"\n',
            encoding="utf-8",
        )
    return CliRunner().invoke(main, [*args, "--config", str(config)])


def _json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_cli_searches_and_charts(storage_url: str, tmp_path: Path) -> None:
    async def fill() -> list[InboundEvent]:
        db = make_store(StorageConfig(url=storage_url, auto_migrate=True))
        await db.open()
        try:
            events = corpus()
            await _fill_views(db, storage_url, events)
            return events
        finally:
            await db.close()

    events = asyncio.run(fill())
    plates = [e.id for e in events if e.document.get("licenseNumber") == "ABC123"][::-1]
    found = _json_of(
        _cli(
            tmp_path, storage_url, "events", "search", "--where", "licenseNumber = ABC123", "--json"
        )
    )
    assert [item["id"] for item in found["items"]] == plates
    paged = _json_of(
        _cli(
            tmp_path,
            storage_url,
            "events",
            "search",
            "--text",
            "europark",
            "--where",
            "licenseNumber=abc123",
            "--limit",
            "2",
            "--json",
        )
    )
    assert [item["id"] for item in paged["items"]] == plates[:2]
    rest = _json_of(
        _cli(
            tmp_path,
            storage_url,
            "events",
            "search",
            "--text",
            "europark",
            "--where",
            "licenseNumber=abc123",
            "--limit",
            "2",
            "--cursor",
            paged["next"],
            "--json",
        )
    )
    assert [item["id"] for item in rest["items"]] == plates[2:]
    table = _cli(tmp_path, storage_url, "events", "search", "--where", "chargePointId=17")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split() == [
        "ID",
        "RECEIVED",
        "SOURCE",
        "TYPE",
        "STATUS",
        "SUBJECT",
    ]
    assert [line.split()[0] for line in table.output.splitlines()[1:]] == [
        events[10].id,
        events[9].id,
    ]

    bad = _cli(tmp_path, storage_url, "events", "search", "--where", "licenseNumber")
    assert bad.exit_code == 2
    assert "NAME=VALUE" in bad.output
    bad = _cli(tmp_path, storage_url, "events", "search", "--text", "x", "--cursor", "nonsense")
    assert bad.exit_code == 2
    assert "--cursor" in bad.output
    bad = _cli(
        tmp_path,
        storage_url,
        "stats",
        "events",
        "--grain",
        "minute",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2026-02-01T00:00:00Z",
    )
    assert bad.exit_code == 2
    assert "coarser grain" in bad.output

    span = ["--since", "2026-03-01T00:00:00Z", "--until", "2026-03-05T00:00:00Z"]
    counts = _json_of(
        _cli(
            tmp_path,
            storage_url,
            "stats",
            "events",
            "--grain",
            "day",
            "--by",
            "source",
            *span,
            "--json",
        )
    )
    assert [(c["bucket"], c["source"], c["count"]) for c in counts["items"]] == [
        ("2026-03-02T00:00:00Z", "ampeco", 3),
        ("2026-03-02T00:00:00Z", "easypark", 6),
        ("2026-03-02T00:00:00Z", "zaptec", 2),
        ("2026-03-02T00:00:00Z", "ztlment", 3),
        ("2026-03-03T00:00:00Z", "zaptec", 2),
    ]
    text = _cli(tmp_path, storage_url, "stats", "events", "--grain", "day", "--by", "", *span)
    assert text.output.splitlines()[1].split() == ["2026-03-02", "00:00:00", "*", "*", "*", "14"]
    decisions = _json_of(_cli(tmp_path, storage_url, "stats", "decisions", *span, "--json"))
    assert [(d["result"], d["count"]) for d in decisions["items"]] == [
        ("approved", 3),
        ("denied", 1),
    ]
    energy = _cli(tmp_path, storage_url, "stats", "energy", "--token", "t1", *span)
    assert [line.split() for line in energy.output.splitlines()[1:]] == [
        ["2026-03-02", "t1", "g1", "3.750", "2"],
        ["2026-03-03", "t1", "g1", "4.000", "1"],
    ]
    costs = _cli(
        tmp_path,
        storage_url,
        "stats",
        "costs",
        "--vehicle",
        "ABC123",
        "--since",
        "2026-01-01T00:00:00Z",
        "--until",
        "2027-01-01T00:00:00Z",
    )
    assert [line.split() for line in costs.output.splitlines()[1:]] == [
        ["2026-03", "ABC123", "20.00", "SEK", "2"],
        ["2026-04", "ABC123", "1.00", "SEK", "1"],
    ]
    refusals = _json_of(
        _cli(tmp_path, storage_url, "stats", "rejections", "--grain", "hour", *span, "--json")
    )
    assert [(r["source"], r["total"]) for r in refusals["items"]] == [
        ("easypark", 5),
        ("zaptec", 3),
        ("easypark", 1),
    ]
    deliveries = _json_of(_cli(tmp_path, storage_url, "stats", "deliveries", "--json"))
    assert [(d["destination"], d["status"], d["count"]) for d in deliveries["items"]] == [
        ("archive", "pending", 11)
    ]
    backlog = _cli(tmp_path, storage_url, "stats", "backlog")
    assert "events received, not yet processed  4" in backlog.output
    assert "deliveries waiting for an attempt   11" in backlog.output
