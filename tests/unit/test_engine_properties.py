"""Properties of the decision engine (hypothesis), and the budget under concurrent starts.

- A blocked or expired token is never allowed, whatever else holds.
- A budget is never overspent by concurrent decisions: reservations of approved sessions
  plus what was used never exceed the limit, in the engine and through a real gateway.
"""

from __future__ import annotations

import asyncio
import base64
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate.authorization.decider import fallback
from hookgate.authorization.engine import ActiveSession, Consumption, Engine
from hookgate.authorization.outcome import ALLOWED, BLOCKED, EXPIRED, NO_CREDIT
from hookgate.config import AuthorizationConfig, ZaptecSource
from hookgate.domain.rules import (
    WEEKDAYS,
    Budget,
    ChargerRule,
    Group,
    Schedule,
    Scope,
    Token,
    Window,
)
from hookgate.providers.base import StartRequest
from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER, base_config

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ZONES = ["UTC", "Europe/Oslo", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]
PLACE = ("site", "INST-1", "CH-1")  # source, installation, charger of every request


def zaptec(**fields: Any) -> ZaptecSource:
    return msgspec.convert({"name": "site", "provider": "zaptec", **fields}, ZaptecSource)


# -- strategies -----------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
)
offsets = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))
scopes = st.builds(
    Scope,
    sources=st.sampled_from([[], ["site"], ["other"], ["site", "other"]]),
    installations=st.sampled_from([[], ["INST-1"], ["INST-9"]]),
    chargers=st.sampled_from([[], ["CH-1"], ["CH-9"], ["CH-1", "CH-9"]]),
)
times = st.sampled_from(["00:00", "01:30", "02:00", "02:30", "06:00", "12:00", "22:00", "24:00"])
windows = st.builds(
    Window,
    days=st.lists(st.sampled_from(WEEKDAYS), unique=True, max_size=7),
    start=times.filter(lambda t: t != "24:00"),
    end=times,
)
schedules = st.none() | st.builds(
    Schedule, timezone=st.sampled_from(ZONES), windows=st.lists(windows, max_size=3)
)
whitelists = st.sampled_from(["ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"])
amounts = st.decimals(min_value=0, max_value=60, places=1)


@dataclass
class World:
    """One token that must be refused, and everything around it."""

    engine: Engine
    source: ZaptecSource
    request: StartRequest
    now: datetime
    blocked: bool  # the token or its group
    reserve: bool
    token: Token  # for the report of a failing example
    group: Group | None


