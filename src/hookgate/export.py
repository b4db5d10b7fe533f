"""Fleet cost report: what each vehicle cost in one month, from the domain views.

One line per parking transaction and per charging session that ended in the month (read
in the `[authorization] timezone`), with the vehicle (licence plate, or the charge token's
vehicle), driver and cost centre from the token entities, and amounts as decimal text
with two places. An amount the provider did not report stays empty, never 0: a total
built from guesses would be wrong in the books. Totals are per vehicle and currency.

A stored amount that is no amount (out of `hookgate.domain.money`'s range, not a number; only an
older version could have stored one) is left empty like an unknown one, and the line's
`note` says which and why, so one bad row never takes the whole month's report down.

Every CSV cell that a spreadsheet would read as a formula (OWASP "CSV injection": it starts
with `=`, `+`, `-`, `@`, a tab, a carriage return or a line feed) is prefixed with `'`;
amounts and counts, which hookgate itself writes as plain numbers, stay numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from hookgate.domain.anomalies import ANOMALIES, plate
from hookgate.domain.money import amount_problem
from hookgate.domain.queries import ViewFilter
from hookgate.domain.rules import normalise_uid
from hookgate.domain.tariffs import NO_RATES, Rates, price
from hookgate.domain.tariffs import Session as PricedSession
from hookgate.store.base import Store
from hookgate.timeutil import parse_iso

LINE_COLUMNS = (
    "kind",
    "id",
    "date",
    "vehicle",
    "token",
    "driver",
    "cost_centre",
    "description",
    "amount_excl_vat",
    "vat",
    "total",
    "currency",
    "note",
    "flags",
)
TOTAL_COLUMNS = ("vehicle", "currency", "lines", "amount_excl_vat", "vat", "total", "incomplete")

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_CENT = Decimal("0.01")
_SCAN = 500
# Columns whose cells hookgate writes as plain decimal or integer text.
_NUMERIC = frozenset({"amount_excl_vat", "vat", "total", "lines", "incomplete"})
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
# OWASP's formula triggers, and their full-width forms, which some spreadsheets also read.
_FORMULA_START = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


class ExportLine(msgspec.Struct, kw_only=True):
    """One parking transaction or charging session."""

    kind: str  # parking | charging
    id: str
    date: str  # local date the transaction or session ended
    vehicle: str | None
    token: str | None
    driver: str | None
    cost_centre: str | None
    description: str
    amount_excl_vat: str | None
    vat: str | None
    total: str | None
    currency: str | None
    # Why an amount is empty although the provider reported one (a stored value that is
    # no amount); None for an ordinary line.
    note: str | None = None
    # What a charging cost is made of, from the provider's billing record (CDR):
    # [{"type", "amount", "quantity", "unit"}]; None when no record said.
    components: list[dict[str, Any]] | None = None
    # `tariff:<name>` or `reimbursement:<name>` when hookgate priced a session that no
    # provider priced ([[tariffs]], [[reimbursements]]); None for a provider's amount.
    priced_by: str | None = None
    # Anomaly flags processing stored on the session or parking transaction
    # (docs/views.md#anomaly-flags).
    flags: list[str] = []


class VehicleTotal(msgspec.Struct, kw_only=True):
    """Sums of one vehicle's lines in one currency. `vehicle` falls back to the token
    when no vehicle is known; `incomplete` counts lines missing an amount."""

    vehicle: str
    currency: str
    lines: int
    amount_excl_vat: str | None
    vat: str | None
    total: str | None
    incomplete: int


class FleetReport(msgspec.Struct, kw_only=True):
    """The month, its zone, the lines (by end time) and the totals (by vehicle)."""

    month: str
    timezone: str
    lines: list[ExportLine]
    totals: list[VehicleTotal]


def month_bounds(month: str, timezone: str) -> tuple[datetime, datetime]:
    """The UTC instants where `YYYY-MM` starts and ends in `timezone`; ValueError otherwise."""
    match = _MONTH.match(month)
    if match is None:
        raise ValueError("month must be YYYY-MM")
    year, number = int(match.group(1)), int(match.group(2))
    zone = ZoneInfo(timezone)
    start = datetime(year, number, 1, tzinfo=zone)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


class _Amounts:
    """Reads a row's stored amounts, noting each one that is no usable amount."""

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.row = row
        self.notes: list[str] = []

    def __call__(self, column: str) -> Decimal | None:
        value = self.row.get(column)
        if value is None or value == "":
            return None
        text = str(value)
        try:
            number = Decimal(text)
        except InvalidOperation:
            self.notes.append(f"{column} {_shown(text)!r} is not a number")
            return None
        problem = amount_problem(number)
        if problem is not None:
            self.notes.append(f"{column}: {problem}")
            return None
        return number

    def note(self) -> str | None:
        return "; ".join(self.notes) + " (left out of the totals)" if self.notes else None


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(_CENT, ROUND_HALF_UP))


