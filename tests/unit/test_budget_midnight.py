"""A day budget ends at midnight in the authorization's time zone: a clock the test moves
across midnight, a real store on both backends and the real engine, so the roll-over is
tested at any hour, without waiting for it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from hookgate.authorization.outcome import ALLOWED, NO_CREDIT
from hookgate.authorization.service import AuthorizationService
from hookgate.config import AuthorizationConfig, StorageConfig, ZaptecSource
from hookgate.ids import new_id
from hookgate.metrics import Metrics
from hookgate.providers.base import StartRequest
from hookgate.services.sessions import ChargingSessions
from hookgate.store import Store, make_store
from hookgate.store.base import InboundEvent, SessionEnd
from support.clock import ManualClock

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SOURCE = msgspec.convert({"name": "site", "provider": "zaptec"}, ZaptecSource)


def settings(zone: str) -> AuthorizationConfig:
    return msgspec.convert(
        {
            "timezone": zone,
            "session_reserve_kwh": 1,
            "tokens": [{"uid": "NIGHT"}],
            "budgets": [
                {
                    "id": "night-day",
                    "subject": "token",
                    "subject_id": "NIGHT",
                    "metric": "kwh",
                    "period": "day",
                    "limit": "10",
                }
            ],
        },
        AuthorizationConfig,
    )


def event(clock: ManualClock, kind: str) -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source="site",
        provider="zaptec",
        event_type=f"session.{kind}",
        received_at=clock(),
        dedup_key=f"{kind}:{uuid.uuid4().hex}",
        raw_body=b"{}",
        body_sha256="00",
        headers={},
        document={},
    )


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[Store]:
    db = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await db.open()
    yield db
    await db.close()


# Oslo is two hours ahead of UTC in June: its day ends at 22:00 UTC, not at 00:00.
@pytest.mark.parametrize("zone", ["UTC", "Europe/Oslo"])
async def test_a_day_budget_used_up_before_midnight_is_fresh_after_it(
    store: Store, zone: str
) -> None:
    midnight = datetime(2025, 6, 12, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    clock = ManualClock(midnight - timedelta(hours=1))
    engine = AuthorizationService(store, settings(zone), clock=clock)
    await engine.start(follow=False)
    sessions = ChargingSessions(store, engine, Metrics(), clock=clock)

    async def start() -> str:
        started = await sessions.start(
            SOURCE, StartRequest("CH-1", "night", None, None), event(clock, "start")
        )
        assert started.decision.decided_at == clock()
        if started.decision.result == ALLOWED:
            assert started.decision.session_id is not None
            clock.advance(minutes=10)
            end = SessionEnd(
                session_ids=[started.decision.session_id],
                ended_at=clock(),
                energy_kwh="10",
                token="night",
            )
            assert (await sessions.end(event(clock, "end"), end)).stored
        return started.decision.result

    try:
        assert await start() == ALLOWED  # 10 kWh charged by 23:10 local time
        clock.set(midnight - timedelta(microseconds=1))
        assert await start() == NO_CREDIT  # the last moment of the day
        clock.set(midnight)
        assert await start() == ALLOWED  # a new day, a new budget
        clock.advance(minutes=30)
        assert await start() == NO_CREDIT  # and it is spent again
    finally:
        await sessions.drain()
        await engine.stop()
