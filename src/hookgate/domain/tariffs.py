"""Prices of charging sessions that no provider prices (Zaptec reports energy, no money).

A tariff (`[[tariffs]]`) charges per kWh, per minute and a fee per session, with
time-of-use bands read in the site's time zone, and adds VAT; it is assigned to chargers,
to installations (a Zaptec site) or to whole sources. A reimbursement rate
(`[[reimbursements]]`) pays a driver or a vehicle per kWh for charging at home. `price()`
is the one function that turns a session into money: the export, the views and budgets
all call it, so they never disagree.

Energy is taken as delivered evenly over the session (a session's meter samples are not
read here): a session across a band boundary is split by time. Amounts are exact
decimals, rounded half-up to cents once, at the end: excl. VAT, then VAT on it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

_CENT = Decimal("0.01")
_TIME = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")
_MINUTE = Decimal(60)
Rate = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6})?$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


def _minutes(text: str) -> int:
    if not _TIME.match(text):
        raise ValueError(f"{text!r} is no time of day HH:MM (00:00 to 24:00)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class Band(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """Rates from `start` to `end` (local time, HH:MM; `end` may be 24:00, and before
    `start` to run past midnight) on `days` (1 = Monday ... 7 = Sunday). A rate left
    unset is the tariff's own."""

    start: str
    end: str
    days: list[Annotated[int, msgspec.Meta(ge=1, le=7)]] = msgspec.field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7]
    )
    per_kwh: Rate | None = None
    per_minute: Rate | None = None

    def __post_init__(self) -> None:
        if _minutes(self.start) == _minutes(self.end):
            raise ValueError(f"band {self.start}-{self.end} is empty")

    def covers(self, local: datetime) -> bool:
        """Whether the band holds the local instant `local`."""
        start, end = _minutes(self.start), _minutes(self.end)
        minute = local.hour * 60 + local.minute
        if start < end:
            return local.isoweekday() in self.days and start <= minute < end
        # Past midnight: the part after midnight belongs to the previous day's band.
        if minute >= start:
            return local.isoweekday() in self.days
        previous = (local - timedelta(days=1)).isoweekday()
        return minute < end and previous in self.days


