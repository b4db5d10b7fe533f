"""The charging decision engine: indexed rules and counters in memory, kept in step with
the store through its change log.

`decide` is synchronous and does no I/O: checking a budget and reserving from it happen
without a suspension point, so two concurrent starts in one process can never both take
the last kWh. The reservation lives with the active session until its end replaces it
with the energy actually charged.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from hookgate.authorization.outcome import (
    ALLOWED,
    BLOCKED,
    EXPIRED,
    NO_CREDIT,
    NOT_ALLOWED,
    UNKNOWN,
    Outcome,
)
from hookgate.config import AuthorizationConfig, ZaptecSource
from hookgate.domain.decisions import Limit, energy_exhausted, sessions_full
from hookgate.domain.rules import Budget, ChargerRule, Group, Period, Token, normalise_uid
from hookgate.providers.base import StartRequest

ZERO = Decimal(0)
PERIODS: tuple[Period, ...] = ("day", "week", "month")
Subject = tuple[str, str]  # ("token", uid) or ("group", id)


@dataclass(slots=True)
class ActiveSession:
    """A session hookgate approved that has not ended yet."""

    source: str
    session_id: str
    token: str | None
    group_id: str | None
    reserved_kwh: Decimal
    started_at: datetime


@dataclass(slots=True)
class Consumption:
    """Energy (and money, when the provider reports it) charged in one session."""

    id: str
    token: str | None
    group_id: str | None
    kwh: Decimal
    money: Decimal | None
    currency: str | None
    occurred_at: datetime


def period_key(moment: datetime, period: Period, zone: ZoneInfo) -> str:
    """The calendar bucket of `moment` in `zone`: a day, an ISO week or a month."""
    local = moment.astimezone(zone)
    if period == "day":
        return local.date().isoformat()
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{local.year}-{local.month:02d}"


def period_bounds(moment: datetime, period: Period, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC start and end of the calendar bucket that holds `moment` (see period_key)."""
    local = moment.astimezone(zone).date()
    if period == "day":
        start, end = local, local + timedelta(days=1)
    elif period == "week":
        start = local - timedelta(days=local.weekday())
        end = start + timedelta(days=7)
    else:
        start = local.replace(day=1)
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (
        datetime.combine(start, time(0), zone).astimezone(UTC),
        datetime.combine(end, time(0), zone).astimezone(UTC),
    )


