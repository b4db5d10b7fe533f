"""Import charge tokens from a CSV file (one token per row), with their kWh budgets.

The first line names the columns; their order is free and unknown columns are ignored.
An empty cell means "not set". A column missing from the header leaves that field of an
existing token as it is, so a file with only `uid,status` blocks or unblocks tokens
without touching anything else. Every bad row is reported with its line number in the
file (the header is line 1) and nothing is written while any row is bad.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from hookgate.authorization.service import from_entity, to_entity
from hookgate.domain.rules import AuthEntity, Budget, Period, Token, budget_id, normalise_uid
from hookgate.store.base import Store

PERIODS: tuple[Period, ...] = ("day", "week", "month")
KWH_COLUMNS = {f"kwh_per_{period}": period for period in PERIODS}
COLUMNS = (
    "uid",
    "type",
    "group_id",
    "status",
    "valid_from",
    "valid_until",
    "whitelist",
    "label",
    "driver",
    "vehicle",
    "cost_centre",
    *KWH_COLUMNS,
    "sources",
    "chargers",
)
ALIASES = {"cost_center": "cost_centre"}
TYPES = ("RFID", "APP_USER", "AD_HOC_USER", "OTHER")
WHITELISTS = ("ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER")
STATUSES = ("valid", "blocked")
TEXT = ("label", "driver", "vehicle", "cost_centre")
_UID = re.compile(r"^[\x20-\x7e]{1,64}$")
_IDENT = re.compile(r"^[\x21-\x7e]{1,64}$")
_AT = re.compile(r"at `\$\.?([a-z_]+)")
ROW = "(row)"


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem in the file: the line (header = 1), the column, and what is wrong."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.column}: {self.message}"


@dataclass(slots=True)
class ParsedCsv:
    """What a file holds: the tokens and budgets of its good rows, and every problem."""

    tokens: list[Token] = field(default_factory=list)
    budgets: list[Budget] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    # The line each token came from, and the known columns the header has.
    lines: dict[str, int] = field(default_factory=dict)
    columns: frozenset[str] = frozenset()
    rows: int = 0


@dataclass(slots=True)
class ImportReport:
    """What an import did (or, as a dry run, would do)."""

    created: int = 0
    updated: int = 0
    budgets_set: int = 0
    budgets_removed: int = 0
    errors: list[RowError] = field(default_factory=list)
    written: bool = False


# -- cells -----------------------------------------------------------------------------


def _choice(value: str, allowed: tuple[str, ...], upper: bool) -> str:
    folded = value.upper() if upper else value.lower()
    if folded not in allowed:
        raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
    return folded


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date-time that states its UTC offset (`Z` or `+01:00`)."""
    try:
        moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 date-time (e.g. 2026-12-31T23:59:59+01:00)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(
            f"{value!r} has no UTC offset: add one, e.g. {value}Z or {value}+01:00"
            if "T" in value or " " in value
            else f"{value!r} has no time and UTC offset: write e.g. {value}T00:00:00+01:00"
        )
    return moment


def parse_kwh(value: str) -> Decimal:
    """A non-negative number of kWh; a decimal comma is accepted (`12,5`)."""
    text = value.replace(",", ".") if re.fullmatch(r"\d+,\d+", value) else value
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number of kWh") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a number of kWh")
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return number


def _names(value: str, what: str, known: Collection[str] | None) -> list[str]:
    names = value.split()
    for name in names:
        if not _IDENT.match(name):
            raise ValueError(f"{name!r} is not a valid {what} (1-64 printable ASCII characters)")
        if known is not None and name not in known:
            raise ValueError(
                f"there is no zaptec source {name!r} (configured: {', '.join(sorted(known))})"
            )
    return names


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _column(name: str) -> str:
    key = re.sub(r"[\s-]+", "_", name.strip().lower())
    return ALIASES.get(key, key)


# -- parsing ---------------------------------------------------------------------------