class Tariff(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """What a session costs at the chargers or sources it is assigned to."""

    name: str
    currency: Currency
    vat_rate: Rate = "0"  # 0.25 is 25 %
    per_kwh: Rate = "0"
    per_minute: Rate = "0"
    session_fee: Rate = "0"
    timezone: str = "UTC"  # the site's time zone, where bands are read
    bands: list[Band] = []
    chargers: list[str] = []
    installations: list[str] = []
    sources: list[str] = []

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is no IANA time zone") from None


class Reimbursement(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A per-kWh rate paid to a driver or for a vehicle charging at home (`chargers`: the
    home chargers; empty: every session of theirs that no provider and no tariff prices)."""

    name: str
    currency: Currency
    per_kwh: Rate
    vat_rate: Rate = "0"
    vehicles: list[str] = []
    drivers: list[str] = []
    chargers: list[str] = []

    def __post_init__(self) -> None:
        if not self.vehicles and not self.drivers:
            raise ValueError(f"reimbursement {self.name!r} names no vehicles and no drivers")


class Rates(msgspec.Struct, kw_only=True, frozen=True):
    """The configured prices of sessions no provider prices."""

    tariffs: tuple[Tariff, ...] = ()
    reimbursements: tuple[Reimbursement, ...] = ()


NO_RATES = Rates()


class Priced(msgspec.Struct, kw_only=True, frozen=True):
    """A session's price: amounts as decimal text with two places, its parts, and what
    priced it (`tariff:<name>` or `reimbursement:<name>`)."""

    by: str
    currency: str
    amount_excl_vat: str
    vat: str
    total: str
    components: list[dict[str, str | None]]


class Session(msgspec.Struct, kw_only=True, frozen=True):
    """What pricing reads of a session (and whom it belongs to)."""

    source: str
    charger_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    energy_kwh: str | None
    installation_id: str | None = None
    vehicle: str | None = None
    driver: str | None = None


# How a session end is priced for budgets (services/sessions.py makes one from the
# configured rates): the session, and the token it was charged with, whose vehicle or
# driver a reimbursement may name.
Pricing = Callable[[Session, str | None], Priced | None]


def _plate(text: str) -> str:
    return re.sub(r"[\s-]", "", text).upper()


def choose(
    session: Session, tariffs: Sequence[Tariff], reimbursements: Sequence[Reimbursement]
) -> Tariff | Reimbursement | None:
    """The rate that prices `session`: a reimbursement of its vehicle or driver (at one of
    its home chargers, when it names them), else the tariff of its charger, else of its
    installation, else of its source; the first one configured wins a tie."""
    vehicle = _plate(session.vehicle) if session.vehicle else None
    for rate in reimbursements:
        mine = (vehicle is not None and vehicle in {_plate(v) for v in rate.vehicles}) or (
            session.driver is not None and session.driver in rate.drivers
        )
        if mine and (not rate.chargers or session.charger_id in rate.chargers):
            return rate
    for tariff in tariffs:
        if session.charger_id is not None and session.charger_id in tariff.chargers:
            return tariff
    for tariff in tariffs:
        if session.installation_id is not None and session.installation_id in tariff.installations:
            return tariff
    for tariff in tariffs:
        if session.source in tariff.sources:
            return tariff
    return None


def _segments(
    start: datetime, end: datetime, tariff: Tariff
) -> list[tuple[datetime, datetime, Band | None]]:
    """[start, end) cut where a band begins or ends, each piece with its band (None: the
    tariff's own rates). Cuts fall on the local minutes named by the bands."""
    zone = ZoneInfo(tariff.timezone)
    marks = sorted(
        {_minutes(b.start) for b in tariff.bands} | {_minutes(b.end) for b in tariff.bands}
    )
    cuts = {start, end}
    if marks:
        day = start.astimezone(zone).date() - timedelta(days=1)
        last = end.astimezone(zone).date()
        while day <= last:
            midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
            for mark in marks:
                # Aware arithmetic in one zone is wall-clock arithmetic: a band keeps its
                # local hours across DST changes.
                at = (midnight + timedelta(minutes=mark)).astimezone(UTC)
                if start < at < end:
                    cuts.add(at)
            day += timedelta(days=1)
    ordered = sorted(cuts)
    pieces = []
    for left, right in itertools.pairwise(ordered):
        local = left.astimezone(zone)
        band = next((b for b in tariff.bands if b.covers(local)), None)
        pieces.append((left, right, band))
    return pieces


def _money(value: Decimal) -> Decimal:
    return value.quantize(_CENT, ROUND_HALF_UP)


def price(
    session: Session, tariffs: Sequence[Tariff], reimbursements: Sequence[Reimbursement] = ()
) -> Priced | None:
    """The session's price under the rate `choose` finds; None when no rate applies or
    the session lacks what the rate needs (energy; start and end for time rates)."""
    rate = choose(session, tariffs, reimbursements)
    if rate is None or session.energy_kwh in (None, ""):
        return None
    try:
        energy = Decimal(str(session.energy_kwh))
    except InvalidOperation:
        return None
    if not energy.is_finite() or energy < 0:
        return None
    if isinstance(rate, Reimbursement):
        excl = _money(energy * Decimal(rate.per_kwh))
        components = [_part("energy", excl, energy, "kWh")]
        return _priced(f"reimbursement:{rate.name}", rate.currency, rate.vat_rate, excl, components)
    return _tariff_price(session, rate, energy)


def _tariff_price(session: Session, tariff: Tariff, energy: Decimal) -> Priced | None:
    start, end = session.started_at, session.ended_at
    timed = Decimal(tariff.per_minute) > 0 or any(b.per_minute for b in tariff.bands)
    if start is None or end is None or end < start:
        if timed or tariff.bands:
            return None  # time rates and bands need both ends of the session
        energy_cost = energy * Decimal(tariff.per_kwh)
        minutes = Decimal(0)
        time_cost = Decimal(0)
    else:
        seconds = Decimal((end - start).total_seconds())
        energy_cost = time_cost = Decimal(0)
        if seconds == 0:
            band = next(
                (b for b in tariff.bands if b.covers(start.astimezone(ZoneInfo(tariff.timezone)))),
                None,
            )
            energy_cost = energy * Decimal(
                band.per_kwh if band and band.per_kwh else tariff.per_kwh
            )
        for left, right, band in _segments(start, end, tariff) if seconds else ():
            share = Decimal((right - left).total_seconds())
            per_kwh = Decimal(band.per_kwh if band and band.per_kwh else tariff.per_kwh)
            per_minute = Decimal(band.per_minute if band and band.per_minute else tariff.per_minute)
            energy_cost += energy * share / seconds * per_kwh
            time_cost += share / _MINUTE * per_minute
        minutes = seconds / _MINUTE
    fee = _money(Decimal(tariff.session_fee))
    energy_cost, time_cost = _money(energy_cost), _money(time_cost)
    parts = [_part("energy", energy_cost, energy, "kWh")]
    if time_cost or timed:
        parts.append(_part("time", time_cost, minutes.quantize(_CENT), "min"))
    if fee:
        parts.append(_part("fixed", fee, None, None))
    # The parts are rounded first, so that they add up to the amount on the line.
    excl = energy_cost + time_cost + fee
    return _priced(f"tariff:{tariff.name}", tariff.currency, tariff.vat_rate, excl, parts)


def _part(
    kind: str, amount: Decimal, quantity: Decimal | None, unit: str | None
) -> dict[str, str | None]:
    return {
        "type": kind,
        "amount": str(amount),
        "quantity": None if quantity is None else format(quantity.normalize(), "f"),
        "unit": unit,
    }


def _priced(
    by: str, currency: str, vat_rate: str, excl: Decimal, parts: list[dict[str, str | None]]
) -> Priced:
    vat = _money(excl * Decimal(vat_rate))
    return Priced(
        by=by,
        currency=currency,
        amount_excl_vat=str(excl),
        vat=str(vat),
        total=str(excl + vat),
        components=parts,
    )