@st.composite
def refused_worlds(draw: st.DrawFn) -> World:
    now = draw(moments)
    token_blocked, group_blocked, expired = draw(
        st.tuples(st.booleans(), st.booleans(), st.booleans()).filter(any)
    )
    in_group = group_blocked or draw(st.booleans())
    if expired:
        valid_until: datetime | None = now - draw(offsets)
        valid_from = draw(st.none() | st.just(valid_until - timedelta(days=30)))
    else:
        valid_until = draw(st.none() | st.just(now + timedelta(days=1) + draw(offsets)))
        valid_from = draw(st.none() | st.sampled_from([now - timedelta(days=1), now]))
        if valid_from is not None and valid_until is not None and valid_until <= valid_from:
            valid_until = None
    settings_ = AuthorizationConfig(
        timezone=draw(st.sampled_from(ZONES)),
        session_reserve_kwh=draw(st.sampled_from([0, 0.5, 1, 3])),
    )
    engine = Engine(settings_)
    token = Token(
        uid=draw(st.sampled_from(["TAG-1", "tag-1", " Tag-1 "])),
        status="blocked" if token_blocked else "valid",
        group_id="G1" if in_group else None,
        valid_from=valid_from,
        valid_until=valid_until,
        whitelist=draw(whitelists),
        scope=draw(scopes),
        schedule=draw(schedules),
        max_sessions=draw(st.none() | st.integers(0, 3)),
    )
    engine.put("token", token.uid, token)
    group = None
    if in_group:
        group = Group(
            id="G1",
            status="blocked" if group_blocked else "valid",
            scope=draw(scopes),
            schedule=draw(schedules),
            max_sessions=draw(st.none() | st.integers(0, 3)),
        )
        engine.put("group", "G1", group)
    rule = draw(st.sampled_from(["none", "open", "reserved-own", "reserved-other"]))
    if rule == "open":
        engine.put("charger", "CH-1", ChargerRule(charger_id="CH-1", mode="open"))
    elif rule != "none":
        owner = "G1" if rule == "reserved-own" else "G2"
        engine.put(
            "charger", "CH-1", ChargerRule(charger_id="CH-1", mode="reserved", group_id=owner)
        )
    subjects = [("token", "TAG-1")] + ([("group", "G1")] if in_group else [])
    for n, (subject, period, metric) in enumerate(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(subjects),
                    st.sampled_from(["day", "week", "month"]),
                    st.sampled_from(["kwh", "money"]),
                ),
                max_size=3,
            )
        )
    ):
        engine.put(
            "budget",
            f"b{n}",
            Budget(
                id=f"b{n}",
                subject=subject[0],  # type: ignore[arg-type]
                subject_id=subject[1],
                metric=metric,  # type: ignore[arg-type]
                period=period,  # type: ignore[arg-type]
                limit=draw(amounts),
                currency="EUR" if metric == "money" else None,
            ),
        )
    for n, (kwh, money) in enumerate(draw(st.lists(st.tuples(amounts, amounts), max_size=3))):
        engine.consume(
            Consumption(
                f"c{n}",
                "TAG-1",
                "G1" if in_group else None,
                kwh,
                money,
                "EUR",
                now - timedelta(hours=1),
            )
        )
    for n in range(draw(st.integers(0, 3))):
        engine.track(
            ActiveSession("site", f"s{n}", "TAG-1", "G1" if in_group else None, Decimal(1), now)
        )
    return World(
        engine=engine,
        source=zaptec(
            unknown_token=draw(st.sampled_from(["allow", "deny"])),
            on_error=draw(st.sampled_from(["allow_known", "deny"])),
        ),
        request=StartRequest(
            "CH-1", draw(st.sampled_from(["TAG-1", "tag-1", "  tag-1"])), "U", "INST-1"
        ),
        now=now,
        blocked=token_blocked or group_blocked,
        reserve=draw(st.booleans()),
        token=token,
        group=group,
    )


# -- a blocked or expired token is never allowed ------------------------------------------


@PROPERTY
@given(world=refused_worlds())
def test_blocked_or_expired_token_is_never_allowed(world: World) -> None:
    before = dict(world.engine.active)
    outcome = world.engine.decide(world.source, world.request, world.now, reserve=world.reserve)
    assert not outcome.allowed
    assert outcome.result == (BLOCKED if world.blocked else EXPIRED), outcome.reasons
    assert outcome.session_id is None
    assert world.engine.active == before, "a refusal holds no session"


@PROPERTY
@given(world=refused_worlds())
def test_blocked_or_expired_token_is_never_allowed_by_the_allow_known_fallback(
    world: World,
) -> None:
    source = zaptec(on_error="allow_known")
    known = world.engine.known_for_offline(world.request, world.now)
    outcome = fallback(source, "storage unavailable", known)
    assert known is None, "a blocked or expired token is not whitelisted for offline use"
    assert outcome.result != ALLOWED


# -- budgets are never overspent by concurrent decisions -----------------------------------

NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)
halves = st.integers(0, 40).map(lambda n: Decimal(n) / 2)  # 0, 0.5, ... 20
reserves = st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(1), Decimal("1.5"), Decimal(4)])


def fleet(limit: Decimal, reserve: Decimal, tokens: int, used: Decimal) -> Engine:
    engine = Engine(AuthorizationConfig(session_reserve_kwh=float(reserve)))
    engine.put("group", "FLEET", Group(id="FLEET"))
    for i in range(tokens):
        engine.put("token", f"CAR-{i}", Token(uid=f"CAR-{i}", group_id="FLEET"))
    engine.put(
        "budget",
        "fleet",
        Budget(id="fleet", subject="group", subject_id="FLEET", period="day", limit=limit),
    )
    if used:
        engine.consume(Consumption("before", "CAR-0", "FLEET", used, None, None, NOW))
    return engine


def expected_approvals(limit: Decimal, reserve: Decimal, used: Decimal, starts: int) -> int:
    if used >= limit:
        return 0
    if reserve == 0:
        return starts
    return min(starts, max(0, math.floor((limit - used) / reserve)))