def window_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """The earliest moment any current day/week/month bucket can start (for loading)."""
    local = moment.astimezone(zone)
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    week = (local - timedelta(days=local.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return min(month, week) - timedelta(days=1)


class Engine:
    """Decides session starts from tokens, groups, charger rules, schedules and budgets."""

    def __init__(self, settings: AuthorizationConfig) -> None:
        self.settings = settings
        self.zone = ZoneInfo(settings.timezone)
        self.reserve = Decimal(str(settings.session_reserve_kwh))
        self.max_age = timedelta(hours=settings.active_session_max_age_hours)
        self.seq = 0
        self.tokens: dict[str, Token] = {}
        self.groups: dict[str, Group] = {}
        self.chargers: dict[str, ChargerRule] = {}
        self.budgets: dict[str, Budget] = {}
        self._budgets_of: dict[Subject, list[Budget]] = defaultdict(list)
        self.active: dict[tuple[str, str], ActiveSession] = {}
        self._active_by: dict[Subject, dict[tuple[str, str], ActiveSession]] = defaultdict(dict)
        self._consumption: dict[str, Consumption] = {}
        self._usage: dict[tuple[str, str, str, str, str], Decimal] = defaultdict(Decimal)

    # -- state -------------------------------------------------------------------------

    def put(self, kind: str, key: str, value: Any | None) -> None:
        """Insert, replace (value) or remove (None) one rule entity."""
        tables: dict[str, dict[str, Any]] = {
            "token": self.tokens,
            "group": self.groups,
            "charger": self.chargers,
            "budget": self.budgets,
        }
        table = tables[kind]
        if kind == "budget":
            old = self.budgets.get(key)
            if old is not None:
                self._budgets_of[(old.subject, old.subject_id)].remove(old)
            if value is not None:
                self._budgets_of[(value.subject, value.subject_id)].append(value)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    def track(self, session: ActiveSession) -> None:
        """Count an active session (idempotent)."""
        key = (session.source, session.session_id)
        self.untrack(*key)
        self.active[key] = session
        for subject in self._subjects(session.token, session.group_id):
            self._active_by[subject][key] = session

    def untrack(self, source: str, session_id: str) -> None:
        """Forget an active session (ended, voided, or never recorded)."""
        session = self.active.pop((source, session_id), None)
        if session is not None:
            for subject in self._subjects(session.token, session.group_id):
                self._active_by[subject].pop((source, session_id), None)

    def consume(self, row: Consumption) -> None:
        """Add a consumption row to the counters; a newer version of the row replaces it."""
        old = self._consumption.get(row.id)
        if old is not None:
            self._count(old, -1)
        self._consumption[row.id] = row
        self._count(row, 1)

    def _count(self, row: Consumption, sign: int) -> None:
        for subject in self._subjects(row.token, row.group_id):
            for period in PERIODS:
                key = period_key(row.occurred_at, period, self.zone)
                self._usage[(*subject, "kwh", period, key)] += sign * row.kwh
                if row.money is not None and row.currency:
                    metric = f"money:{row.currency}"
                    self._usage[(*subject, metric, period, key)] += sign * row.money

    @staticmethod
    def _subjects(token: str | None, group_id: str | None) -> list[Subject]:
        out: list[Subject] = []
        if token:
            out.append(("token", token))
        if group_id:
            out.append(("group", group_id))
        return out

    def group_of(self, token: str | None) -> str | None:
        """The group a token belongs to, if it is known."""
        known = self.tokens.get(normalise_uid(token)) if token else None
        return known.group_id if known else None

    # -- reading counters --------------------------------------------------------------

    def used(self, subject: Subject, budget: Budget, now: datetime) -> Decimal:
        """Consumed in the budget's current period."""
        metric = "kwh" if budget.metric == "kwh" else f"money:{budget.currency}"
        return self._usage.get(
            (*subject, metric, budget.period, period_key(now, budget.period, self.zone)), ZERO
        )

    def reserved(self, subject: Subject, now: datetime) -> tuple[int, Decimal]:
        """Active sessions of a subject (younger than the maximum age) and the kWh they
        hold in reserve."""
        cutoff = now - self.max_age
        count, kwh = 0, ZERO
        for session in self._active_by.get(subject, {}).values():
            if session.started_at >= cutoff:
                count += 1
                kwh += session.reserved_kwh
        return count, kwh

    # -- deciding ----------------------------------------------------------------------

    def decide(
        self, source: ZaptecSource, request: StartRequest, now: datetime, *, reserve: bool = True
    ) -> Outcome:
        """The decision for one start. With `reserve`, an ALLOWED outcome holds its
        reservation (as an active session) until `release` or the session's end."""
        uid = normalise_uid(request.token) if request.token else None
        token = self.tokens.get(uid) if uid else None
        rule = self.chargers.get(request.charger_id or "")
        if token is None:
            return self._unknown(source, request, uid, rule, now, reserve)
        group = self.groups.get(token.group_id) if token.group_id else None
        verdict = self._check(source, request, token, group, rule, now)
        if verdict is not None:
            return verdict
        return self._allow(
            source,
            token.uid,
            token.group_id,
            [f"token {token.uid} is valid", *self._budget_notes(token, now)],
            now,
            reserve,
        )

    def _unknown(
        self,
        source: ZaptecSource,
        request: StartRequest,
        uid: str | None,
        rule: ChargerRule | None,
        now: datetime,
        reserve: bool,
    ) -> Outcome:
        shown = uid or "(none)"
        if rule is not None and rule.mode == "open":
            reason = f"token {shown} is unknown; charger {rule.charger_id} is open to anyone"
            return self._allow(source, uid, None, [reason], now, reserve)
        if rule is not None and rule.mode == "reserved":
            return Outcome(
                NOT_ALLOWED,
                [
                    f"token {shown} is unknown; charger {rule.charger_id} is reserved to group "
                    f"{rule.group_id}"
                ],
                "This charger is reserved.",
            )
        if source.unknown_token == "allow":
            reason = f"token {shown} is unknown; source policy unknown_token=allow"
            return self._allow(source, uid, None, [reason], now, reserve)
        return Outcome(
            UNKNOWN,
            [f"token {shown} is unknown; source policy unknown_token=deny"],
            "This charge token is not known to the operator.",
        )

    def _check(
        self,
        source: ZaptecSource,
        request: StartRequest,
        token: Token,
        group: Group | None,
        rule: ChargerRule | None,
        now: datetime,
    ) -> Outcome | None:
        """The first refusal that applies, in order of severity, or None."""
        if token.status == "blocked":
            return Outcome(
                BLOCKED, [f"token {token.uid} is blocked"], "This charge token is blocked."
            )
        if group is not None and group.status == "blocked":
            return Outcome(
                BLOCKED,
                [f"group {group.id} of token {token.uid} is blocked"],
                "This charge token is blocked.",
            )
        if token.valid_until is not None and now >= token.valid_until:
            return Outcome(
                EXPIRED,
                [f"token {token.uid} expired at {token.valid_until.isoformat()}"],
                "This charge token has expired.",
            )
        if token.valid_from is not None and now < token.valid_from:
            return Outcome(
                NOT_ALLOWED,
                [f"token {token.uid} is valid from {token.valid_from.isoformat()}"],
                "This charge token is not valid yet.",
            )
        place = (source.name, request.installation_id, request.charger_id)
        for owner, scope in ((f"token {token.uid}", token.scope),) + (
            ((f"group {group.id}", group.scope),) if group else ()
        ):
            refused = scope.refuses(*place)
            if refused:
                return Outcome(
                    NOT_ALLOWED, [f"{owner}: {refused}"], "Charging is not allowed here."
                )
        if rule is not None and rule.mode == "reserved" and token.group_id != rule.group_id:
            return Outcome(
                NOT_ALLOWED,
                [f"charger {rule.charger_id} is reserved to group {rule.group_id}"],
                "This charger is reserved.",
            )
        for owner, schedule in ((f"token {token.uid}", token.schedule),) + (
            ((f"group {group.id}", group.schedule),) if group else ()
        ):
            if schedule is not None and not schedule.allows(now):
                local = now.astimezone(ZoneInfo(schedule.timezone))
                return Outcome(
                    NOT_ALLOWED,
                    [f"{owner}: {local:%a %H:%M} {schedule.timezone} is outside its schedule"],
                    "Charging is not allowed at this time.",
                )
        for subject, limit in ((("token", token.uid), token.max_sessions),) + (
            ((("group", group.id), group.max_sessions),) if group else ()
        ):
            if limit is not None:
                count, _ = self.reserved(subject, now)
                if sessions_full(count, limit):
                    return Outcome(
                        NOT_ALLOWED,
                        [f"{subject[0]} {subject[1]} has {count} active sessions (limit {limit})"],
                        "Too many sessions are active for this charge token.",
                    )
        return self._credit(token, now)

    def _credit(self, token: Token, now: datetime) -> Outcome | None:
        for subject in self._subjects(token.uid, token.group_id):
            for budget in self._budgets_of.get(subject, ()):
                used = self.used(subject, budget, now)
                if budget.metric == "kwh":
                    _, held = self.reserved(subject, now)
                    if energy_exhausted(used, held, self.reserve, budget.limit):
                        return Outcome(
                            NO_CREDIT,
                            [
                                f"{subject[0]} {subject[1]} {budget.period} energy budget: "
                                f"{used} kWh used + {held} kWh reserved of {budget.limit} kWh"
                            ],
                            "The energy budget of this charge token is used up.",
                        )
                elif used >= budget.limit:
                    return Outcome(
                        NO_CREDIT,
                        [
                            f"{subject[0]} {subject[1]} {budget.period} money budget: "
                            f"{used} of {budget.limit} {budget.currency} spent"
                        ],
                        "The budget of this charge token is used up.",
                    )
        return None

    def _budget_notes(self, token: Token, now: datetime) -> list[str]:
        notes = []
        for subject in self._subjects(token.uid, token.group_id):
            for budget in self._budgets_of.get(subject, ()):
                unit = "kWh" if budget.metric == "kwh" else budget.currency
                notes.append(
                    f"{subject[0]} {subject[1]} {budget.period} budget "
                    f"{self.used(subject, budget, now)}/{budget.limit} {unit}"
                )
        return notes

    def _allow(
        self,
        source: ZaptecSource,
        token: str | None,
        group_id: str | None,
        reasons: list[str],
        now: datetime,
        reserve: bool,
    ) -> Outcome:
        session_id = str(uuid.uuid4())
        held = self.reserve if token and self._has_energy_budget(token, group_id) else ZERO
        limits = self._limits(token, group_id, now)
        outcome = Outcome(ALLOWED, reasons, "", session_id, token, group_id, held, limits)
        if reserve:
            self.track(ActiveSession(source.name, session_id, token, group_id, held, now))
        return outcome

    def _limits(self, token: str | None, group_id: str | None, now: datetime) -> tuple[Limit, ...]:
        """The energy budgets and session caps this approval relies on, for the store to
        re-check against sessions other instances approved since this one last looked."""
        active_since = now - self.max_age
        limits: list[Limit] = []
        for subject in self._subjects(token, group_id):
            kind: Literal["token", "group"] = "token" if subject[0] == "token" else "group"
            for budget in self._budgets_of.get(subject, ()):
                if budget.metric == "kwh":
                    since, until = period_bounds(now, budget.period, self.zone)
                    limits.append(
                        Limit(
                            subject=kind,
                            subject_id=subject[1],
                            active_since=active_since,
                            max_kwh=str(budget.limit),
                            reserve_kwh=str(self.reserve),
                            since=since,
                            until=until,
                        )
                    )
            owner = self.tokens.get(subject[1]) if kind == "token" else self.groups.get(subject[1])
            if owner is not None and owner.max_sessions is not None:
                limits.append(
                    Limit(
                        subject=kind,
                        subject_id=subject[1],
                        active_since=active_since,
                        max_sessions=owner.max_sessions,
                    )
                )
        return tuple(limits)

    def _has_energy_budget(self, token: str, group_id: str | None) -> bool:
        return any(
            b.metric == "kwh"
            for subject in self._subjects(token, group_id)
            for b in self._budgets_of.get(subject, ())
        )

    def release(self, source: str, outcome: Outcome) -> None:
        """Give back what an ALLOWED outcome holds when it was not recorded."""
        if outcome.session_id is not None:
            self.untrack(source, outcome.session_id)

    def known_for_offline(self, request: StartRequest, now: datetime) -> Token | None:
        """A token that may charge when hookgate cannot decide (`on_error = allow_known`):
        whitelist ALWAYS or ALLOWED_OFFLINE, valid now, and neither it nor its group blocked."""
        token = self.tokens.get(normalise_uid(request.token)) if request.token else None
        if token is None or token.whitelist not in ("ALWAYS", "ALLOWED_OFFLINE"):
            return None
        group = self.groups.get(token.group_id) if token.group_id else None
        if token.status == "blocked" or (group is not None and group.status == "blocked"):
            return None
        if token.valid_until is not None and now >= token.valid_until:
            return None
        if token.valid_from is not None and now < token.valid_from:
            return None
        return token
