"""What an operator can express: tokens, groups, charger rules, budgets, schedules.

The vocabulary is OCPI 2.2.1's (AllowedType, WhitelistType, group tokens), so the same
engine can later answer OCPI or OCPP peers. `AuthEntity` and friends are the stored form
of these rules and of the change log decision engines follow.
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Whitelist = Literal["ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"]
TokenType = Literal["RFID", "APP_USER", "AD_HOC_USER", "OTHER"]
Period = Literal["day", "week", "month"]
Metric = Literal["kwh", "money"]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
Uid = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[\x20-\x7e]+$")]


def normalise_uid(uid: str) -> str:
    """Token uids are case-insensitive printable ASCII: compare them upper-cased and trimmed."""
    return uid.strip().upper()


def check_zone(name: str) -> None:
    """ValueError unless `name` is an IANA time zone known here."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _hhmm(text: str) -> time:
    try:
        hours, minutes = text.split(":")
        if text == "24:00":
            return time.max
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{text!r} is not a HH:MM time") from None


class Window(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Allowed from `start` to `end` (local time) on `days`; `end` before `start` runs past
    midnight into the next day."""

    days: list[Weekday] = msgspec.field(default_factory=lambda: list(WEEKDAYS))
    start: str = "00:00"
    end: str = "24:00"

    def __post_init__(self) -> None:
        _hhmm(self.start)
        _hhmm(self.end)

    def allows(self, local: datetime) -> bool:
        """True when the local wall-clock moment falls inside this window."""
        start, end, now = _hhmm(self.start), _hhmm(self.end), local.time()
        day = WEEKDAYS[local.weekday()]
        if start <= end:
            return day in self.days and start <= now < end
        yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
        return (day in self.days and now >= start) or (yesterday in self.days and now < end)


class Schedule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Allowed weekdays and time windows in a named (IANA) time zone, DST-correct."""

    timezone: str = "UTC"
    windows: list[Window] = []

    def __post_init__(self) -> None:
        check_zone(self.timezone)

    def allows(self, moment: datetime) -> bool:
        """True when `moment` (aware) is inside any window, read in the schedule's zone."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return any(window.allows(local) for window in self.windows)


class Scope(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Where a token or group may charge: empty lists mean everywhere."""

    sources: list[str] = []
    installations: list[str] = []
    chargers: list[str] = []

    def refuses(self, source: str, installation: str | None, charger: str | None) -> str | None:
        """Why this scope excludes the place, or None."""
        if self.sources and source not in self.sources:
            return f"source {source} is outside the allowed sources"
        if self.installations and installation not in self.installations:
            return f"installation {installation} is outside the allowed installations"
        if self.chargers and charger not in self.chargers:
            return f"charger {charger} is outside the allowed chargers"
        return None


class Token(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A charge token (RFID tag, app user, ...). `uid` is stored normalised."""

    uid: Uid
    type: TokenType = "RFID"
    label: str | None = None
    group_id: Ident | None = None
    status: Literal["valid", "blocked"] = "valid"
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    whitelist: Whitelist = "ALLOWED"
    driver: str | None = None
    vehicle: str | None = None
    cost_centre: str | None = None
    # The company that pays for the token's sessions (monthly reconciliation).
    legal_entity: str | None = None
    scope: Scope = Scope()
    schedule: Schedule | None = None
    max_sessions: Annotated[int, msgspec.Meta(ge=0)] | None = None
    managed_by: Literal["api", "config"] = "api"

    def __post_init__(self) -> None:
        self.uid = normalise_uid(self.uid)
        if not self.uid:
            raise ValueError("uid must not be blank")
        for name in ("valid_from", "valid_until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a UTC offset")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")


class Group(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Tokens that share one identity, budget and concurrency limit (OCPP parentIdTag)."""

    id: Ident
    label: str | None = None
    status: Literal["valid", "blocked"] = "valid"
    scope: Scope = Scope()
    schedule: Schedule | None = None
    max_sessions: Annotated[int, msgspec.Meta(ge=0)] | None = None
    managed_by: Literal["api", "config"] = "api"


class ChargerRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`open`: anyone may charge here (unknown tokens too; blocked or expired ones never).
    `reserved`: only tokens of `group_id` may charge here."""

    charger_id: Ident
    mode: Literal["open", "reserved"]
    group_id: Ident | None = None
    managed_by: Literal["api", "config"] = "api"

    def __post_init__(self) -> None:
        if self.mode == "reserved" and not self.group_id:
            raise ValueError("a reserved charger needs group_id")


class Budget(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An energy (kWh) or money limit per day, week (ISO, Monday) or month."""

    id: Ident
    subject: Literal["token", "group"]
    subject_id: str
    metric: Metric = "kwh"
    period: Period
    limit: Decimal
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] | None = None
    managed_by: Literal["api", "config"] = "api"

    def __post_init__(self) -> None:
        if self.subject == "token":
            self.subject_id = normalise_uid(self.subject_id)
        if self.limit < 0:
            raise ValueError("limit must not be negative")
        if self.metric == "money" and not self.currency:
            raise ValueError("a money budget needs a currency")


def budget_id(subject: str, subject_id: str, metric: str, period: str) -> str:
    """The id of the one budget a subject has per metric and period (used by CSV import)."""
    owner = normalise_uid(subject_id) if subject == "token" else subject_id
    return f"{subject}-{owner}-{metric}-{period}"[:64]


class AuthEntity(msgspec.Struct, kw_only=True):
    """A rule entity (token, group, charger rule, budget) as stored: a JSON document."""

    kind: str
    key: str
    doc: bytes
    managed_by: str = "api"


class AuthChange(msgspec.Struct, kw_only=True):
    """One entry of the change log with the changed row as it is now (None: deleted/gone).

    For `token`/`group`/`charger`/`budget` the row is {"doc": bytes}; for `session` an
    authorized_sessions row; for `consumption` a consumption row.
    """

    seq: int
    kind: str
    key: str
    row: dict[str, Any] | None


class AuthSnapshot(msgspec.Struct, kw_only=True):
    """Everything the decision engine loads at start, and the change-log position."""

    seq: int
    entities: list[AuthEntity]
    sessions: list[dict[str, Any]]
    consumption: list[dict[str, Any]]