def read_csv(text: str, *, known_sources: Collection[str] | None = None) -> ParsedCsv:
    """Parse a whole file; `known_sources` (the zaptec source names) checks `sources`."""
    out = ParsedCsv()
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(first))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        out.errors.append(RowError(1, ROW, f"the header cannot be read: {exc}"))
        return out
    if not header or not any(cell.strip() for cell in header):
        out.errors.append(RowError(1, ROW, "the file is empty: line 1 must name the columns"))
        return out
    names = [_column(cell) for cell in header]
    seen: set[str] = set()
    for name in names:
        if name in COLUMNS and name in seen:
            out.errors.append(RowError(1, name, "the column appears twice"))
        seen.add(name)
    if "uid" not in names:
        out.errors.append(RowError(1, "uid", "the header has no uid column"))
    if out.errors:
        return out
    out.columns = frozenset(n for n in names if n in COLUMNS)
    first_line: dict[str, int] = {}
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.errors.append(RowError(line, ROW, f"the row cannot be read: {exc}"))
            break
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        out.rows += 1
        if len(cells) > len(names):
            out.errors.append(
                RowError(
                    start,
                    ROW,
                    f"{len(cells)} cells but the header names {len(names)} columns: "
                    "quote cells that contain the delimiter",
                )
            )
            continue
        row = {n: c.strip() for n, c in zip(names, cells, strict=False) if n in COLUMNS}
        _row(out, start, row, first_line, known_sources)
    return out


def parse_csv(
    text: str, *, known_sources: Collection[str] | None = None
) -> tuple[list[Token], list[Budget], list[RowError]]:
    """The tokens and budgets of a file's good rows, and every bad row's problems."""
    parsed = read_csv(text, known_sources=known_sources)
    return parsed.tokens, parsed.budgets, parsed.errors


def _row(
    out: ParsedCsv,
    line: int,
    row: dict[str, str],
    first_line: dict[str, int],
    known_sources: Collection[str] | None,
) -> None:
    errors: list[RowError] = []
    doc: dict[str, Any] = {}
    limits: dict[Period, Decimal] = {}

    def cell(name: str, parse: Any) -> None:
        value = row.get(name, "")
        if not value:
            return
        try:
            doc[name] = parse(value)
        except ValueError as exc:
            errors.append(RowError(line, name, str(exc)))

    uid = normalise_uid(row.get("uid", ""))
    if not uid:
        errors.append(RowError(line, "uid", "is empty: every row needs a uid"))
    elif not _UID.match(uid):
        errors.append(RowError(line, "uid", f"{uid!r} is not 1-64 printable ASCII characters"))
    elif uid in first_line:
        errors.append(RowError(line, "uid", f"{uid} is already on line {first_line[uid]}"))
    else:
        first_line[uid] = line
    doc["uid"] = uid
    cell("type", lambda v: _choice(v, TYPES, upper=True))
    cell("status", lambda v: _choice(v, STATUSES, upper=False))
    cell("whitelist", lambda v: _choice(v, WHITELISTS, upper=True))
    cell("valid_from", parse_instant)
    cell("valid_until", parse_instant)
    for name in TEXT:
        cell(name, str)
    group = row.get("group_id", "")
    if group and not _IDENT.match(group):
        errors.append(
            RowError(line, "group_id", f"{group!r} is not 1-64 printable ASCII without spaces")
        )
    elif group:
        doc["group_id"] = group
    scope: dict[str, list[str]] = {}
    for name, what in (("sources", "source name"), ("chargers", "charger id")):
        value = row.get(name, "")
        try:
            scope[name] = _names(value, what, known_sources if name == "sources" else None)
        except ValueError as exc:
            errors.append(RowError(line, name, str(exc)))
    doc["scope"] = scope
    for name, period in KWH_COLUMNS.items():
        value = row.get(name, "")
        if value:
            try:
                limits[period] = parse_kwh(value)
            except ValueError as exc:
                errors.append(RowError(line, name, str(exc)))
    starts, ends = doc.get("valid_from"), doc.get("valid_until")
    if starts is not None and ends is not None and ends <= starts:
        errors.append(RowError(line, "valid_until", "must be after valid_from"))
    if not errors:
        try:
            token = msgspec.convert(doc, Token)
        except msgspec.ValidationError as exc:
            found = _AT.search(str(exc))
            errors.append(RowError(line, found.group(1) if found else ROW, str(exc)))
        else:
            out.tokens.append(token)
            out.lines[token.uid] = line
            out.budgets.extend(
                Budget(
                    id=budget_id("token", uid, "kwh", period),
                    subject="token",
                    subject_id=uid,
                    metric="kwh",
                    period=period,
                    limit=limit,
                )
                for period, limit in limits.items()
            )
    out.errors.extend(errors)


# -- importing -------------------------------------------------------------------------

# Token fields a CSV column sets (the others, e.g. schedule and max_sessions, are kept).
_FIELDS = {c: c for c in COLUMNS if c not in KWH_COLUMNS and c not in ("sources", "chargers")}


