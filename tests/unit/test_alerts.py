"""Alert rules against real traffic: the provider emulators call a real gateway, and an
evaluator on the same database (with a clock the test moves) fires, reminds and resolves
each alert, notifying a real webhook receiver that verifies every signature."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookgate.alerts.evaluator import LEASE, AlertEvaluator, Report
from hookgate.config import parse_config
from hookgate.delivery.router import Router
from hookgate.domain.queries import ReplayFilter
from hookgate.emulate import easypark
from hookgate.emulate.base import encode, post
from hookgate.emulate.zaptec import ZaptecEmulator
from hookgate.metrics import Metrics
from hookgate.oauth import TokenIssuer
from hookgate.processing.worker import Processor
from hookgate.providers import build_providers
from hookgate.store import alerting, make_store
from hookgate.store.base import Store
from hookgate.timeutil import utcnow
from support.delivery_receiver import Receiver, closed_port, serve
from support.gateway import (
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    ZAPTEC_PASSWORD,
    ZAPTEC_USER,
    Running,
    base_config,
)
from support.polling import Timeout, until_async
from support.servers import in_thread

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SECRET = "whsec_" + base64.b64encode(b"alert-notifications-secret-32by").decode()


@pytest.fixture
def inbox() -> Iterator[Receiver]:
    """The on-call team's webhook endpoint: verifies every notification's signature."""
    yield from serve(Receiver(secret=SECRET))


def _config(
    tmp_path: Path, inbox: Receiver, rules: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    data = base_config(tmp_path / "hookgate.db", **extra)
    data["alerts"] = {
        "enabled": False,  # the gateway's own evaluator stays off: the test evaluates
        "rules": rules,
        "notifiers": [
            {
                "name": "oncall",
                "kind": "webhook",
                "url": inbox.url,
                "secret": SECRET,
                "retry_backoff_seconds": 0.05,
            }
        ],
    }
    return data


class Clock:
    """Now, unless the test moved it."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@contextlib.asynccontextmanager
async def evaluating(
    running: Running, data: dict[str, Any], clock: Callable[[], datetime], owner: str = "test"
) -> AsyncIterator[tuple[AlertEvaluator, Store]]:
    """An evaluator (rules of `data`) on the gateway's database."""
    data = {**data, "storage": {**data["storage"], "url": running.storage_url}}
    data["alerts"] = {**data["alerts"], "enabled": True}
    config = parse_config(data, env={})
    store = make_store(config.storage)
    await store.open()
    evaluator = AlertEvaluator(store, config, Metrics(), owner=owner, clock=clock)
    try:
        yield evaluator, store
    finally:
        await evaluator.close()
        await store.close()


async def until(
    evaluator: AlertEvaluator, what: Callable[[Report], bool], timeout: float = 20
) -> Report:
    """Evaluate until `what` holds for a report (the gateway writes counts every 2 s)."""

    async def report() -> Report | None:
        evaluated = await evaluator.evaluate_once()
        return evaluated if what(evaluated) else None

    return await until_async(report, "an alert report", timeout)