def held_and_used(engine: Engine, budget: Budget, subject: tuple[str, str]) -> Decimal:
    _, held = engine.reserved(subject, NOW)
    return engine.used(subject, budget, NOW) + held


@PROPERTY
@given(
    limit=halves,
    reserve=reserves,
    tokens=st.integers(1, 6),
    used=halves,
    starts=st.lists(st.integers(0, 5), min_size=1, max_size=60),
)
def test_group_budget_is_never_overspent_by_a_burst_of_starts(
    limit: Decimal, reserve: Decimal, tokens: int, used: Decimal, starts: list[int]
) -> None:
    engine = fleet(limit, reserve, tokens, used)

    async def start(index: int) -> str:
        await asyncio.sleep(0)  # every start is in flight before any is decided
        request = StartRequest("CH-1", f"car-{index % tokens}", None, None)
        return engine.decide(zaptec(), request, NOW, reserve=True).result

    async def burst() -> list[str]:
        return await asyncio.gather(*(start(i) for i in starts))

    results = asyncio.run(burst())
    approved = results.count(ALLOWED)
    assert set(results) <= {ALLOWED, NO_CREDIT}
    assert approved == expected_approvals(limit, reserve, used, len(starts))
    count, held = engine.reserved(("group", "FLEET"), NOW)
    assert (count, held) == (approved, reserve * approved)
    if approved:
        assert used + held <= limit


@dataclass(frozen=True)
class Start:
    token: int


@dataclass(frozen=True)
class End:
    which: int  # index into the approved sessions still active
    share: Decimal  # energy charged, as a share of the reservation (0..1)


@dataclass(frozen=True)
class Release:
    which: int


operations = st.lists(
    st.one_of(
        st.builds(Start, st.integers(0, 5)),
        st.builds(End, st.integers(0, 100), st.decimals(0, 1, places=2)),
        st.builds(Release, st.integers(0, 100)),
    ),
    min_size=1,
    max_size=80,
)


@PROPERTY
@given(
    group_limit=halves,
    token_limits=st.lists(st.none() | halves, min_size=6, max_size=6),
    reserve=reserves.filter(bool),
    used=halves,
    ops=operations,
)
def test_budgets_hold_through_starts_ends_and_releases(
    group_limit: Decimal,
    token_limits: list[Decimal | None],
    reserve: Decimal,
    used: Decimal,
    ops: list[Start | End | Release],
) -> None:
    """Energy charged never exceeds a session's reservation here, so whatever used plus held
    is when a start is approved, it stays within every budget of that token."""
    engine = fleet(group_limit, reserve, 6, used)
    for i, limit in enumerate(token_limits):
        if limit is not None:
            engine.put(
                "budget",
                f"car-{i}",
                Budget(
                    id=f"car-{i}", subject="token", subject_id=f"CAR-{i}", period="day", limit=limit
                ),
            )
    ceilings = {
        budget.id: max(
            budget.limit, held_and_used(engine, budget, (budget.subject, budget.subject_id))
        )
        for budget in engine.budgets.values()
    }
    open_sessions: list[Any] = []
    for n, op in enumerate(ops):
        if isinstance(op, Start):
            outcome = engine.decide(
                zaptec(), StartRequest("CH-1", f"CAR-{op.token}", None, None), NOW
            )
            if outcome.allowed:
                open_sessions.append(outcome)
                for budget in (
                    engine._budgets_of[("token", f"CAR-{op.token}")]
                    + engine._budgets_of[("group", "FLEET")]
                ):
                    subject = (budget.subject, budget.subject_id)
                    assert held_and_used(engine, budget, subject) <= budget.limit, budget.id
            else:
                assert outcome.result == NO_CREDIT
        elif open_sessions:
            outcome = open_sessions.pop(op.which % len(open_sessions))
            engine.release("site", outcome)
            if isinstance(op, End):
                engine.consume(
                    Consumption(
                        f"end-{n}",
                        outcome.token,
                        outcome.group_id,
                        outcome.reserved_kwh * op.share,
                        None,
                        None,
                        NOW,
                    )
                )
        for budget in engine.budgets.values():
            subject = (budget.subject, budget.subject_id)
            assert held_and_used(engine, budget, subject) <= ceilings[budget.id], budget.id


# -- the same through a real gateway --------------------------------------------------------