def _instant(value: Any) -> datetime:
    return value.astimezone(UTC) if isinstance(value, datetime) else parse_iso(str(value))


class _Tokens:
    """Token entities by uid and by the plate of their vehicle."""

    def __init__(self, docs: Iterable[Mapping[str, Any]]) -> None:
        self.by_uid: dict[str, Mapping[str, Any]] = {}
        self.by_plate: dict[str, Mapping[str, Any]] = {}
        for doc in docs:
            uid = str(doc.get("uid", ""))
            self.by_uid[uid] = doc
            vehicle = plate(str(doc.get("vehicle") or ""))
            if vehicle:
                self.by_plate.setdefault(vehicle, doc)


async def _token_docs(store: Store) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        batch = await store.auth_list("token", after, _SCAN)
        docs.extend(msgspec.json.decode(entity.doc) for entity in batch)
        if len(batch) < _SCAN:
            return docs
        after = batch[-1].key


def _parking_line(row: Mapping[str, Any], tokens: _Tokens, zone: ZoneInfo) -> ExportLine:
    has_fee = row.get("fee") not in (None, "")
    read = _Amounts(row)

    def amount(price_part: str, fee_part: str) -> Decimal | None:
        """Price plus fee (when there is one); unknown when either part is."""
        base = read(price_part)
        extra = read(fee_part) if has_fee else None
        if base is None or not has_fee:
            return base
        return None if extra is None else base + extra

    number = str(row.get("license_number") or "")
    key = plate(number)
    owner = tokens.by_plate.get(key) if key else None
    where = " / ".join(str(v) for v in (row.get("area_name"), row.get("operator_name")) if v)
    return ExportLine(
        kind="parking",
        id=str(row["id"]),
        date=_instant(row["ended_at"]).astimezone(zone).date().isoformat(),
        vehicle=number or None,
        token=str(owner["uid"]) if owner else None,
        driver=owner.get("driver") if owner else None,
        cost_centre=owner.get("cost_centre") if owner else None,
        description=f"Parking {where}".strip(),
        amount_excl_vat=_money(amount("price_excl_vat", "fee_excl_vat")),
        vat=_money(amount("price_vat", "fee_vat")),
        total=_money(amount("price", "fee")),
        currency=row.get("currency") or None,
        note=read.note(),
        flags=sorted(set(row.get("flags") or ()) & ANOMALIES),
    )


def _charging_line(
    row: Mapping[str, Any], tokens: _Tokens, zone: ZoneInfo, rates: Rates = NO_RATES
) -> ExportLine:
    token = normalise_uid(str(row["token"])) if row.get("token") else None
    owner = tokens.by_uid.get(token) if token else None
    read = _Amounts(row)
    total = read("cost")
    excl = read("cost_excl_vat")
    vat = total - excl if total is not None and excl is not None else None
    currency = row.get("currency") or None
    components = row.get("cost_components") or None
    priced = None
    if total is None and row.get("cost") in (None, "") and rates.tariffs + rates.reimbursements:
        priced = price(
            PricedSession(
                source=str(row["source"]),
                charger_id=row.get("charger_id"),
                installation_id=row.get("installation_id"),
                started_at=_instant(row["started_at"]) if row.get("started_at") else None,
                ended_at=_instant(row["ended_at"]) if row.get("ended_at") else None,
                energy_kwh=row.get("energy_kwh"),
                vehicle=owner.get("vehicle") if owner else None,
                driver=owner.get("driver") if owner else None,
            ),
            rates.tariffs,
            rates.reimbursements,
        )
    if priced is not None:
        excl, vat, total = (
            Decimal(priced.amount_excl_vat),
            Decimal(priced.vat),
            Decimal(priced.total),
        )
        currency, components = priced.currency, list(priced.components)
    parts = ["Charging"]
    if row.get("energy_kwh"):
        parts.append(f"{row['energy_kwh']} kWh")
    if row.get("charger_id"):
        parts.append(f"at {row['charger_id']}")
    if components:
        parts.append("(" + ", ".join(_component(part) for part in components) + ")")
    return ExportLine(
        kind="charging",
        id=str(row["id"]),
        date=_instant(row["ended_at"]).astimezone(zone).date().isoformat(),
        vehicle=owner.get("vehicle") if owner else None,
        token=token,
        driver=owner.get("driver") if owner else None,
        cost_centre=owner.get("cost_centre") if owner else None,
        description=" ".join(parts),
        amount_excl_vat=_money(excl),
        vat=_money(vat),
        total=_money(total),
        currency=currency,
        note=read.note(),
        components=components,
        priced_by=priced.by if priced else None,
        flags=sorted(set(row.get("flags") or ()) & ANOMALIES),
    )