async def notified(inbox: Receiver, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The first `count` verified notifications (waits for them)."""
    try:
        await until_async(
            lambda: len([r for r in inbox.received if r.verified]) >= count, "notices", timeout
        )
    except Timeout:
        raise AssertionError(
            f"{len(inbox.received)} notifications arrived, {count} expected: "
            f"{[r.error for r in inbox.received]}"
        ) from None
    return [r.payload for r in inbox.received if r.verified]


def history(running: Running, **params: str) -> list[dict[str, Any]]:
    with running.admin() as admin:
        response = admin.get("/api/v1/alerts", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_refused_credentials_fire_once_remind_and_resolve(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    rules = [
        {
            "kind": "rejection_spike",
            "name": "rotated-secret",
            "reasons": ["unauthorized"],
            "above": 3,
            "window_seconds": 300,
            "repeat_seconds": 120,
            "severity": "critical",
        }
    ]
    data = _config(tmp_path, inbox, rules)
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        async with httpx.AsyncClient(timeout=10) as client:
            # EasyPark with a stale password: every call is refused with 401.
            sent = await easypark.run(
                client,
                running.url,
                "easypark",
                username=EASYPARK_USER,
                password="the-old-password",
                count=5,
                max_attempts=1,
            )
        assert [s.status for s in sent] == [401] * 5
        async with evaluating(running, data, clock) as (evaluator, _store):
            report = await until(evaluator, lambda r: bool(r.fired))
            assert report.fired == ["rotated-secret/easypark"]
            [firing] = await notified(inbox, 1)
            assert firing["type"] == "alert.firing"
            assert firing["alert"]["subject"] == "easypark"
            assert firing["alert"]["severity"] == "critical"
            assert "5 refusals of source easypark" in firing["alert"]["summary"]
            assert "rotated secret" in firing["alert"]["summary"]

            # Still failing: no second notification before the repeat interval...
            report = await evaluator.evaluate_once()
            assert not report.fired and not report.repeated
            # ...one reminder after it.
            clock.advance(seconds=121)
            report = await evaluator.evaluate_once()
            assert report.repeated == ["rotated-secret/easypark"]
            reminder = (await notified(inbox, 2))[1]
            assert reminder["type"] == "alert.repeat"
            assert reminder["alert"]["id"] == firing["alert"]["id"]

            # The window passes without refusals: resolved, and told.
            clock.advance(seconds=400)
            report = await evaluator.evaluate_once()
            assert report.resolved == ["rotated-secret/easypark"]
            resolved = (await notified(inbox, 3))[2]
            assert resolved["type"] == "alert.resolved"
            assert resolved["alert"]["resolved_at"] is not None
            assert (await evaluator.evaluate_once()).resolved == []

        [recorded] = history(running)
        assert recorded["status"] == "resolved"
        assert recorded["notifications"] == 2
        assert recorded["rule"] == "rotated-secret"
        assert history(running, status="firing") == []
        # Each notification id is distinct (receivers deduplicate on it).
        assert len({r.headers["webhook-id"] for r in inbox.received}) == 3

    asyncio.run(scenario())


def test_source_silent_only_within_active_hours(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    now = utcnow()
    # Active for the two hours around now (UTC), every day.
    hours = f"{(now - timedelta(hours=1)):%H}:00-{(now + timedelta(hours=2)):%H}:00"
    quiet = f"{(now + timedelta(hours=3)):%H}:00-{(now + timedelta(hours=4)):%H}:00"
    rules = [
        {
            "kind": "source_silent",
            "name": "parking",
            "source": "easypark",
            "silent_seconds": 600,
            "active_hours": hours,
        },
        {
            "kind": "source_silent",
            "name": "parking-night",
            "source": "easypark",
            "silent_seconds": 600,
            "active_hours": quiet,
        },
    ]
    data = _config(tmp_path, inbox, rules)
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        async with httpx.AsyncClient(timeout=10) as client:
            sent = await easypark.run(
                client,
                running.url,
                "easypark",
                username=EASYPARK_USER,
                password=EASYPARK_PASSWORD,
                count=1,
                max_attempts=1,
            )
        assert sent[0].status == 200
        async with evaluating(running, data, clock) as (evaluator, _store):
            assert (await evaluator.evaluate_once()).fired == []
            clock.advance(seconds=900)
            report = await evaluator.evaluate_once()
            # Outside its active hours the night rule says nothing.
            assert report.fired == ["parking/easypark"]
            [firing] = await notified(inbox, 1)
            assert "source easypark silent for 1" in firing["alert"]["summary"]
            # The provider speaks again: resolved.
            clock.offset = timedelta()
            async with httpx.AsyncClient(timeout=10) as client:
                await easypark.run(
                    client,
                    running.url,
                    "easypark",
                    username=EASYPARK_USER,
                    password=EASYPARK_PASSWORD,
                    count=1,
                    max_attempts=1,
                )
            assert (await evaluator.evaluate_once()).resolved == ["parking/easypark"]

    asyncio.run(scenario())


def test_processing_backlog_fires_and_resolves_once_processed(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    rules = [{"kind": "processing_backlog", "older_than_seconds": 120}]
    data = _config(tmp_path, inbox, rules, processing={"in_process": False})
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        async with httpx.AsyncClient(timeout=10) as client:
            sent = await easypark.run(
                client,
                running.url,
                "easypark",
                username=EASYPARK_USER,
                password=EASYPARK_PASSWORD,
                count=3,
                max_attempts=1,
            )
        assert {s.status for s in sent} == {200}
        async with evaluating(running, data, clock) as (evaluator, store):
            assert (await evaluator.evaluate_once()).fired == []
            assert evaluator.metrics.backlog._value.get() == 3
            clock.advance(seconds=300)
            report = await evaluator.evaluate_once()
            assert report.fired == ["processing_backlog/processing"]
            assert evaluator.metrics.oldest_pending._value.get() >= 300
            [firing] = await notified(inbox, 1)
            assert "3 events waiting" in firing["alert"]["summary"]
            # A worker catches up.
            config = evaluator.config
            providers = build_providers(TokenIssuer(b"k" * 32))
            await store.process_pending(
                Processor(providers, Router(config.destinations, providers)), 100
            )
            report = await evaluator.evaluate_once()
            assert report.resolved == ["processing_backlog/processing"]
            assert evaluator.metrics.backlog._value.get() == 0

    asyncio.run(scenario())


def test_destination_failing_fires_on_dead_deliveries_and_resolves_after_replay(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    rules = [{"kind": "destination_failing", "dead_above": 0}]
    port = closed_port()
    destination = {
        "name": "erp",
        "kind": "http",
        "url": f"http://127.0.0.1:{port}/in",
        "max_attempts": 2,
        "initial_backoff_seconds": 0.05,
        "max_backoff_seconds": 0.05,
        "breaker_failures": 2,
        "breaker_cooldown_seconds": 0.1,
        "sources": ["easypark"],
    }
    data = _config(
        tmp_path, inbox, rules, destinations=[destination], processing={"poll_interval_ms": 20}
    )
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        async with httpx.AsyncClient(timeout=10) as client:
            await easypark.run(
                client,
                running.url,
                "easypark",
                username=EASYPARK_USER,
                password=EASYPARK_PASSWORD,
                count=1,
                max_attempts=1,
            )
        # The rule reads the dead count, then the failing streak: with the second attempt
        # committed between the two reads it fires on the streak with no delivery dead
        # (true then, but not the alert this test is about). It starts once it is dead.
        await until_async(
            lambda: running.count("deliveries", "destination = ? AND status = 'dead'", "erp"),
            "the delivery to be given up",
        )
        async with evaluating(running, data, clock) as (evaluator, store):
            report = await until(evaluator, lambda r: bool(r.fired))
            assert report.fired == ["destination_failing/erp"]
            [firing] = await notified(inbox, 1)
            assert "destination erp failing" in firing["alert"]["summary"]
            assert firing["alert"]["details"]["dead"] == 1
            assert firing["alert"]["details"]["failed_in_a_row"] >= 2
            # The ERP is back (the gateway here keeps the URL: a receiver answers at it now)
            # and the operator replays what died.
            with _listening(port):
                await store.replay(ReplayFilter(destination="erp", status="dead"))
                report = await until(evaluator, lambda r: bool(r.resolved), timeout=30)
            assert report.resolved == ["destination_failing/erp"]

    asyncio.run(scenario())


@contextlib.contextmanager
def _listening(port: int) -> Iterator[Receiver]:
    """A receiver on a given port (the destination's fixed URL)."""

    import uvicorn

    receiver = Receiver()
    server = uvicorn.Server(
        uvicorn.Config(
            receiver,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            loop="asyncio",
        )
    )
    with in_thread(server):
        yield receiver


def test_quarantined_events_fire_and_resolve_once_reparsed(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    rules = [{"kind": "quarantined", "source": "easypark-q"}]
    data = _config(tmp_path, inbox, rules, processing={"in_process": False})
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        document = easypark.transaction(4242, end=utcnow().replace(microsecond=0))
        broken = {k: v for k, v in document.items() if k != "startDate"}
        auth = "Basic " + base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
        async with httpx.AsyncClient(timeout=10) as client:
            sent = await post(
                client,
                "easypark",
                "broken",
                f"{running.url}/hooks/easypark-q",
                encode(broken),
                {"Authorization": auth, "Content-Type": "application/json"},
            )
        assert sent.status == 200
        async with evaluating(running, data, clock) as (evaluator, store):
            report = await evaluator.evaluate_once()
            assert report.fired == ["quarantined/easypark-q"]
            [firing] = await notified(inbox, 1)
            assert "1 event of source easypark-q quarantined" in firing["alert"]["summary"]
            # After an upgrade the event parses: re-parsed and queued (events reprocess).
            [row] = running.rows("SELECT id, dedup_key FROM inbox WHERE status = 'quarantined'")
            assert await store.requeue_event(
                row[0], document, "parking.completed", "4242", None, []
            )
            assert (await evaluator.evaluate_once()).resolved == ["quarantined/easypark-q"]

    asyncio.run(scenario())


def test_group_budget_exhausted(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    rules = [{"kind": "budget_exhausted", "window_seconds": 600}]
    data = _config(tmp_path, inbox, rules)
    data["authorization"] = {
        "groups": [{"id": "fleet"}],
        "tokens": [{"uid": "AA11BB22", "group_id": "fleet"}],
        "budgets": [
            {
                "id": "fleet-day",
                "subject": "group",
                "subject_id": "fleet",
                "period": "day",
                "limit": "0.5",
            }
        ],
    }
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        async with httpx.AsyncClient(timeout=10) as client:
            zaptec = ZaptecEmulator(
                client, running.url, "zaptec", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD
            )
            [start] = await zaptec.session(token="AA11BB22")
        assert start.status == 403, start.response
        async with evaluating(running, data, clock) as (evaluator, _store):
            report = await evaluator.evaluate_once()
            assert report.fired == ["budget_exhausted/fleet"]
            [firing] = await notified(inbox, 1)
            assert "group fleet budget exhausted: 1 start refused" in firing["alert"]["summary"]
            clock.advance(seconds=700)
            assert (await evaluator.evaluate_once()).resolved == ["budget_exhausted/fleet"]

    asyncio.run(scenario())


def test_request_id_in_problem_header_log_and_rejection(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    data = _config(tmp_path, inbox, [])
    running = make_gateway(data)

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            [sent] = await easypark.run(
                client,
                running.url,
                "easypark",
                username=EASYPARK_USER,
                password="wrong",
                count=1,
                max_attempts=1,
            )
            assert sent.status == 401
            request_id = sent.response["request_id"]
            ok = await client.post(
                f"{running.url}/hooks/easypark",
                content=encode(easypark.transaction(77, end=utcnow().replace(microsecond=0))),
                headers={
                    "Authorization": "Basic "
                    + base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode(),
                    "Content-Type": "application/json",
                    "X-Request-Id": "lb-7f3a9c21-0001",
                },
            )
        assert ok.status_code == 200
        assert ok.headers["x-request-id"] == "lb-7f3a9c21-0001"
        [(stored,)] = running.rows("SELECT request_id FROM inbox WHERE source = 'easypark'")
        assert stored == "lb-7f3a9c21-0001"
        [(rejection_id, rid)] = running.rows("SELECT id, request_id FROM rejections")
        assert rid == request_id and len(request_id) == 26
        store = make_store(running.config.storage)
        await store.open()
        try:
            [found] = await store.sql_read(lambda c: alerting.rejections_by_request(c, request_id))
            assert found["id"] == rejection_id
            assert (await store.get_rejection(rejection_id)).request_id == request_id
        finally:
            await store.close()

    asyncio.run(scenario())


def test_one_evaluator_per_database_and_a_released_lease_is_taken_over(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    data = _config(tmp_path, inbox, [{"kind": "processing_backlog"}])
    running = make_gateway(data)

    async def scenario() -> None:
        clock = Clock()
        async with (
            evaluating(running, data, clock, owner="a") as (first, _),
            evaluating(running, data, clock, owner="b") as (second, _),
        ):
            assert (await first.evaluate_once()).leader
            assert not (await second.evaluate_once()).leader
            assert (await first.evaluate_once()).leader
            await first.close()
            assert (await second.evaluate_once()).leader
            # A lapsed lease (its holder died) is taken over as well.
            clock.advance(seconds=61)
            assert (await first.evaluate_once()).leader
        assert running.rows("SELECT owner FROM alert_leases WHERE name = ?", LEASE) == []

    asyncio.run(scenario())


def test_budget_reason_names_group() -> None:
    from hookgate.alerts.rules import _group_of

    assert _group_of("group fleet day energy budget: 1 kWh used") == "fleet"
    assert _group_of("token AA day energy budget: 1 kWh used") is None


@contextlib.contextmanager
def _writes_blocked(running: Running) -> Iterator[None]:
    """Hold the database so the gateway's next decision write waits (a stalled disk or a
    locked table): SQLite's write lock, or a PostgreSQL lock on the decisions table."""
    url = running.storage_url
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE decisions IN SHARE MODE")
        try:
            yield
        finally:
            pg.rollback()


def test_fallback_decisions_fire_when_starts_miss_their_deadline(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    rules = [{"kind": "fallback_decisions", "window_seconds": 600}]
    data = _config(tmp_path, inbox, rules)
    for source in data["sources"]:
        if source["name"] == "zaptec-allow":
            source["decision_deadline_ms"] = 300
            source["on_error"] = "allow"
    running = make_gateway(data)
    clock = Clock()

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            zaptec = ZaptecEmulator(
                client, running.url, "zaptec-allow", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD
            )
            await zaptec.authenticate()
            with _writes_blocked(running):
                sent = await zaptec._post(
                    "session-start",
                    "session-start",
                    {
                        "ChargerId": "c-1",
                        "DeviceId": "ZAP1",
                        "InstallationId": "i-1",
                        "UserId": "u-1",
                        "TokenId": "FEEDBEEF",
                    },
                )
        assert sent.status == 200, sent.response  # on_error = "allow" answered in time
        async with evaluating(running, data, clock) as (evaluator, _store):
            report = await until(evaluator, lambda r: bool(r.fired))
            assert report.fired == ["fallback_decisions/zaptec-allow"]
            [firing] = await notified(inbox, 1)
            assert (
                "1 Zaptec start of source zaptec-allow answered by the fallback"
                in (firing["alert"]["summary"])
            )
            clock.advance(seconds=700)
            assert (await evaluator.evaluate_once()).resolved == ["fallback_decisions/zaptec-allow"]

    asyncio.run(scenario())


def test_storage_errors_are_notified_even_when_they_cannot_be_recorded(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    data = _config(tmp_path, inbox, [{"kind": "storage_errors", "window_seconds": 300}])
    running = make_gateway(data)
    clock = Clock()

    async def scenario() -> None:
        async with evaluating(running, data, clock) as (evaluator, store):
            assert (await evaluator.evaluate_once()).fired == []
            # The database goes away under the evaluator.
            await store.close()
            report = await evaluator.evaluate_once()
            assert report.fired == ["storage_errors/storage"]
            [firing] = await notified(inbox, 1)
            assert firing["alert"]["details"]["recorded"] is False
            assert "storage error" in firing["alert"]["summary"]
            # Told once, not at every evaluation while storage stays away.
            assert (await evaluator.evaluate_once()).fired == []
            # Storage answers again: the alert is recorded without a second notification.
            evaluator.store = make_store(store_config(running))
            await evaluator.store.open()
            try:
                assert (await evaluator.evaluate_once()).fired == []
                [recorded] = history(running, status="firing")
                assert recorded["rule"] == "storage_errors"
                assert len(inbox.received) == 1
                clock.advance(seconds=400)
                assert (await evaluator.evaluate_once()).resolved == ["storage_errors/storage"]
                assert (await notified(inbox, 2))[1]["type"] == "alert.resolved"
            finally:
                await evaluator.store.close()

    asyncio.run(scenario())


def store_config(running: Running) -> Any:
    return running.config.storage


def test_active_hours_span_midnight_and_follow_days_and_zone() -> None:
    from datetime import UTC

    from hookgate.alerts.rules import active
    from hookgate.alerts.settings import SourceSilent

    night = SourceSilent(
        source="easypark",
        silent_seconds=60,
        active_hours="22:00-06:00",
        active_days=["fri"],
        timezone="Europe/Stockholm",
    )
    # Friday 23:30 and the small hours of Saturday (Stockholm, UTC+1 in December) belong
    # to Friday's window; Saturday 23:30 does not.
    assert active(night, datetime(2026, 12, 4, 22, 30, tzinfo=UTC))
    assert active(night, datetime(2026, 12, 5, 4, 0, tzinfo=UTC))
    assert not active(night, datetime(2026, 12, 5, 5, 30, tzinfo=UTC))
    assert not active(night, datetime(2026, 12, 5, 22, 30, tzinfo=UTC))
    always = SourceSilent(source="easypark", silent_seconds=60)
    assert active(always, datetime(2026, 12, 6, 3, 0, tzinfo=UTC))


def test_rule_settings_name_what_is_wrong() -> None:
    import msgspec as ms

    from hookgate.alerts.settings import AlertsConfig

    with pytest.raises(ms.ValidationError, match="HH:MM-HH:MM"):
        ms.convert(
            {
                "rules": [
                    {
                        "kind": "source_silent",
                        "source": "a",
                        "silent_seconds": 5,
                        "active_hours": "7-22",
                    }
                ]
            },
            AlertsConfig,
        )
    with pytest.raises(ms.ValidationError, match="already"):
        ms.convert({"rules": [{"kind": "quarantined"}, {"kind": "quarantined"}]}, AlertsConfig)
    with pytest.raises(ms.ValidationError, match="IANA"):
        ms.convert(
            {
                "rules": [
                    {
                        "kind": "source_silent",
                        "source": "a",
                        "silent_seconds": 5,
                        "timezone": "Mars/Olympus",
                    }
                ]
            },
            AlertsConfig,
        )


def test_with_alerts_disabled_only_the_gauges_are_refreshed(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path, inbox: Receiver
) -> None:
    data = _config(
        tmp_path,
        inbox,
        [{"kind": "processing_backlog", "older_than_seconds": 1}],
        processing={"in_process": False},
    )
    running = make_gateway(data)
    clock = Clock()

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await easypark.run(
                client,
                running.url,
                "easypark",
                username=EASYPARK_USER,
                password=EASYPARK_PASSWORD,
                count=2,
                max_attempts=1,
            )
        config = parse_config({**data, "storage": {"url": running.storage_url}}, env={})
        assert not config.alerts.enabled
        store = make_store(config.storage)
        await store.open()
        evaluator = AlertEvaluator(store, config, Metrics(), owner="off", clock=clock)
        try:
            clock.advance(seconds=60)
            report = await evaluator.evaluate_once()
            assert not report.leader and report.fired == []
            assert evaluator.metrics.backlog._value.get() == 2
            assert evaluator.metrics.oldest_pending._value.get() >= 60
        finally:
            await evaluator.close()
            await store.close()
        assert running.rows("SELECT count(*) FROM alert_leases") == [(0,)]
        assert history(running) == []

    asyncio.run(scenario())