BASIC = "Basic " + base64.b64encode(f"{ZAPTEC_USER}:{ZAPTEC_PASSWORD}".encode()).decode()


@dataclass(frozen=True)
class Burst:
    limit: float
    reserve: float
    tokens: int
    starts: int
    token_limit: float | None = None
    charged_before: float = 0
    expected: int = 0


BURSTS = [
    pytest.param(Burst(limit=5, reserve=1, tokens=4, starts=24, expected=5), id="group-5kwh"),
    pytest.param(Burst(limit=2.5, reserve=1, tokens=3, starts=12, expected=2), id="group-2.5kwh"),
    pytest.param(
        Burst(limit=10, reserve=1.5, tokens=3, starts=20, charged_before=4, expected=4),
        id="group-after-4kwh-used",
    ),
    pytest.param(
        Burst(limit=50, reserve=1, tokens=3, starts=18, token_limit=1, expected=3),
        id="token-budgets-inside-group",
    ),
]


async def _burst(url: str, burst: Burst, tokens: list[str]) -> list[httpx.Response]:
    """Optionally charge some energy first, then fire every start at once."""
    hooks = f"{url}/hooks/site"
    async with httpx.AsyncClient(timeout=20, headers={"Authorization": BASIC}) as client:
        if burst.charged_before:
            first = await client.post(
                f"{hooks}/session-start", json={"ChargerId": "CH-0", "TokenId": tokens[0]}
            )
            assert first.status_code == 200, first.text
            end = await client.post(
                f"{hooks}/session-end",
                json={
                    "SessionId": first.json()["sessionId"],
                    "ChargerId": "CH-0",
                    "TokenId": tokens[0],
                    "Energy": burst.charged_before,
                },
            )
            assert end.status_code == 200, end.text
        return await asyncio.gather(
            *(
                client.post(
                    f"{hooks}/session-start",
                    json={"ChargerId": f"CH-{n}", "TokenId": tokens[n % len(tokens)].lower()},
                )
                for n in range(burst.starts)
            )
        )


@pytest.mark.parametrize("burst", BURSTS)
def test_concurrent_starts_at_a_real_gateway_never_overspend(
    make_gateway: Any, tmp_path: Path, burst: Burst
) -> None:
    tokens = [f"CAR-{i}" for i in range(burst.tokens)]
    budgets: list[dict[str, Any]] = [
        {
            "id": "fleet",
            "subject": "group",
            "subject_id": "FLEET",
            "period": "day",
            "limit": burst.limit,
        }
    ]
    if burst.token_limit is not None:
        budgets += [
            {
                "id": f"t-{uid}",
                "subject": "token",
                "subject_id": uid,
                "period": "day",
                "limit": burst.token_limit,
            }
            for uid in tokens
        ]
    running = make_gateway(
        base_config(
            tmp_path / "burst.db",
            sources=[
                {
                    "name": "site",
                    "provider": "zaptec",
                    "auth": "basic",
                    "username": ZAPTEC_USER,
                    "password": ZAPTEC_PASSWORD,
                }
            ],
            authorization={
                "session_reserve_kwh": burst.reserve,
                "groups": [{"id": "FLEET"}],
                "tokens": [{"uid": uid, "group_id": "FLEET"} for uid in tokens],
                "budgets": budgets,
            },
        )
    )
    answers = asyncio.run(_burst(running.url, burst, tokens))
    allowed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    assert {a.status_code for a in refused} <= {403}
    assert {a.json()["reason"] for a in refused} <= {"NO_CREDIT"}
    assert len(allowed) == burst.expected
    assert len({a.json()["sessionId"] for a in allowed}) == len(allowed)

    # What the store holds agrees: approved reservations plus used stay within the limit.
    held = running.rows(
        "SELECT coalesce(sum(CAST(reserved_kwh AS REAL)), 0), count(*) "
        "FROM authorized_sessions WHERE status = 'active'"
    )[0]
    assert held[1] == burst.expected
    assert held[0] + burst.charged_before <= burst.limit
    results = dict(running.rows("SELECT result, count(*) FROM decisions GROUP BY result"))
    assert results.get("ALLOWED", 0) == burst.expected + (1 if burst.charged_before else 0)
    assert results.get("NO_CREDIT", 0) == burst.starts - burst.expected
