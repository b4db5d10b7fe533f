"""The charging decision engine, table-driven: every result code and every reason.

The engine is built directly (no store, no HTTP) and fed entities, consumption and
active sessions; every decision is taken at a fixed, timezone-aware instant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from hookgate.authorization.decider import fallback
from hookgate.authorization.engine import (
    ActiveSession,
    Consumption,
    Engine,
    period_bounds,
    period_key,
)
from hookgate.authorization.outcome import (
    ALLOWED,
    BLOCKED,
    EXPIRED,
    NO_CREDIT,
    NOT_ALLOWED,
    RESULTS,
    UNKNOWN,
    Outcome,
)
from hookgate.config import AuthorizationConfig, ZaptecSource
from hookgate.domain.rules import Budget, ChargerRule, Group, Schedule, Scope, Token, Window
from hookgate.emulate.ampeco_samples import sample
from hookgate.providers import ampeco_catalog as catalog
from hookgate.providers.ampeco import session_consumption
from hookgate.providers.base import StartRequest
from hookgate.timeutil import parse_iso

# Wednesday, 11 June 2025, noon UTC.
NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
OSLO = "Europe/Oslo"

DENY = msgspec.convert({"name": "site", "provider": "zaptec"}, ZaptecSource)
ALLOW_UNKNOWN = msgspec.convert(
    {"name": "site", "provider": "zaptec", "unknown_token": "allow"}, ZaptecSource
)


def source(**fields: Any) -> ZaptecSource:
    return msgspec.convert({"name": "site", "provider": "zaptec", **fields}, ZaptecSource)


def request(
    token: str | None = "TAG-1",  # noqa: S107 - a charge token, not a secret
    charger: str | None = "CH-1",
    installation: str | None = "INST-1",
    user: str | None = "USER-1",
) -> StartRequest:
    return StartRequest(charger, token, user, installation)


def engine(**settings: Any) -> Engine:
    return Engine(AuthorizationConfig(**settings))


def kwh_budget(
    subject: str, owner: str, limit: str, period: str = "day", budget_id: str | None = None
) -> Budget:
    return Budget(
        id=budget_id or f"{subject}-{owner}-kwh-{period}",
        subject=subject,  # type: ignore[arg-type]
        subject_id=owner,
        metric="kwh",
        period=period,  # type: ignore[arg-type]
        limit=Decimal(limit),
    )


def money_budget(subject: str, owner: str, limit: str, currency: str = "EUR") -> Budget:
    return Budget(
        id=f"{subject}-{owner}-money-day",
        subject=subject,  # type: ignore[arg-type]
        subject_id=owner,
        metric="money",
        period="day",
        limit=Decimal(limit),
        currency=currency,
    )


_ids = iter(range(10**9))


def used(
    token: str | None,
    kwh: str,
    *,
    group: str | None = None,
    at: datetime = NOW - HOUR,
    money: str | None = None,
    currency: str | None = None,
    row_id: str | None = None,
) -> Consumption:
    return Consumption(
        id=row_id or f"c-{next(_ids)}",
        token=token,
        group_id=group,
        kwh=Decimal(kwh),
        money=Decimal(money) if money is not None else None,
        currency=currency,
        occurred_at=at,
    )


def active(
    token: str | None,
    *,
    group: str | None = None,
    reserved: str = "0",
    started: datetime = NOW - HOUR,
    session_id: str | None = None,
) -> ActiveSession:
    return ActiveSession(
        "site", session_id or f"s-{next(_ids)}", token, group, Decimal(reserved), started
    )


def finish(e: Engine, outcome: Outcome, kwh: str, at: datetime = NOW) -> None:
    """A session end as the store reports it: the reservation goes, the energy counts."""
    assert outcome.session_id is not None
    e.untrack("site", outcome.session_id)
    e.consume(used(outcome.token, kwh, group=outcome.group_id, at=at, row_id=outcome.session_id))


def said(outcome: Outcome) -> str:
    return " | ".join(outcome.reasons)


def valid_schedule(days: list[str], start: str, end: str, zone: str = OSLO) -> Schedule:
    return Schedule(timezone=zone, windows=[Window(days=days, start=start, end=end)])  # type: ignore[arg-type]


# -- table: every result code and every reason -------------------------------------------


@dataclass
class Case:
    id: str
    result: str
    reason: str
    tokens: list[Token] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    chargers: list[ChargerRule] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    consumption: list[Consumption] = field(default_factory=list)
    sessions: list[ActiveSession] = field(default_factory=list)
    source: ZaptecSource = DENY
    request: StartRequest = field(default_factory=request)
    now: datetime = NOW


TAG = Token(uid="TAG-1")
IN_G1 = Token(uid="TAG-1", group_id="G1")
G1 = Group(id="G1")
ELSEWHERE = Scope(sources=["other-site"])

CASES = [
    # ALLOWED
    Case("allowed", ALLOWED, "token TAG-1 is valid", tokens=[TAG]),
    Case(
        "allowed-uid-case-insensitive",
        ALLOWED,
        "token TAG-1 is valid",
        tokens=[Token(uid="tag-1")],
        request=request(" Tag-1 "),
    ),
    Case(
        "allowed-in-group-with-budget-room",
        ALLOWED,
        "group G1 day budget 3/10 kWh",
        tokens=[IN_G1],
        groups=[G1],
        budgets=[kwh_budget("group", "G1", "10")],
        consumption=[used("TAG-1", "3", group="G1")],
    ),
    Case(
        "allowed-at-charger-reserved-to-own-group",
        ALLOWED,
        "token TAG-1 is valid",
        tokens=[IN_G1],
        groups=[G1],
        chargers=[ChargerRule(charger_id="CH-1", mode="reserved", group_id="G1")],
    ),
    Case(
        "allowed-inside-every-scope",
        ALLOWED,
        "token TAG-1 is valid",
        tokens=[
            Token(
                uid="TAG-1",
                group_id="G1",
                scope=Scope(sources=["site"], installations=["INST-1"], chargers=["CH-1"]),
            )
        ],
        groups=[G1],
    ),
    Case(
        "allowed-unknown-token-by-source-policy",
        ALLOWED,
        "token NEW-TAG is unknown; source policy unknown_token=allow",
        source=ALLOW_UNKNOWN,
        request=request("new-tag"),
    ),
    Case(
        "allowed-unknown-token-at-open-charger",
        ALLOWED,
        "token NEW-TAG is unknown; charger CH-1 is open to anyone",
        chargers=[ChargerRule(charger_id="CH-1", mode="open")],
        request=request("new-tag"),
    ),
    Case(
        "allowed-no-token-at-open-charger",
        ALLOWED,
        "token (none) is unknown; charger CH-1 is open to anyone",
        chargers=[ChargerRule(charger_id="CH-1", mode="open")],
        request=request(None),
    ),
    # UNKNOWN
    Case(
        "unknown-token-denied-by-source-policy",
        UNKNOWN,
        "token NEW-TAG is unknown; source policy unknown_token=deny",
        tokens=[TAG],
        request=request("new-tag"),
    ),
    Case(
        "unknown-no-token-at-all",
        UNKNOWN,
        "token (none) is unknown",
        request=request(None),
    ),
    Case(
        "unknown-token-at-ruleless-charger-when-another-is-open",
        UNKNOWN,
        "unknown_token=deny",
        chargers=[ChargerRule(charger_id="CH-OPEN", mode="open")],
        request=request("new-tag"),
    ),
    # BLOCKED
    Case(
        "blocked-token",
        BLOCKED,
        "token TAG-1 is blocked",
        tokens=[Token(uid="TAG-1", status="blocked")],
    ),
    Case(
        "blocked-via-group",
        BLOCKED,
        "group G1 of token TAG-1 is blocked",
        tokens=[IN_G1],
        groups=[Group(id="G1", status="blocked")],
    ),
    Case(
        "blocked-token-at-open-charger",
        BLOCKED,
        "token TAG-1 is blocked",
        tokens=[Token(uid="TAG-1", status="blocked")],
        chargers=[ChargerRule(charger_id="CH-1", mode="open")],
        source=ALLOW_UNKNOWN,
    ),
    Case(
        "blocked-group-at-open-charger",
        BLOCKED,
        "group G1 of token TAG-1 is blocked",
        tokens=[IN_G1],
        groups=[Group(id="G1", status="blocked")],
        chargers=[ChargerRule(charger_id="CH-1", mode="open")],
        source=ALLOW_UNKNOWN,
    ),
    Case(
        "blocked-beats-expired-and-everything-else",
        BLOCKED,
        "token TAG-1 is blocked",
        tokens=[
            Token(
                uid="TAG-1",
                status="blocked",
                valid_until=NOW - HOUR,
                scope=ELSEWHERE,
                max_sessions=0,
            )
        ],
    ),
    # EXPIRED
    Case(
        "expired-token",
        EXPIRED,
        "token TAG-1 expired at 2025-06-11T11:00:00+00:00",
        tokens=[Token(uid="TAG-1", valid_until=NOW - HOUR)],
    ),
    Case(
        "expired-at-the-very-instant",
        EXPIRED,
        "token TAG-1 expired at",
        tokens=[Token(uid="TAG-1", valid_until=NOW)],
    ),
    Case(
        "expired-token-at-open-charger",
        EXPIRED,
        "token TAG-1 expired at",
        tokens=[Token(uid="TAG-1", valid_until=NOW - HOUR)],
        chargers=[ChargerRule(charger_id="CH-1", mode="open")],
        source=ALLOW_UNKNOWN,
    ),
    Case(
        "expired-beats-not-allowed-and-no-credit",
        EXPIRED,
        "token TAG-1 expired at",
        tokens=[Token(uid="TAG-1", valid_until=NOW - HOUR, scope=ELSEWHERE)],
        budgets=[kwh_budget("token", "TAG-1", "0")],
    ),
    # NO_CREDIT
    Case(
        "no-credit-token-energy-budget",
        NO_CREDIT,
        "token TAG-1 day energy budget: 10 kWh used + 0 kWh reserved of 10 kWh",
        tokens=[TAG],
        budgets=[kwh_budget("token", "TAG-1", "10")],
        consumption=[used("TAG-1", "6"), used("TAG-1", "4")],
    ),
    Case(
        "no-credit-group-energy-budget",
        NO_CREDIT,
        "group G1 day energy budget: 9.5 kWh used",
        tokens=[IN_G1, Token(uid="TAG-2", group_id="G1")],
        groups=[G1],
        budgets=[kwh_budget("group", "G1", "10")],
        consumption=[used("TAG-2", "9.5", group="G1")],
    ),
    Case(
        "no-credit-reservations-held-by-active-sessions",
        NO_CREDIT,
        "token TAG-1 day energy budget: 0 kWh used + 2 kWh reserved of 2 kWh",
        tokens=[TAG],
        budgets=[kwh_budget("token", "TAG-1", "2")],
        sessions=[active("TAG-1", reserved="1"), active("TAG-1", reserved="1")],
    ),
    Case(
        "no-credit-money-budget",
        NO_CREDIT,
        "token TAG-1 day money budget: 20.00 of 20 EUR spent",
        tokens=[TAG],
        budgets=[money_budget("token", "TAG-1", "20")],
        consumption=[
            used("TAG-1", "10", money="12.50", currency="EUR"),
            used("TAG-1", "5", money="7.50", currency="EUR"),
        ],
    ),
    Case(
        "no-credit-week-budget",
        NO_CREDIT,
        "token TAG-1 week energy budget",
        tokens=[TAG],
        budgets=[kwh_budget("token", "TAG-1", "50", "week")],
        # Monday and Tuesday of the same ISO week.
        consumption=[used("TAG-1", "30", at=NOW - 2 * 24 * HOUR), used("TAG-1", "20")],
    ),
    Case(
        "no-credit-month-budget",
        NO_CREDIT,
        "token TAG-1 month energy budget",
        tokens=[TAG],
        budgets=[kwh_budget("token", "TAG-1", "100", "month")],
        consumption=[used("TAG-1", "99.5", at=datetime(2025, 6, 1, 0, 30, tzinfo=UTC))],
    ),
    # NOT_ALLOWED
    Case(
        "not-allowed-not-yet-valid",
        NOT_ALLOWED,
        "token TAG-1 is valid from 2025-06-11T13:00:00+00:00",
        tokens=[Token(uid="TAG-1", valid_from=NOW + HOUR)],
    ),
    Case(
        "not-allowed-token-source-scope",
        NOT_ALLOWED,
        "token TAG-1: source site is outside the allowed sources",
        tokens=[Token(uid="TAG-1", scope=ELSEWHERE)],
    ),
    Case(
        "not-allowed-token-installation-scope",
        NOT_ALLOWED,
        "token TAG-1: installation INST-1 is outside the allowed installations",
        tokens=[Token(uid="TAG-1", scope=Scope(installations=["INST-9"]))],
    ),
    Case(
        "not-allowed-token-charger-scope",
        NOT_ALLOWED,
        "token TAG-1: charger CH-1 is outside the allowed chargers",
        tokens=[Token(uid="TAG-1", scope=Scope(chargers=["CH-9"]))],
    ),
    Case(
        "not-allowed-token-installation-scope-without-installation",
        NOT_ALLOWED,
        "token TAG-1: installation None is outside the allowed installations",
        tokens=[Token(uid="TAG-1", scope=Scope(installations=["INST-1"]))],
        request=request(installation=None),
    ),
    Case(
        "not-allowed-group-source-scope",
        NOT_ALLOWED,
        "group G1: source site is outside the allowed sources",
        tokens=[IN_G1],
        groups=[Group(id="G1", scope=ELSEWHERE)],
    ),
    Case(
        "not-allowed-group-installation-scope",
        NOT_ALLOWED,
        "group G1: installation INST-1 is outside the allowed installations",
        tokens=[IN_G1],
        groups=[Group(id="G1", scope=Scope(installations=["INST-9"]))],
    ),
    Case(
        "not-allowed-group-charger-scope",
        NOT_ALLOWED,
        "group G1: charger CH-1 is outside the allowed chargers",
        tokens=[IN_G1],
        groups=[Group(id="G1", scope=Scope(chargers=["CH-9"]))],
    ),
    Case(
        "not-allowed-charger-reserved-to-another-group",
        NOT_ALLOWED,
        "charger CH-1 is reserved to group G2",
        tokens=[IN_G1],
        groups=[G1, Group(id="G2")],
        chargers=[ChargerRule(charger_id="CH-1", mode="reserved", group_id="G2")],
    ),
    Case(
        "not-allowed-charger-reserved-token-without-group",
        NOT_ALLOWED,
        "charger CH-1 is reserved to group G2",
        tokens=[TAG],
        chargers=[ChargerRule(charger_id="CH-1", mode="reserved", group_id="G2")],
    ),
    Case(
        "not-allowed-unknown-token-at-reserved-charger",
        NOT_ALLOWED,
        "token NEW-TAG is unknown; charger CH-1 is reserved to group G2",
        chargers=[ChargerRule(charger_id="CH-1", mode="reserved", group_id="G2")],
        request=request("new-tag"),
    ),
    Case(
        "not-allowed-unknown-token-at-reserved-charger-despite-allow-policy",
        NOT_ALLOWED,
        "token NEW-TAG is unknown; charger CH-1 is reserved to group G2",
        chargers=[ChargerRule(charger_id="CH-1", mode="reserved", group_id="G2")],
        source=ALLOW_UNKNOWN,
        request=request("new-tag"),
    ),
    Case(
        "not-allowed-token-schedule",
        NOT_ALLOWED,
        "token TAG-1: Wed 14:00 Europe/Oslo is outside its schedule",
        tokens=[Token(uid="TAG-1", schedule=valid_schedule(["sat", "sun"], "00:00", "24:00"))],
    ),
    Case(
        "not-allowed-group-schedule",
        NOT_ALLOWED,
        "group G1: Wed 14:00 Europe/Oslo is outside its schedule",
        tokens=[IN_G1],
        groups=[Group(id="G1", schedule=valid_schedule(["wed"], "18:00", "06:00"))],
    ),
    Case(
        "not-allowed-token-concurrency-limit",
        NOT_ALLOWED,
        "token TAG-1 has 1 active sessions (limit 1)",
        tokens=[Token(uid="TAG-1", max_sessions=1)],
        sessions=[active("TAG-1")],
    ),
    Case(
        "not-allowed-group-concurrency-limit",
        NOT_ALLOWED,
        "group G1 has 2 active sessions (limit 2)",
        tokens=[IN_G1, Token(uid="TAG-2", group_id="G1"), Token(uid="TAG-3", group_id="G1")],
        groups=[Group(id="G1", max_sessions=2)],
        sessions=[active("TAG-2", group="G1"), active("TAG-3", group="G1")],
    ),
    Case(
        "not-allowed-zero-sessions-allowed",
        NOT_ALLOWED,
        "token TAG-1 has 0 active sessions (limit 0)",
        tokens=[Token(uid="TAG-1", max_sessions=0)],
    ),
    Case(
        "not-allowed-beats-no-credit",
        NOT_ALLOWED,
        "token TAG-1: source site is outside the allowed sources",
        tokens=[Token(uid="TAG-1", scope=ELSEWHERE)],
        budgets=[kwh_budget("token", "TAG-1", "0")],
    ),
]


def build(case: Case) -> Engine:
    e = engine()
    for token in case.tokens:
        e.put("token", token.uid, copy.deepcopy(token))
    for group in case.groups:
        e.put("group", group.id, group)
    for rule in case.chargers:
        e.put("charger", rule.charger_id, rule)
    for budget in case.budgets:
        e.put("budget", budget.id, budget)
    for row in case.consumption:
        e.consume(row)
    for session in case.sessions:
        e.track(session)
    return e


def test_the_table_covers_every_result_code() -> None:
    assert {case.result for case in CASES} == set(RESULTS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    e = build(case)
    before = len(e.active)
    outcome = e.decide(case.source, case.request, case.now)
    assert outcome.result == case.result, said(outcome)
    assert case.reason in said(outcome)
    if case.result == ALLOWED:
        assert outcome.allowed and outcome.session_id
        assert len(e.active) == before + 1, "an approval holds an active session"
    else:
        assert not outcome.allowed
        assert outcome.session_id is None
        assert outcome.message, "a refusal explains itself to the driver"
        assert len(e.active) == before, "a refusal reserves nothing"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide_without_reserve_gives_the_same_answer_and_holds_nothing(case: Case) -> None:
    e = build(case)
    before = dict(e.active)
    outcome = e.decide(case.source, case.request, case.now, reserve=False)
    assert outcome.result == case.result
    assert e.active == before


# -- open chargers and unknown_token ------------------------------------------------------


@pytest.mark.parametrize("policy", ["allow", "deny"])
@pytest.mark.parametrize(
    ("token", "result"),
    [
        (None, ALLOWED),
        (Token(uid="TAG-1"), ALLOWED),
        (Token(uid="TAG-1", status="blocked"), BLOCKED),
        (Token(uid="TAG-1", valid_until=NOW - timedelta(seconds=1)), EXPIRED),
        (Token(uid="TAG-1", group_id="GB"), BLOCKED),
    ],
    ids=["unknown", "valid", "blocked", "expired", "group-blocked"],
)
def test_open_charger_lets_unknown_tokens_charge_but_never_blocked_or_expired(
    policy: str, token: Token | None, result: str
) -> None:
    e = engine()
    e.put("charger", "CH-OPEN", ChargerRule(charger_id="CH-OPEN", mode="open"))
    e.put("group", "GB", Group(id="GB", status="blocked"))
    if token is not None:
        e.put("token", token.uid, token)
    outcome = e.decide(source(unknown_token=policy), request("tag-1", charger="CH-OPEN"), NOW)
    assert outcome.result == result, said(outcome)


@pytest.mark.parametrize(("policy", "result"), [("allow", ALLOWED), ("deny", UNKNOWN)])
def test_unknown_token_policy(policy: str, result: str) -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    outcome = e.decide(source(unknown_token=policy), request("TAG-2"), NOW)
    assert outcome.result == result
    assert f"unknown_token={policy}" in said(outcome)
    assert "TAG-2" in said(outcome)
    # The policy changes nothing for known tokens.
    assert e.decide(source(unknown_token=policy), request("TAG-1"), NOW).result == ALLOWED


def test_unknown_token_allowed_holds_no_energy_reservation() -> None:
    e = engine(session_reserve_kwh=2)
    outcome = e.decide(ALLOW_UNKNOWN, request("new-tag"), NOW)
    assert outcome.allowed and outcome.token == "NEW-TAG" and outcome.group_id is None
    assert outcome.reserved_kwh == 0


def test_token_removed_becomes_unknown_and_replaced_token_takes_effect() -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    assert e.decide(DENY, request(), NOW).result == ALLOWED
    e.put("token", "TAG-1", Token(uid="TAG-1", status="blocked"))
    assert e.decide(DENY, request(), NOW).result == BLOCKED
    e.put("token", "TAG-1", None)
    assert e.decide(DENY, request(), NOW).result == UNKNOWN


# -- budgets --------------------------------------------------------------------------------


def test_energy_budget_runs_out_over_several_sessions() -> None:
    """10 kWh a day, 1 kWh reserve, 4 kWh per session: starts 1-3 pass, the 4th does not."""
    e = engine(session_reserve_kwh=1)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "10"))
    for n in range(3):
        outcome = e.decide(DENY, request(), NOW + n * HOUR)
        assert outcome.result == ALLOWED, (n, said(outcome))
        assert outcome.reserved_kwh == Decimal(1)
        assert f"token TAG-1 day budget {4 * n}/10 kWh" in said(outcome)
        finish(e, outcome, "4", NOW + n * HOUR + timedelta(minutes=30))
    refused = e.decide(DENY, request(), NOW + 3 * HOUR)
    assert refused.result == NO_CREDIT
    assert "12 kWh used + 0 kWh reserved of 10 kWh" in said(refused)
    assert refused.message
    # The next day starts a fresh period.
    tomorrow = datetime(2025, 6, 12, 0, 0, 1, tzinfo=UTC)
    assert e.decide(DENY, request(), tomorrow).result == ALLOWED


@pytest.mark.parametrize(
    ("reserve", "consumed", "result"),
    [
        (1, "8", ALLOWED),  # 8 + 1 <= 10
        (1, "9", ALLOWED),  # 9 + 1 == 10
        (1, "9.01", NO_CREDIT),  # 9.01 + 1 > 10
        (1, "10", NO_CREDIT),
        (0, "9.99", ALLOWED),  # no reserve: any room left will do
        (0, "10", NO_CREDIT),  # ... but none left is none
        (2.5, "7.5", ALLOWED),
        (2.5, "7.6", NO_CREDIT),
    ],
)
def test_energy_budget_needs_room_for_the_reserve(
    reserve: float, consumed: str, result: str
) -> None:
    e = engine(session_reserve_kwh=reserve)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "10"))
    e.consume(used("TAG-1", consumed))
    outcome = e.decide(DENY, request(), NOW)
    assert outcome.result == result, said(outcome)


def test_reservations_of_active_sessions_count_until_released() -> None:
    e = engine(session_reserve_kwh=1)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "3"))
    approvals = [e.decide(DENY, request(), NOW) for _ in range(3)]
    assert [o.result for o in approvals] == [ALLOWED] * 3
    assert e.reserved(("token", "TAG-1"), NOW) == (3, Decimal(3))
    refused = e.decide(DENY, request(), NOW)
    assert refused.result == NO_CREDIT
    assert "0 kWh used + 3 kWh reserved of 3 kWh" in said(refused)
    # An approval that was never recorded gives its reservation back.
    e.release("site", approvals[0])
    assert e.decide(DENY, request(), NOW).result == ALLOWED


def test_a_session_end_replaces_the_reservation_with_the_energy_charged() -> None:
    e = engine(session_reserve_kwh=3)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "5"))
    first = e.decide(DENY, request(), NOW)
    assert first.allowed
    assert e.decide(DENY, request(), NOW).result == NO_CREDIT  # 0 + 3 held + 3 > 5
    finish(e, first, "0.5")
    assert e.reserved(("token", "TAG-1"), NOW) == (0, Decimal(0))
    assert e.decide(DENY, request(), NOW).allowed  # 0.5 + 3 <= 5


def test_a_newer_report_of_the_same_session_replaces_the_older_one() -> None:
    e = engine(session_reserve_kwh=1)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    budget = kwh_budget("token", "TAG-1", "10")
    e.put("budget", budget.id, budget)
    e.consume(used("TAG-1", "4", row_id="same"))
    e.consume(used("TAG-1", "6", row_id="same"))
    assert e.used(("token", "TAG-1"), budget, NOW) == Decimal(6)
    e.consume(used("TAG-1", "9.5", row_id="other"))
    assert e.decide(DENY, request(), NOW).result == NO_CREDIT


def test_group_budget_is_shared_by_its_tokens() -> None:
    e = engine(session_reserve_kwh=1)
    e.put("group", "FLEET", Group(id="FLEET"))
    for uid in ("CAR-A", "CAR-B"):
        e.put("token", uid, Token(uid=uid, group_id="FLEET"))
    e.put("token", "LONER", Token(uid="LONER"))
    e.put("budget", "g", kwh_budget("group", "FLEET", "10"))

    a = e.decide(DENY, request("car-a"), NOW)
    assert a.allowed and a.group_id == "FLEET" and a.reserved_kwh == 1
    finish(e, a, "6")
    b = e.decide(DENY, request("car-b"), NOW)
    assert b.allowed, said(b)
    assert "group FLEET day budget 6/10 kWh" in said(b)
    finish(e, b, "3.5")
    for uid in ("car-a", "car-b"):
        refused = e.decide(DENY, request(uid), NOW)
        assert refused.result == NO_CREDIT, uid
        assert "group FLEET day energy budget: 9.5 kWh used" in said(refused)
    # A token outside the group is untouched by the group's budget.
    assert e.decide(DENY, request("loner"), NOW).allowed


def test_group_reservations_are_shared_by_its_tokens() -> None:
    e = engine(session_reserve_kwh=2)
    e.put("group", "FLEET", Group(id="FLEET"))
    for uid in ("CAR-A", "CAR-B", "CAR-C"):
        e.put("token", uid, Token(uid=uid, group_id="FLEET"))
    e.put("budget", "g", kwh_budget("group", "FLEET", "4"))
    assert e.decide(DENY, request("car-a"), NOW).allowed
    assert e.decide(DENY, request("car-b"), NOW).allowed
    refused = e.decide(DENY, request("car-c"), NOW)
    assert refused.result == NO_CREDIT
    assert "group FLEET day energy budget: 0 kWh used + 4 kWh reserved of 4 kWh" in said(refused)


def test_token_budget_inside_a_group_budget_applies_too() -> None:
    e = engine(session_reserve_kwh=1)
    e.put("group", "FLEET", Group(id="FLEET"))
    e.put("token", "CAR-A", Token(uid="CAR-A", group_id="FLEET"))
    e.put("budget", "g", kwh_budget("group", "FLEET", "100"))
    e.put("budget", "t", kwh_budget("token", "car-a", "5"))
    e.consume(used("CAR-A", "4.5", group="FLEET"))
    refused = e.decide(DENY, request("CAR-A"), NOW)
    assert refused.result == NO_CREDIT
    assert "token CAR-A day energy budget: 4.5 kWh used" in said(refused)


def test_money_budget_counts_only_its_currency_and_holds_no_energy_reserve() -> None:
    e = engine(session_reserve_kwh=5)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "m", money_budget("token", "TAG-1", "20"))
    e.consume(used("TAG-1", "40", money="19.99", currency="EUR"))
    e.consume(used("TAG-1", "40", money="500", currency="NOK"))
    e.consume(used("TAG-1", "40"))  # no amount reported
    outcome = e.decide(DENY, request(), NOW)
    assert outcome.allowed, said(outcome)
    assert outcome.reserved_kwh == 0, "a money budget reserves no energy"
    e.consume(used("TAG-1", "1", money="0.01", currency="EUR"))
    refused = e.decide(DENY, request(), NOW)
    assert refused.result == NO_CREDIT
    assert "token TAG-1 day money budget: 20.00 of 20 EUR spent" in said(refused)


def ampeco_update(id_tag: str, wh: int, gross: float, stopped: datetime) -> Any:
    body = sample("SessionUpdateNotification", 7)
    session = body["session"]
    session.update(
        idTag=id_tag,
        energy=wh,
        totalAmount={"withTax": gross, "withoutTax": round(gross / 1.25, 2)},
        currency="EUR",
        stoppedAt=stopped.isoformat().replace("+00:00", "Z"),
    )
    return msgspec.convert(body, catalog.EVENTS["SessionUpdateNotification"])


def consumption_of(event: Any, group: str | None = None) -> Consumption:
    report = session_consumption(event)
    assert report is not None
    return Consumption(
        id=report.session_key,
        token=report.token.strip().upper() if report.token else None,
        group_id=group,
        kwh=Decimal(report.kwh),
        money=Decimal(report.money) if report.money is not None else None,
        currency=report.currency,
        occurred_at=report.occurred_at,
    )


def test_money_budget_from_ampeco_amounts() -> None:
    """AMPECO reports Wh and an amount incl. VAT; the money budget is spent in EUR."""
    e = engine(session_reserve_kwh=1)
    e.put("group", "FLEET", Group(id="FLEET"))
    e.put("token", "04A1B2C3", Token(uid="04a1b2c3", group_id="FLEET"))
    e.put("budget", "m", money_budget("group", "FLEET", "25"))
    e.put("budget", "k", kwh_budget("group", "FLEET", "100"))

    first = consumption_of(ampeco_update("04a1b2c3", 24_500, 12.75, NOW - HOUR), "FLEET")
    assert first.kwh == Decimal("24.5"), "AMPECO energy is Wh; budgets count kWh"
    assert (first.money, first.currency) == (Decimal("12.75"), "EUR")
    e.consume(first)
    ok = e.decide(DENY, request("04A1B2C3"), NOW)
    assert ok.allowed, said(ok)
    assert "group FLEET day budget 12.75/25 EUR" in said(ok)
    assert "group FLEET day budget 24.5/100 kWh" in said(ok)
    e.release("site", ok)

    body = ampeco_update("04a1b2c3", 30_000, 12.25, NOW - HOUR / 2)
    second = consumption_of(body, "FLEET")
    second.id = "session:other"
    e.consume(second)
    refused = e.decide(DENY, request("04A1B2C3"), NOW)
    assert refused.result == NO_CREDIT
    assert "group FLEET day money budget: 25.00 of 25 EUR spent" in said(refused)


def test_budget_removed_no_longer_applies() -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "1"))
    e.consume(used("TAG-1", "5"))
    assert e.decide(DENY, request(), NOW).result == NO_CREDIT
    e.put("budget", "b", kwh_budget("token", "TAG-1", "100"))  # replaced: larger limit
    assert e.decide(DENY, request(), NOW).allowed
    e.put("budget", "b", None)
    assert e.decide(DENY, request(), NOW).reserved_kwh == 0


# -- periods in the configured time zone -------------------------------------------------


def at(text: str) -> datetime:
    return parse_iso(text)


@pytest.mark.parametrize(
    ("zone", "period", "consumed_at", "decided_at", "counts"),
    [
        # Day: 22:30Z is already tomorrow in Oslo (CEST, +2), not in UTC.
        (OSLO, "day", "2025-06-10T22:30:00Z", "2025-06-11T12:00:00Z", True),
        ("UTC", "day", "2025-06-10T22:30:00Z", "2025-06-11T12:00:00Z", False),
        (OSLO, "day", "2025-06-10T21:59:59Z", "2025-06-11T12:00:00Z", False),
        (OSLO, "day", "2025-06-11T21:30:00Z", "2025-06-11T22:30:00Z", False),
        # Winter: Oslo is +1.
        (OSLO, "day", "2025-01-14T23:00:00Z", "2025-01-15T08:00:00Z", True),
        (OSLO, "day", "2025-01-14T22:59:00Z", "2025-01-15T08:00:00Z", False),
        # The spring-forward day has 23 hours: 00:00 CET to 24:00 CEST.
        (OSLO, "day", "2025-03-29T23:00:00Z", "2025-03-30T21:59:00Z", True),
        (OSLO, "day", "2025-03-29T23:00:00Z", "2025-03-30T22:00:00Z", False),
        # The fall-back day has 25 hours: 00:00 CEST to 24:00 CET.
        (OSLO, "day", "2025-10-25T22:00:00Z", "2025-10-26T22:59:00Z", True),
        (OSLO, "day", "2025-10-25T21:59:00Z", "2025-10-26T12:00:00Z", False),
        (OSLO, "day", "2025-10-25T22:00:00Z", "2025-10-26T23:00:00Z", False),
        # ISO week, starting Monday 00:00 local.
        (OSLO, "week", "2025-06-15T22:30:00Z", "2025-06-20T12:00:00Z", True),
        (OSLO, "week", "2025-06-15T21:30:00Z", "2025-06-20T12:00:00Z", False),
        ("UTC", "week", "2025-06-15T22:30:00Z", "2025-06-20T12:00:00Z", False),
        (OSLO, "week", "2025-06-16T08:00:00Z", "2025-06-22T21:59:00Z", True),
        (OSLO, "week", "2025-06-16T08:00:00Z", "2025-06-22T22:00:00Z", False),
        # ISO week 2025-W01 starts on Monday 30 December 2024.
        (OSLO, "week", "2024-12-30T08:00:00Z", "2025-01-03T08:00:00Z", True),
        (OSLO, "week", "2024-12-29T08:00:00Z", "2025-01-03T08:00:00Z", False),
        # Month.
        (OSLO, "month", "2025-06-30T22:30:00Z", "2025-07-15T12:00:00Z", True),
        (OSLO, "month", "2025-06-30T21:30:00Z", "2025-07-15T12:00:00Z", False),
        ("UTC", "month", "2025-06-30T22:30:00Z", "2025-07-15T12:00:00Z", False),
        (OSLO, "month", "2025-03-01T08:00:00Z", "2025-03-31T21:59:00Z", True),
        (OSLO, "month", "2025-03-01T08:00:00Z", "2025-03-31T22:00:00Z", False),
        (OSLO, "month", "2025-02-28T23:00:00Z", "2025-03-10T12:00:00Z", True),
        ("Europe/Berlin", "month", "2025-10-31T23:00:00Z", "2025-11-20T12:00:00Z", True),
        ("Europe/Berlin", "month", "2025-10-31T22:59:00Z", "2025-11-20T12:00:00Z", False),
    ],
)
def test_budget_periods_follow_the_configured_time_zone(
    zone: str, period: str, consumed_at: str, decided_at: str, counts: bool
) -> None:
    e = engine(timezone=zone, session_reserve_kwh=1)
    e.put("token", "TAG-1", Token(uid="TAG-1"))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "10", period))
    e.consume(used("TAG-1", "10", at=at(consumed_at)))
    outcome = e.decide(DENY, request(), at(decided_at))
    assert outcome.result == (NO_CREDIT if counts else ALLOWED), said(outcome)
    if counts:
        assert f"token TAG-1 {period} energy budget: 10 kWh used" in said(outcome)


@pytest.mark.parametrize(
    ("moment", "day", "week", "month"),
    [
        ("2025-03-29T22:59:59Z", "2025-03-29", "2025-W13", "2025-03"),
        ("2025-03-29T23:00:00Z", "2025-03-30", "2025-W13", "2025-03"),
        ("2025-03-30T21:59:59Z", "2025-03-30", "2025-W13", "2025-03"),
        ("2025-03-30T22:00:00Z", "2025-03-31", "2025-W14", "2025-03"),
        ("2025-10-26T00:30:00Z", "2025-10-26", "2025-W43", "2025-10"),  # 02:30 CEST
        ("2025-10-26T01:30:00Z", "2025-10-26", "2025-W43", "2025-10"),  # 02:30 CET
        ("2025-10-26T22:59:59Z", "2025-10-26", "2025-W43", "2025-10"),
        ("2025-10-26T23:00:00Z", "2025-10-27", "2025-W44", "2025-10"),
        ("2025-12-31T23:00:00Z", "2026-01-01", "2026-W01", "2026-01"),
    ],
)
def test_period_keys_in_oslo(moment: str, day: str, week: str, month: str) -> None:
    zone = ZoneInfo(OSLO)
    instant = at(moment)
    assert period_key(instant, "day", zone) == day
    assert period_key(instant, "week", zone) == week
    assert period_key(instant, "month", zone) == month


# -- schedules across DST -----------------------------------------------------------------

# Europe/Oslo: spring forward on Sun 2025-03-30 at 01:00Z (02:00 CET -> 03:00 CEST),
# fall back on Sun 2025-10-26 at 01:00Z (03:00 CEST -> 02:00 CET).
SCHEDULE_CASES = [
    # Office hours on weekdays, the same UTC time on either side of the change.
    (
        "weekdays",
        ["mon", "tue", "wed", "thu", "fri"],
        "08:00",
        "17:00",
        [
            ("2025-03-28T07:30:00Z", True),  # Fri 08:30 CET
            ("2025-03-28T06:30:00Z", False),  # Fri 07:30 CET
            ("2025-03-31T06:30:00Z", True),  # Mon 08:30 CEST
            ("2025-03-31T05:59:00Z", False),  # Mon 07:59 CEST
            ("2025-03-31T14:59:00Z", True),  # Mon 16:59 CEST
            ("2025-03-31T15:00:00Z", False),  # Mon 17:00 CEST
            ("2025-03-28T15:30:00Z", True),  # Fri 16:30 CET
            ("2025-03-28T16:00:00Z", False),  # Fri 17:00 CET
            ("2025-10-24T06:30:00Z", True),  # Fri 08:30 CEST
            ("2025-10-27T06:30:00Z", False),  # Mon 07:30 CET
            ("2025-10-27T07:00:00Z", True),  # Mon 08:00 CET
            ("2025-03-30T10:00:00Z", False),  # Sunday
        ],
    ),
    # The spring-forward night: 02:00-03:00 local does not exist that day.
    (
        "spring-night",
        ["sun"],
        "01:00",
        "04:00",
        [
            ("2025-03-29T23:59:00Z", False),  # 00:59 CET
            ("2025-03-30T00:00:00Z", True),  # 01:00 CET
            ("2025-03-30T00:59:00Z", True),  # 01:59 CET
            ("2025-03-30T01:00:00Z", True),  # 03:00 CEST
            ("2025-03-30T01:59:00Z", True),  # 03:59 CEST
            ("2025-03-30T02:00:00Z", False),  # 04:00 CEST, not 03:00
            ("2025-03-30T02:30:00Z", False),  # 04:30 CEST
        ],
    ),
    # The fall-back night: 02:00-03:00 local happens twice, both are inside.
    (
        "fall-night",
        ["sun"],
        "02:00",
        "03:00",
        [
            ("2025-10-25T23:59:00Z", False),  # 01:59 CEST
            ("2025-10-26T00:00:00Z", True),  # 02:00 CEST
            ("2025-10-26T00:59:00Z", True),  # 02:59 CEST
            ("2025-10-26T01:00:00Z", True),  # 02:00 CET, the second time
            ("2025-10-26T01:59:00Z", True),  # 02:59 CET
            ("2025-10-26T02:00:00Z", False),  # 03:00 CET
        ],
    ),
    # A night window past midnight on the spring-forward weekend (Sat night).
    (
        "sat-night-spring",
        ["sat"],
        "22:00",
        "06:00",
        [
            ("2025-03-29T20:59:00Z", False),  # Sat 21:59 CET
            ("2025-03-29T21:00:00Z", True),  # Sat 22:00 CET
            ("2025-03-29T23:30:00Z", True),  # Sun 00:30 CET
            ("2025-03-30T01:30:00Z", True),  # Sun 03:30 CEST
            ("2025-03-30T03:59:00Z", True),  # Sun 05:59 CEST
            ("2025-03-30T04:00:00Z", False),  # Sun 06:00 CEST (05:00 if DST were ignored)
            ("2025-03-30T04:30:00Z", False),  # Sun 06:30 CEST
            ("2025-03-28T23:30:00Z", False),  # Sat 00:30: the night after Friday, not listed
            ("2025-03-30T21:00:00Z", False),  # Sun 23:00 CEST
        ],
    ),
    # The same window on the fall-back weekend.
    (
        "sat-night-fall",
        ["sat"],
        "22:00",
        "06:00",
        [
            ("2025-10-25T19:59:00Z", False),  # Sat 21:59 CEST
            ("2025-10-25T20:00:00Z", True),  # Sat 22:00 CEST
            ("2025-10-26T01:30:00Z", True),  # Sun 02:30 CET
            ("2025-10-26T04:30:00Z", True),  # Sun 05:30 CET (06:30 if DST were ignored)
            ("2025-10-26T04:59:00Z", True),  # Sun 05:59 CET
            ("2025-10-26T05:00:00Z", False),  # Sun 06:00 CET
        ],
    ),
]


def _schedule_params() -> list[Any]:
    out = []
    for name, days, start, end, moments in SCHEDULE_CASES:
        for moment, allowed in moments:
            out.append(pytest.param(days, start, end, moment, allowed, id=f"{name}-{moment}"))
    return out


@pytest.mark.parametrize("zone", [OSLO, "Europe/Berlin"])
@pytest.mark.parametrize("owner", ["token", "group"])
@pytest.mark.parametrize(("days", "start", "end", "moment", "allowed"), _schedule_params())
def test_schedules_across_dst(
    zone: str, owner: str, days: list[str], start: str, end: str, moment: str, allowed: bool
) -> None:
    schedule = valid_schedule(days, start, end, zone)
    e = engine()
    if owner == "token":
        e.put("token", "TAG-1", Token(uid="TAG-1", schedule=schedule))
    else:
        e.put("token", "TAG-1", Token(uid="TAG-1", group_id="G1"))
        e.put("group", "G1", Group(id="G1", schedule=schedule))
    instant = at(moment)
    outcome = e.decide(DENY, request(), instant)
    if allowed:
        assert outcome.result == ALLOWED, said(outcome)
    else:
        assert outcome.result == NOT_ALLOWED
        local = instant.astimezone(ZoneInfo(zone))
        name = "token TAG-1" if owner == "token" else "group G1"
        assert f"{name}: {local:%a %H:%M} {zone} is outside its schedule" in said(outcome)


def test_schedule_with_several_windows_and_whole_days() -> None:
    schedule = Schedule(
        timezone=OSLO,
        windows=[
            Window(days=["mon", "tue", "wed", "thu", "fri"], start="18:00", end="07:00"),
            Window(days=["sat", "sun"]),  # whole day: 00:00-24:00
        ],
    )
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1", schedule=schedule))
    verdicts = {
        "2025-06-11T12:00:00Z": NOT_ALLOWED,  # Wed 14:00
        "2025-06-11T16:00:00Z": ALLOWED,  # Wed 18:00
        "2025-06-12T04:59:00Z": ALLOWED,  # Thu 06:59 (Wed night)
        "2025-06-12T05:00:00Z": NOT_ALLOWED,  # Thu 07:00
        "2025-06-14T21:59:00Z": ALLOWED,  # Sat 23:59
        "2025-06-16T04:00:00Z": NOT_ALLOWED,  # Mon 06:00: no night window after Sunday
        "2025-06-17T04:00:00Z": ALLOWED,  # Tue 06:00: Monday's night window
        "2025-06-17T05:00:00Z": NOT_ALLOWED,  # Tue 07:00
    }
    for moment, result in verdicts.items():
        assert e.decide(DENY, request(), at(moment), reserve=False).result == result, moment


def test_schedule_with_no_windows_allows_nothing() -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1", schedule=Schedule(timezone=OSLO)))
    assert e.decide(DENY, request(), NOW).result == NOT_ALLOWED


# -- concurrency limits ---------------------------------------------------------------------


def test_token_concurrency_limit() -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1", max_sessions=2))
    first = e.decide(DENY, request(), NOW)
    second = e.decide(DENY, request(), NOW)
    assert first.allowed and second.allowed
    refused = e.decide(DENY, request(), NOW)
    assert refused.result == NOT_ALLOWED
    assert "token TAG-1 has 2 active sessions (limit 2)" in said(refused)
    finish(e, first, "3")
    assert e.decide(DENY, request(), NOW).allowed


def test_group_concurrency_limit_is_shared_by_its_tokens() -> None:
    e = engine()
    e.put("group", "G1", Group(id="G1", max_sessions=2))
    for uid in ("A", "B", "C"):
        e.put("token", uid, Token(uid=uid, group_id="G1"))
    assert e.decide(DENY, request("a"), NOW).allowed
    b = e.decide(DENY, request("b"), NOW)
    assert b.allowed
    refused = e.decide(DENY, request("c"), NOW)
    assert refused.result == NOT_ALLOWED
    assert "group G1 has 2 active sessions (limit 2)" in said(refused)
    e.release("site", b)
    assert e.decide(DENY, request("c"), NOW).allowed


def test_decisions_without_reserve_do_not_count_as_sessions() -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1", max_sessions=1))
    for _ in range(3):
        assert e.decide(DENY, request(), NOW, reserve=False).allowed
    assert e.active == {}


def test_sessions_older_than_the_maximum_age_no_longer_count() -> None:
    e = engine(active_session_max_age_hours=48, session_reserve_kwh=1)
    e.put("token", "TAG-1", Token(uid="TAG-1", max_sessions=1))
    e.put("budget", "b", kwh_budget("token", "TAG-1", "1", "month"))
    e.track(active("TAG-1", reserved="1", started=NOW - timedelta(hours=47)))
    refused = e.decide(DENY, request(), NOW)
    assert refused.result == NOT_ALLOWED
    assert "token TAG-1 has 1 active sessions (limit 1)" in said(refused)
    # The same session, two hours later, is stale: its end never came.
    later = NOW + timedelta(hours=2)
    assert e.reserved(("token", "TAG-1"), later) == (0, Decimal(0))
    assert e.decide(DENY, request(), later).allowed


def test_track_is_idempotent() -> None:
    e = engine()
    e.put("token", "TAG-1", Token(uid="TAG-1", max_sessions=2))
    session = active("TAG-1", session_id="same")
    e.track(session)
    e.track(session)
    assert e.reserved(("token", "TAG-1"), NOW)[0] == 1
    assert e.decide(DENY, request(), NOW).allowed


# -- on_error: the fallback when no decision can be reached -------------------------------

OFFLINE_TOKENS = [
    Token(uid="ALWAYS", whitelist="ALWAYS"),
    Token(uid="OFFLINE", whitelist="ALLOWED_OFFLINE"),
    Token(uid="ONLINE", whitelist="ALLOWED"),
    Token(uid="NEVER", whitelist="NEVER"),
    Token(uid="BLOCKED-ALWAYS", whitelist="ALWAYS", status="blocked"),
    Token(uid="BLOCKED-OFFLINE", whitelist="ALLOWED_OFFLINE", status="blocked"),
    Token(uid="EXPIRED-ALWAYS", whitelist="ALWAYS", valid_until=NOW - HOUR),
    Token(uid="EXPIRED-OFFLINE", whitelist="ALLOWED_OFFLINE", valid_until=NOW),
    Token(uid="GROUP-BLOCKED-ALWAYS", whitelist="ALWAYS", group_id="GB"),
    Token(uid="GROUP-BLOCKED-OFFLINE", whitelist="ALLOWED_OFFLINE", group_id="GB"),
]

FALLBACK_CASES = [
    # (on_error, token, result)
    *[("deny", uid, NOT_ALLOWED) for uid in ("ALWAYS", "OFFLINE", "ONLINE", "UNSEEN")],
    *[("allow", uid, ALLOWED) for uid in ("ALWAYS", "ONLINE", "UNSEEN")],
    ("allow_known", "ALWAYS", ALLOWED),
    ("allow_known", "always", ALLOWED),
    ("allow_known", "OFFLINE", ALLOWED),
    ("allow_known", "ONLINE", NOT_ALLOWED),
    ("allow_known", "NEVER", NOT_ALLOWED),
    ("allow_known", "UNSEEN", NOT_ALLOWED),
    ("allow_known", None, NOT_ALLOWED),
    ("allow_known", "BLOCKED-ALWAYS", NOT_ALLOWED),
    ("allow_known", "BLOCKED-OFFLINE", NOT_ALLOWED),
    ("allow_known", "EXPIRED-ALWAYS", NOT_ALLOWED),
    ("allow_known", "EXPIRED-OFFLINE", NOT_ALLOWED),
    ("allow_known", "GROUP-BLOCKED-ALWAYS", NOT_ALLOWED),
    ("allow_known", "GROUP-BLOCKED-OFFLINE", NOT_ALLOWED),
]


def offline_engine() -> Engine:
    e = engine()
    e.put("group", "GB", Group(id="GB", status="blocked"))
    for token in OFFLINE_TOKENS:
        e.put("token", token.uid, token)
    return e


@pytest.mark.parametrize(("on_error", "token", "result"), FALLBACK_CASES)
def test_on_error_fallback(on_error: str, token: str | None, result: str) -> None:
    e = offline_engine()
    src = source(on_error=on_error)
    known = e.known_for_offline(request(token), NOW) if on_error == "allow_known" else None
    outcome = fallback(src, "deadline exceeded", known)
    assert outcome.result == result, (token, said(outcome))
    assert f"fallback on_error={on_error}" in said(outcome)
    assert "deadline exceeded" in said(outcome)
    if result == NOT_ALLOWED:
        assert outcome.message
    if on_error == "allow_known" and result == ALLOWED:
        assert "whitelisted for offline use" in said(outcome)


# -- the engine's inputs --------------------------------------------------------------------


def test_token_uids_are_normalised_everywhere() -> None:
    token = Token(uid="  ab-12 ")
    assert token.uid == "AB-12"
    assert kwh_budget("token", "ab-12", "1").subject_id == "AB-12"
    assert kwh_budget("group", "fleet-a", "1").subject_id == "fleet-a"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Token(uid="T", valid_from=datetime(2025, 1, 1)), "valid_from needs a UTC offset"),
        (
            lambda: Token(uid="T", valid_from=NOW, valid_until=NOW),
            "valid_until must be after valid_from",
        ),
        (lambda: ChargerRule(charger_id="C", mode="reserved"), "reserved charger needs group_id"),
        (lambda: kwh_budget("token", "T", "-1"), "limit must not be negative"),
        (
            lambda: Budget(
                id="b",
                subject="token",
                subject_id="T",
                metric="money",
                period="day",
                limit=Decimal(1),
            ),
            "money budget needs a currency",
        ),
        (lambda: Window(start="25:00"), "not a HH:MM time"),
        (lambda: Schedule(timezone="Mars/Olympus"), "unknown time zone"),
    ],
)
def test_invalid_rules_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    ("period", "zone", "moment", "start", "end"),
    [
        ("day", "UTC", "2025-06-11T15:00:00Z", "2025-06-11T00:00:00Z", "2025-06-12T00:00:00Z"),
        ("day", OSLO, "2025-06-11T23:30:00Z", "2025-06-11T22:00:00Z", "2025-06-12T22:00:00Z"),
        ("week", "UTC", "2025-06-11T15:00:00Z", "2025-06-09T00:00:00Z", "2025-06-16T00:00:00Z"),
        ("month", OSLO, "2025-03-15T12:00:00Z", "2025-02-28T23:00:00Z", "2025-03-31T22:00:00Z"),
        ("month", "UTC", "2025-12-31T23:59:59Z", "2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    ],
)
def test_period_bounds_hold_exactly_the_moments_of_the_period_key(
    period: str, zone: str, moment: str, start: str, end: str
) -> None:
    tz = ZoneInfo(zone)
    since, until = period_bounds(parse_iso(moment), period, tz)  # type: ignore[arg-type]
    assert (since, until) == (parse_iso(start), parse_iso(end))
    key = period_key(parse_iso(moment), period, tz)  # type: ignore[arg-type]
    assert period_key(since, period, tz) == key  # type: ignore[arg-type]
    assert period_key(until - timedelta(microseconds=1), period, tz) == key  # type: ignore[arg-type]
    assert period_key(until, period, tz) != key  # type: ignore[arg-type]


def test_an_approval_carries_the_limits_the_store_rechecks() -> None:
    e = engine(session_reserve_kwh=2)
    e.put("group", "FLEET", Group(id="FLEET", max_sessions=3))
    e.put("token", "TAG-1", Token(uid="TAG-1", group_id="FLEET", max_sessions=1))
    e.put("budget", "t", kwh_budget("token", "TAG-1", "10"))
    e.put("budget", "g", kwh_budget("group", "FLEET", "50", period="month"))
    e.put("budget", "m", money_budget("token", "TAG-1", "100"))
    outcome = e.decide(DENY, request(), NOW)
    assert outcome.result == ALLOWED
    energy = {(lim.subject, lim.max_kwh) for lim in outcome.limits if lim.max_kwh is not None}
    assert energy == {("token", "10"), ("group", "50")}
    assert all(lim.reserve_kwh == "2" for lim in outcome.limits if lim.max_kwh is not None)
    sessions = {(lim.subject, lim.max_sessions) for lim in outcome.limits if lim.max_sessions}
    assert sessions == {("token", 1), ("group", 3)}
    token_day = next(lim for lim in outcome.limits if lim.max_kwh == "10")
    assert token_day.since is not None and token_day.until is not None
    assert token_day.since <= NOW < token_day.until
    assert token_day.active_since == NOW - timedelta(hours=48)
    # No budget, no cap: nothing to re-check.
    e.put("token", "FREE", Token(uid="FREE"))
    assert e.decide(DENY, request(token="FREE"), NOW).limits == ()
