"""Monthly reconciliation: what a fleet's books need to close a month.

Built on the fleet cost report (export.py: the same lines, amounts, tariffs and flags),
it puts parking and charging together and sets apart:

- **flagged lines** (any anomaly flag, views.md#anomaly-flags): kept out of the totals
  until someone looks at them;
- **credit lines**: a credit CDR read from AMPECO (fetch on notify) becomes a negative
  line that names the original session (`references`);
- **totals** excl. and incl. VAT per currency, for each vehicle, driver, cost centre and
  legal entity (the token's `legal_entity`);
- **exceptions**: sessions no decision authorized (`unmatched`: offline charging) and
  approving decisions whose session never arrived. A decision's `session_id` is the id a
  session is reported under (Zaptec's `sessionId`, OCPI's `authorization_reference`), so
  the three meet on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from hookgate.domain.anomalies import UNAUTHORIZED
from hookgate.domain.decisions import DecisionRecord
from hookgate.domain.queries import DecisionFilter, ViewFilter
from hookgate.domain.tariffs import NO_RATES, Rates
from hookgate.export import (
    ExportLine,
    _csv,
    _instant,
    _money,
    _token_docs,
    build_report,
    month_bounds,
)
from hookgate.store import fetches
from hookgate.store.base import Store

DIMENSIONS = ("vehicle", "driver", "cost_centre", "legal_entity")
LINE_COLUMNS = (
    "section",
    "kind",
    "id",
    "date",
    "vehicle",
    "token",
    "driver",
    "cost_centre",
    "legal_entity",
    "description",
    "amount_excl_vat",
    "vat",
    "total",
    "currency",
    "references",
    "flags",
)
TOTAL_COLUMNS = (
    "dimension",
    "key",
    "currency",
    "lines",
    "amount_excl_vat",
    "vat",
    "total",
    "incomplete",
)
EXCEPTION_COLUMNS = ("problem", "id", "date", "source", "token", "charger_id", "session_id")
_PAGE = 500


class ReconLine(msgspec.Struct, kw_only=True):
    """One line of the month: `section` is `booked`, `flagged` or `credit`."""

    section: str
    kind: str
    id: str
    date: str
    vehicle: str | None
    token: str | None
    driver: str | None
    cost_centre: str | None
    legal_entity: str | None
    description: str
    amount_excl_vat: str | None
    vat: str | None
    total: str | None
    currency: str | None
    references: str | None = None  # a credit line: the original session's id
    flags: list[str] = []


class GroupTotal(msgspec.Struct, kw_only=True):
    """Sums of the booked and credit lines of one key of one dimension in one currency;
    `incomplete` counts lines missing an amount (they are not in the sums)."""

    dimension: str
    key: str
    currency: str
    lines: int
    amount_excl_vat: str | None
    vat: str | None
    total: str | None
    incomplete: int


class ReconException(msgspec.Struct, kw_only=True):
    """`unauthorized_session` (no decision approved it) or `decision_without_session`."""

    problem: str
    id: str
    date: str
    source: str
    token: str | None
    charger_id: str | None
    session_id: str | None


class Reconciliation(msgspec.Struct, kw_only=True):
    month: str
    timezone: str
    lines: list[ReconLine]
    totals: list[GroupTotal]
    exceptions: list[ReconException]


def _line(line: ExportLine, entities: Mapping[str, str | None]) -> ReconLine:
    return ReconLine(
        section="flagged" if line.flags else "booked",
        kind=line.kind,
        id=line.id,
        date=line.date,
        vehicle=line.vehicle,
        token=line.token,
        driver=line.driver,
        cost_centre=line.cost_centre,
        legal_entity=entities.get(line.token or ""),
        description=line.description,
        amount_excl_vat=line.amount_excl_vat,
        vat=line.vat,
        total=line.total,
        currency=line.currency,
        flags=list(line.flags),
    )


async def _credits(
    store: Store,
    since: datetime,
    until: datetime,
    zone: ZoneInfo,
    entities: Mapping[str, str | None],
    owners: Mapping[str, Mapping[str, Any]],
) -> list[ReconLine]:
    """Credit CDRs received in the month, as negative lines naming the session."""
    lines = []
    for fetched in await fetches.fetched_documents(store, "cdr"):
        data = (fetched["document"] or {}).get("data") or {}
        if data.get("credit") is not True or not data.get("sessionId"):
            continue
        when = data.get("receivedAt") or data.get("endTime")
        try:
            at = _instant(when)
        except (TypeError, ValueError):
            continue
        if not since <= at < until:
            continue
        ocpi = data.get("ocpiData") or {}
        amount = ocpi.get("totalCost")
        total = None if amount is None else -abs(Decimal(str(amount)))
        session_key = str(data["sessionId"])
        rows = await store.view_rows(
            "charging_sessions",
            ViewFilter(equal={"source": fetched["source"], "session_key": session_key}),
        )
        original = rows[0] if rows else None
        token = original.get("token") if original else None
        owner = owners.get(token or "", {})
        lines.append(
            ReconLine(
                section="credit",
                kind="charging",
                id=f"cdr:{fetched['ref_id']}",
                date=at.astimezone(zone).date().isoformat(),
                vehicle=owner.get("vehicle"),
                token=token,
                driver=owner.get("driver"),
                cost_centre=owner.get("cost_centre"),
                legal_entity=entities.get(token or ""),
                description=f"Credit for session {session_key}",
                amount_excl_vat=None,
                vat=None,
                total=_money(total),
                currency=ocpi.get("currency"),
                references=str(original["id"]) if original else session_key,
            )
        )
    return lines


async def _decisions(store: Store, since: datetime, until: datetime) -> list[DecisionRecord]:
    found: list[DecisionRecord] = []
    cursor: str | None = None
    while True:
        page = await store.list_decisions(DecisionFilter(since=since, until=until), cursor, _PAGE)
        found.extend(page.items)
        if page.next is None:
            return found
        cursor = page.next


async def _exceptions(
    store: Store, since: datetime, until: datetime, zone: ZoneInfo
) -> list[ReconException]:
    sessions = await store.view_rows(
        "charging_sessions", ViewFilter(time_column="started_at", since=since, until=until)
    )
    known = {str(row["session_key"]) for row in sessions} | {
        str(row["external_id"]) for row in sessions if row.get("external_id")
    }
    problems = [
        ReconException(
            problem="unauthorized_session",
            id=str(row["id"]),
            date=_instant(row["started_at"]).astimezone(zone).date().isoformat(),
            source=str(row["source"]),
            token=row.get("token"),
            charger_id=row.get("charger_id"),
            session_id=str(row["session_key"]),
        )
        for row in sessions
        if UNAUTHORIZED in (row.get("flags") or ())
    ]
    for decision in await _decisions(store, since, until):
        session_id = decision.session_id
        if not session_id or session_id in known:
            continue
        # A session may start just before the month's end and be reported in the next.
        later = await store.view_rows(
            "charging_sessions", ViewFilter(equal={"session_key": session_id})
        )
        if later:
            continue
        problems.append(
            ReconException(
                problem="decision_without_session",
                id=decision.id,
                date=_instant(decision.decided_at).astimezone(zone).date().isoformat(),
                source=decision.source,
                token=decision.token,
                charger_id=decision.charger_id,
                session_id=str(session_id),
            )
        )
    return sorted(problems, key=lambda p: (p.date, p.problem, p.id))


def _totals(lines: Iterable[ReconLine]) -> list[GroupTotal]:
    sums: dict[tuple[str, str, str], list[Any]] = {}
    for line in lines:
        if line.section == "flagged":
            continue
        for dimension in DIMENSIONS:
            key = getattr(line, dimension) or "(none)"
            entry = sums.setdefault((dimension, key, line.currency or ""), [0, 0, None, None, None])
            entry[0] += 1
            values = (line.amount_excl_vat, line.vat, line.total)
            entry[1] += any(value is None for value in values)
            for index, value in enumerate(values, start=2):
                if value is not None:
                    entry[index] = (entry[index] or Decimal(0)) + Decimal(value)
    return [
        GroupTotal(
            dimension=dimension,
            key=key,
            currency=currency,
            lines=entry[0],
            incomplete=entry[1],
            amount_excl_vat=_money(entry[2]),
            vat=_money(entry[3]),
            total=_money(entry[4]),
        )
        for (dimension, key, currency), entry in sorted(
            sums.items(), key=lambda item: (DIMENSIONS.index(item[0][0]), item[0][1:])
        )
    ]


async def build_reconciliation(
    store: Store,
    month: str,
    timezone: str,
    configured: Iterable[Any] = (),
    rates: Rates = NO_RATES,
) -> Reconciliation:
    """The reconciliation of `month` (YYYY-MM in `timezone`); ValueError for a bad month."""
    configured = list(configured)
    report = await build_report(store, month, timezone, configured, rates)
    since, until = month_bounds(month, timezone)
    zone = ZoneInfo(timezone)
    docs = {str(doc.get("uid")): doc for doc in await _token_docs(store)}
    docs.update((token.uid, msgspec.to_builtins(token)) for token in configured)
    entities = {uid: doc.get("legal_entity") for uid, doc in docs.items()}
    lines = [_line(line, entities) for line in report.lines]
    lines += await _credits(store, since, until, zone, entities, docs)
    lines.sort(key=lambda line: (line.date, line.section, line.id))
    return Reconciliation(
        month=month,
        timezone=timezone,
        lines=lines,
        totals=_totals(lines),
        exceptions=await _exceptions(store, since, until, zone),
    )


def reconciliation_csv(result: Reconciliation, part: str = "lines") -> str:
    """One part as CSV: `lines`, `totals` or `exceptions`."""
    if part == "totals":
        return _csv(TOTAL_COLUMNS, result.totals)
    if part == "exceptions":
        return _csv(EXCEPTION_COLUMNS, result.exceptions)
    return _csv(LINE_COLUMNS, result.lines)


def reconciliation_json(result: Reconciliation) -> bytes:
    return msgspec.json.encode(result)