def _component(part: Mapping[str, Any]) -> str:
    """`energy 6.45 for 21.5 kWh`: one cost component, as a line's description shows it."""
    text = f"{part.get('type')} {part.get('amount')}"
    if part.get("quantity") is not None and part.get("unit"):
        text += f" for {part['quantity']} {part['unit']}"
    return text


class _Sum:
    """Running sums of one vehicle and currency; an amount no line knew stays unknown."""

    def __init__(self) -> None:
        self.lines = 0
        self.incomplete = 0
        self.amounts: list[Decimal | None] = [None, None, None]

    def add(self, line: ExportLine) -> None:
        self.lines += 1
        values = (line.amount_excl_vat, line.vat, line.total)
        self.incomplete += any(value is None for value in values)
        for index, value in enumerate(values):
            if value is not None:
                self.amounts[index] = (self.amounts[index] or Decimal(0)) + Decimal(value)


def _totals(lines: list[ExportLine]) -> list[VehicleTotal]:
    sums: dict[tuple[str, str], _Sum] = {}
    for line in lines:
        vehicle = line.vehicle or (f"token:{line.token}" if line.token else "")
        sums.setdefault((vehicle, line.currency or ""), _Sum()).add(line)
    return [
        VehicleTotal(
            vehicle=vehicle,
            currency=currency,
            lines=entry.lines,
            amount_excl_vat=_money(entry.amounts[0]),
            vat=_money(entry.amounts[1]),
            total=_money(entry.amounts[2]),
            incomplete=entry.incomplete,
        )
        for (vehicle, currency), entry in sorted(sums.items())
    ]


async def build_report(
    store: Store,
    month: str,
    timezone: str,
    configured: Iterable[Any] = (),
    rates: Rates = NO_RATES,
) -> FleetReport:
    """The report of `month` (YYYY-MM, in `timezone`); ValueError for a bad month.

    `configured` are the `[authorization] tokens` of the configuration: they win over the
    stored copies, which a server only refreshes from the file when it starts. `rates`
    price the charging sessions no provider priced (domain/tariffs.py)."""
    since, until = month_bounds(month, timezone)
    zone = ZoneInfo(timezone)
    docs = {str(doc.get("uid")): doc for doc in await _token_docs(store)}
    docs.update((token.uid, msgspec.to_builtins(token)) for token in configured)
    tokens = _Tokens(docs.values())
    where = ViewFilter(time_column="ended_at", since=since, until=until)
    parking = await store.view_rows("parking_transactions", where)
    charging = await store.view_rows("charging_sessions", where)
    dated = [(_instant(row["ended_at"]), _parking_line(row, tokens, zone)) for row in parking]
    dated += [
        (_instant(row["ended_at"]), _charging_line(row, tokens, zone, rates))
        for row in charging
        if row.get("ended_at") is not None
    ]
    dated.sort(key=lambda pair: (pair[0], pair[1].id))
    lines = [line for _, line in dated]
    return FleetReport(month=month, timezone=timezone, lines=lines, totals=_totals(lines))


def csv_cell(value: Any, numeric: bool = False) -> str:
    """The text of one CSV cell, defused: a cell a spreadsheet would evaluate as a formula
    gets a leading `'` (shown, never evaluated). A plain number in a numeric column (a
    negative amount) is left as it is, so that it stays a number."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_FORMULA_START) and not (numeric and _NUMBER.match(text)):
        return "'" + text
    return text


def _csv(columns: tuple[str, ...], rows: Iterable[msgspec.Struct]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    numeric = [column in _NUMERIC for column in columns]
    for row in rows:
        values = (
            " ".join(value) if isinstance(value, list) else value
            for value in (getattr(row, column) for column in columns)
        )
        writer.writerow(
            csv_cell(value, is_number) for value, is_number in zip(values, numeric, strict=True)
        )
    return out.getvalue()


def lines_csv(report: FleetReport) -> str:
    """The lines as CSV (RFC 4180, header row, CRLF): one rectangular table to import."""
    return _csv(LINE_COLUMNS, report.lines)


def totals_csv(report: FleetReport) -> str:
    """The per-vehicle totals as a CSV table of their own."""
    return _csv(TOTAL_COLUMNS, report.totals)


def report_json(report: FleetReport) -> bytes:
    """`{"month", "timezone", "lines": [...], "totals": [...]}`."""
    return msgspec.json.encode(report)
