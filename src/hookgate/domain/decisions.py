"""Charging decisions and what bounds them: the decision audit record, the limits an
approval must respect, session ends and reported consumption, and the rules those limits
apply (written once, used by the decision engine and by the store's re-check)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec

from hookgate.domain.errors import LimitReached
from hookgate.domain.events import IsoInstant


class Decision(msgspec.Struct, kw_only=True):
    """The answer to a Zaptec session start, with what led to it."""

    id: str
    decided_at: datetime
    source: str
    event_id: str | None
    charger_id: str | None
    token: str | None
    user_id: str | None
    installation_id: str | None
    result: str
    reasons: list[str]
    session_id: str | None
    fallback: bool = False
    latency_us: int = 0
    group_id: str | None = None
    reserved_kwh: str = "0"


class DecisionRecord(msgspec.Struct, kw_only=True):
    """A session-start decision with its reasons, as the audit listing reads it."""

    id: str
    decided_at: IsoInstant
    source: str
    event_id: str | None
    charger_id: str | None
    token: str | None
    user_id: str | None
    installation_id: str | None
    result: str
    reasons: list[str]
    session_id: str | None
    fallback: bool
    latency_us: int


class AuthorizedSession(msgspec.Struct, kw_only=True):
    """A session the engine approved (or an end no start matched, `unmatched`), as the
    store tracks it for limits: `status` is active, ended, void or unmatched;
    `reserved_kwh` is what it holds of its budgets while active (decimal text)."""

    session_id: str
    source: str
    status: str
    charger_id: str | None
    token: str | None
    decision_id: str | None
    started_at: IsoInstant | None
    ended_at: IsoInstant | None
    energy_kwh: str | None
    start_event_id: str | None
    end_event_id: str | None
    group_id: str | None
    reserved_kwh: str | None


class Limit(msgspec.Struct, frozen=True, kw_only=True):
    """A limit an approval must respect, re-checked by the store inside the transaction
    that records the session (other instances may have approved against it meanwhile).

    Energy: consumption in [since, until) plus the reservations of active sessions plus
    `reserve_kwh` must stay within `max_kwh` (and usage alone below it). Sessions: fewer
    than `max_sessions` active. Active sessions started before `active_since` are stale
    and not counted.
    """

    subject: Literal["token", "group"]
    subject_id: str
    active_since: datetime
    max_kwh: str | None = None
    reserve_kwh: str = "0"
    since: datetime | None = None
    until: datetime | None = None
    max_sessions: int | None = None


class SessionEnd(msgspec.Struct, kw_only=True):
    """A Zaptec session end, matched against the sessions hookgate approved."""

    # Ids in the end call that may be the sessionId hookgate issued, most likely first.
    session_ids: list[str]
    ended_at: datetime | None
    energy_kwh: str | None
    # The charge token in the end call and its group: accounted when no start matches.
    token: str | None = None
    group_id: str | None = None
    # Where and since when, as the end call says (pricing prefers them to the start's).
    charger_id: str | None = None
    installation_id: str | None = None
    started_at: datetime | None = None
    # What the end says the session cost (an OCPI CDR's total, incl. VAT where given);
    # None: the configured tariffs price it for the money budgets.
    money: str | None = None
    currency: str | None = None


class ConsumptionReport(msgspec.Struct, kw_only=True):
    """Energy (and money) a provider reports for one session; a later, larger report of
    the same session replaces an earlier one."""

    session_key: str
    origin: str
    token: str | None
    group_id: str | None = None
    kwh: str
    money: str | None = None
    currency: str | None = None
    occurred_at: datetime


def energy_exhausted(used: Decimal, held: Decimal, reserve: Decimal, cap: Decimal) -> bool:
    """The energy rule: a new session may start only when its reserve still fits beside
    what was used and what active sessions hold, and usage alone has not reached the cap."""
    return used + held + reserve > cap or used + held >= cap


def sessions_full(active: int, cap: int) -> bool:
    """The session rule: `cap` active sessions leave no room for another."""
    return active >= cap


def check_sessions(limit: Limit, active: int) -> None:
    """Raise LimitReached when `active` committed sessions leave no room under `limit`."""
    if limit.max_sessions is not None and sessions_full(active, limit.max_sessions):
        raise LimitReached(
            f"{limit.subject} {limit.subject_id} has {active} active sessions "
            f"(limit {limit.max_sessions})"
        )


def check_energy(limit: Limit, used: Decimal, held: Decimal) -> None:
    """The energy rule applied to what the database holds: raise LimitReached when the
    reserve no longer fits (or usage alone has reached the cap)."""
    assert limit.max_kwh is not None
    cap = Decimal(limit.max_kwh)
    if energy_exhausted(used, held, Decimal(limit.reserve_kwh), cap):
        raise LimitReached(
            f"{limit.subject} {limit.subject_id} energy budget: {used} kWh used + "
            f"{held} kWh reserved of {cap} kWh"
        )
