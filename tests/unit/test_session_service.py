"""The charging-session use case without a server: a real store on both backends, the real
engine, and a clock the test sets, so the deadline, fallback and audit are seen directly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from hookgate.authorization.outcome import ALLOWED, NO_CREDIT, NOT_ALLOWED, UNKNOWN, Outcome
from hookgate.authorization.service import AuthorizationService
from hookgate.config import AuthorizationConfig, StorageConfig, ZaptecSource
from hookgate.domain.decisions import DecisionRecord, SessionEnd
from hookgate.domain.errors import LimitReached, StoreError
from hookgate.domain.events import InboundEvent
from hookgate.domain.queries import DecisionFilter
from hookgate.ids import new_id
from hookgate.metrics import Metrics
from hookgate.providers.base import StartRequest
from hookgate.services.sessions import ChargingSessions
from hookgate.store import Store, make_store

pytestmark = pytest.mark.backends("sqlite", "postgresql")

NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)


def clock() -> datetime:
    return NOW


def source(on_error: str = "deny", deadline_ms: int = 10_000) -> ZaptecSource:
    """A zaptec source; the default deadline is far beyond any commit on a busy machine."""
    return msgspec.convert(
        {
            "name": "site",
            "provider": "zaptec",
            "on_error": on_error,
            "decision_deadline_ms": deadline_ms,
        },
        ZaptecSource,
    )


def event(kind: str = "start") -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source="site",
        provider="zaptec",
        event_type=f"session.{kind}",
        received_at=NOW,
        dedup_key=f"{kind}:{uuid.uuid4().hex}",
        raw_body=b"{}",
        body_sha256="00",
        headers={},
        document={},
    )


SETTINGS = msgspec.convert(
    {
        "tokens": [
            {"uid": "GOOD"},
            {"uid": "OFFLINE", "whitelist": "ALLOWED_OFFLINE"},
            {"uid": "ONLINE", "whitelist": "ALLOWED"},
        ],
        "budgets": [
            {
                "id": "good-day",
                "subject": "token",
                "subject_id": "GOOD",
                "metric": "kwh",
                "period": "day",
                "limit": "10",
            }
        ],
    },
    AuthorizationConfig,
)


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[Store]:
    db = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await db.open()
    yield db
    await db.close()


@pytest.fixture
async def engine(store: Store) -> AsyncIterator[AuthorizationService]:
    service = AuthorizationService(store, SETTINGS, clock=clock)
    await service.start(follow=False)
    yield service
    await service.stop()


class Stalled:
    """A decider whose decisions never come (a stuck engine), delegating everything else."""

    def __init__(self, inner: AuthorizationService) -> None:
        self.inner = inner
        self.asked = asyncio.Event()

    async def decide(self, source: ZaptecSource, request: StartRequest) -> Outcome:
        self.asked.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def decisions(store: Store) -> list[DecisionRecord]:
    page = await store.list_decisions(DecisionFilter(), None, 50)
    return list(page.items)


async def test_an_approval_is_audited_with_the_injected_time(
    store: Store, engine: AuthorizationService
) -> None:
    sessions = ChargingSessions(store, engine, Metrics(), clock=clock)
    started = await sessions.start(source(), StartRequest("CH-1", "good", None, None), event())
    assert started.decision.result == ALLOWED
    assert started.decision.fallback is False
    assert started.decision.decided_at == NOW
    assert started.decision.token == "GOOD"
    assert started.decision.session_id
    [row] = await decisions(store)
    assert row.result == ALLOWED and row.session_id == started.decision.session_id


async def test_a_refusal_carries_the_engine_message(
    store: Store, engine: AuthorizationService
) -> None:
    sessions = ChargingSessions(store, engine, Metrics(), clock=clock)
    started = await sessions.start(source(), StartRequest("CH-1", "nobody", None, None), event())
    assert started.decision.result == UNKNOWN
    assert started.decision.session_id is None
    assert started.message


@pytest.mark.parametrize(
    ("on_error", "token", "result"),
    [
        ("deny", "OFFLINE", NOT_ALLOWED),
        ("allow", "ONLINE", ALLOWED),
        ("allow_known", "OFFLINE", ALLOWED),
        ("allow_known", "ONLINE", NOT_ALLOWED),
    ],
)
async def test_a_stalled_decision_answers_by_on_error_at_the_deadline(
    store: Store, engine: AuthorizationService, on_error: str, token: str, result: str
) -> None:
    stalled = Stalled(engine)
    sessions = ChargingSessions(store, stalled, Metrics(), clock=clock)
    started = await sessions.start(
        source(on_error, deadline_ms=60), StartRequest("CH-1", token, None, None), event()
    )
    assert stalled.asked.is_set()
    assert started.decision.fallback is True
    assert started.decision.result == result
    assert started.decision.decided_at == NOW
    assert any("deadline exceeded" in reason for reason in started.decision.reasons)
    await sessions.drain()
    [row] = await decisions(store)
    assert row.fallback is True and row.result == result


async def test_a_storage_failure_falls_back_and_gives_the_reservation_back(
    store: Store, engine: AuthorizationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "record_session_start", broken)
    sessions = ChargingSessions(store, engine, Metrics(), clock=clock)
    started = await sessions.start(source(), StartRequest("CH-1", "good", None, None), event())
    assert started.decision.fallback is True
    assert "error: disk full" in started.decision.reasons[0]
    # The engine's approval was not recorded: nothing is held for it.
    assert engine.engine.reserved(("token", "GOOD"), NOW) == (0, Decimal(0))


async def test_a_limit_another_instance_took_is_decided_again_then_falls_back(
    store: Store, engine: AuthorizationService, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries: list[int] = []

    async def taken(*args: Any, **kwargs: Any) -> None:
        tries.append(1)
        raise LimitReached("budget good-day is used up on another instance")

    monkeypatch.setattr(store, "record_session_start", taken)
    metrics = Metrics()
    sessions = ChargingSessions(store, engine, metrics, clock=clock)
    started = await sessions.start(source(), StartRequest("CH-1", "good", None, None), event())
    assert len(tries) == 3
    assert metrics.rechecks.labels("site")._value.get() == 2
    assert started.decision.fallback is True
    assert started.decision.result == NOT_ALLOWED


async def test_an_end_counts_against_the_budget_before_the_next_start(
    store: Store, engine: AuthorizationService
) -> None:
    sessions = ChargingSessions(store, engine, Metrics(), clock=clock)
    first = await sessions.start(source(), StartRequest("CH-1", "good", None, None), event())
    assert first.decision.result == ALLOWED
    assert first.decision.session_id is not None
    end = SessionEnd(
        session_ids=[first.decision.session_id], ended_at=NOW, energy_kwh="10", token="good"
    )
    result = await sessions.end(event("end"), end)
    assert result.stored
    again = await sessions.start(source(), StartRequest("CH-1", "good", None, None), event())
    assert again.decision.result == NO_CREDIT
