"""Anomaly flags on charging sessions and parking transactions: what a fleet manager
should look at twice.

Computed by processing when a session or parking row changes (processing/projections.py),
kept in the row's `flags` beside the provider's own, shown wherever the row is (views,
API, CLI, console, export) and counted in `hookgate_anomalies_total`. The checks here read
one or two rows; the projection finds the other rows (overlaps, a parked vehicle).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

# Every anomaly flag, so callers can tell them from a provider's flags.
FUTURE = "time_in_future"
TOO_OLD = "time_implausibly_old"
ENERGY = "energy_above_max"
OVERLAP = "overlapping_session"
PARTS = "amounts_do_not_add_up"
DRIFT = "start_far_from_approved"
UNAUTHORIZED = "unmatched"  # an end no approved start matched (offline charging)
# On a parking transaction and a charging session of one vehicle whose times overlap.
PARKED = "parked_while_charging"
# In the order docs/views.md lists them (the API's `flag` filter takes these).
FLAGS = (FUTURE, TOO_OLD, ENERGY, OVERLAP, UNAUTHORIZED, PARTS, DRIFT, PARKED)
ANOMALIES = frozenset(FLAGS)
_PLATE_NOISE = re.compile(r"[\s-]")
_CENT = Decimal("0.01")
Kwh = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6})?$")]


class AnomalyRules(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """`[anomalies]`: the thresholds of the checks."""

    # A session time more than this after the moment it was received is in the future.
    future_tolerance_seconds: Annotated[int, msgspec.Meta(ge=0)] = 300
    # ... and more than this many days before it, implausibly old.
    max_age_days: Annotated[int, msgspec.Meta(ge=1)] = 400
    # Most energy one session may plausibly deliver, and per charger or token overrides.
    max_energy_kwh: Kwh = "150"
    charger_max_energy_kwh: dict[str, Kwh] = {}
    token_max_energy_kwh: dict[str, Kwh] = {}
    # How far the start an end reports may be from the start hookgate approved.
    start_drift_seconds: Annotated[int, msgspec.Meta(ge=0)] = 900


def _number(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def row_anomalies(
    row: dict[str, Any],
    received_at: datetime,
    rules: AnomalyRules,
    approved_start: datetime | None = None,
) -> set[str]:
    """The anomalies one session row shows by itself (`received_at`: when the newest
    event about it arrived; `approved_start`: when hookgate approved its start)."""
    found: set[str] = set()
    ahead = received_at + timedelta(seconds=rules.future_tolerance_seconds)
    behind = received_at - timedelta(days=rules.max_age_days)
    for column in ("started_at", "ended_at"):
        moment = row.get(column)
        if isinstance(moment, datetime):
            if moment > ahead:
                found.add(FUTURE)
            elif moment < behind:
                found.add(TOO_OLD)
    energy = _number(row.get("energy_kwh"))
    if energy is not None:
        limit = Decimal(
            rules.charger_max_energy_kwh.get(str(row.get("charger_id")))
            or rules.token_max_energy_kwh.get(str(row.get("token")))
            or rules.max_energy_kwh
        )
        if energy > limit:
            found.add(ENERGY)
    if _parts_disagree(row):
        found.add(PARTS)
    started = row.get("started_at")
    if (
        approved_start is not None
        and isinstance(started, datetime)
        and abs((started - approved_start).total_seconds()) > rules.start_drift_seconds
    ):
        found.add(DRIFT)
    return found


def _parts_disagree(row: dict[str, Any]) -> bool:
    """Cost below its part without VAT, or cost components that do not sum to either
    the cost or the cost without VAT (to the cent)."""
    cost, excl = _number(row.get("cost")), _number(row.get("cost_excl_vat"))
    if cost is not None and excl is not None and (excl > cost or excl < 0):
        return True
    parts = row.get("cost_components")
    if cost is None or not isinstance(parts, list) or not parts:
        return False
    amounts = [_number(part.get("amount")) for part in parts if isinstance(part, dict)]
    if any(amount is None for amount in amounts):
        return True
    total = sum((amount for amount in amounts if amount is not None), Decimal(0))
    return all(abs(total - known) >= _CENT for known in (cost, excl) if known is not None)


def overlaps(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Two sessions whose [start, end) intervals meet (a running one lasts until now)."""
    a0, b0 = first.get("started_at"), second.get("started_at")
    if not isinstance(a0, datetime) or not isinstance(b0, datetime):
        return False
    a1, b1 = first.get("ended_at"), second.get("ended_at")
    a_end = a1 if isinstance(a1, datetime) else datetime.max.replace(tzinfo=a0.tzinfo)
    b_end = b1 if isinstance(b1, datetime) else datetime.max.replace(tzinfo=b0.tzinfo)
    return a0 < b_end and b0 < a_end


def plate(text: str | None) -> str | None:
    """A licence plate as plates compare: without case, spaces or dashes (`ab-123` is
    `AB123`); None for no plate."""
    if not text:
        return None
    return _PLATE_NOISE.sub("", text).upper() or None


def parked_while_charging(parking: dict[str, Any], session: dict[str, Any]) -> bool:
    """A parking transaction and an ended charging session (of one vehicle) whose times
    overlap: a car cannot be parked in one place while it charges in another (a shared or
    misused token). A session without both times is not compared."""
    p0, p1 = parking.get("started_at"), parking.get("ended_at")
    s0, s1 = session.get("started_at"), session.get("ended_at")
    if not (
        isinstance(p0, datetime)
        and isinstance(p1, datetime)
        and isinstance(s0, datetime)
        and isinstance(s1, datetime)
    ):
        return False
    return p0 < s1 and s0 < p1