def _merge(old: Token, new: Token, columns: Collection[str]) -> Token:
    """`new` where the file has a column, `old` everywhere else."""
    doc = msgspec.to_builtins(old)
    fresh = msgspec.to_builtins(new)
    for column, name in _FIELDS.items():
        if column in columns:
            doc[name] = fresh[name]
    for name in ("sources", "chargers"):
        if name in columns:
            doc["scope"][name] = fresh["scope"][name]
    doc["managed_by"] = "api"
    return msgspec.convert(doc, Token)


async def _all(store: Store, kind: str) -> dict[str, AuthEntity]:
    out: dict[str, AuthEntity] = {}
    after: str | None = None
    while True:
        batch = await store.auth_list(kind, after, 1000)
        out.update((entity.key, entity) for entity in batch)
        if len(batch) < 1000:
            return out
        after = batch[-1].key


async def import_tokens(
    store: Store,
    tokens: Iterable[Token],
    budgets: Iterable[Budget],
    *,
    lines: dict[str, int] | None = None,
    columns: Collection[str] | None = None,
    config_uids: Collection[str] = (),
    config_groups: Collection[str] = (),
    dry_run: bool = False,
) -> ImportReport:
    """Write the tokens and their budgets in one transaction (then drop the kWh budgets
    whose cells were empty). Refuses, as row errors, tokens or budgets the configuration
    manages and groups that do not exist; with any error nothing is written.

    `columns`: the known columns of the file (None: all of them); `lines`: the line of
    each uid, for the errors; `config_uids`/`config_groups`: what the configuration file
    lists (it may not be in the store yet when no server has started on it).
    """
    report = ImportReport()
    lines = lines or {}
    present = frozenset(COLUMNS if columns is None else columns)
    budgets_by: dict[str, list[Budget]] = {}
    for budget in budgets:
        budgets_by.setdefault(budget.subject_id, []).append(budget)
    puts: list[AuthEntity] = []
    deletes: list[str] = []
    # One read of what exists (an import may hold thousands of rows).
    known = {kind: await _all(store, kind) for kind in ("token", "group", "budget")}
    groups = set(known["group"]) | set(config_groups)
    for given in tokens:
        line = lines.get(given.uid, 0)
        stored = known["token"].get(given.uid)
        if (stored is not None and stored.managed_by == "config") or given.uid in config_uids:
            report.errors.append(
                RowError(
                    line,
                    "uid",
                    f"token {given.uid} is managed by the configuration file "
                    "([[authorization.tokens]]): change it there, or drop this row",
                )
            )
            continue
        if stored is not None:
            old = from_entity("token", stored.doc)
            assert isinstance(old, Token)
            token = _merge(old, given, present)
        else:
            token = _merge(given, given, present)
        if token.group_id and token.group_id not in groups:
            report.errors.append(
                RowError(
                    line,
                    "group_id",
                    f"there is no group {token.group_id}: create it first "
                    "(POST /api/v1/groups or [[authorization.groups]])",
                )
            )
            continue
        row_puts: list[AuthEntity] = [to_entity("token", token)]
        row_deletes: list[str] = []
        row_ok = True
        wanted = {b.period: b for b in budgets_by.get(token.uid, [])}
        for column, period in KWH_COLUMNS.items():
            if column not in present:
                continue
            key = budget_id("token", token.uid, "kwh", period)
            existing = known["budget"].get(key)
            if existing is not None and existing.managed_by == "config":
                report.errors.append(
                    RowError(
                        line,
                        column,
                        f"budget {key} is managed by the configuration file "
                        "([[authorization.budgets]]): leave this column out or change it there",
                    )
                )
                row_ok = False
            elif period in wanted:
                row_puts.append(to_entity("budget", wanted[period]))
            elif existing is not None:
                row_deletes.append(key)
        if not row_ok:
            continue
        puts += row_puts
        deletes += row_deletes
        report.budgets_set += len(row_puts) - 1
        report.budgets_removed += len(row_deletes)
        if stored is None:
            report.created += 1
        else:
            report.updated += 1
    report.errors.sort(key=lambda e: e.line)
    if report.errors or dry_run:
        return report
    # Tokens before budgets, and the emptied budgets, all in one transaction.
    puts.sort(key=lambda e: e.kind != "token")
    await store.auth_write(puts, [("budget", key) for key in deletes])
    report.written = True
    return report
