"""CSV token import: every column, free column order, empty cells, and every bad row
reported with its line number; importing into a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from hookgate.authorization.csv_import import RowError, import_tokens, parse_csv, read_csv
from hookgate.authorization.service import from_entity, to_entity
from hookgate.domain.rules import Budget, Group, Scope, Token, budget_id
from hookgate.store.sqlite import SqliteStore

EVERY_COLUMN = "\n".join(
    [
        "uid,type,group_id,status,valid_from,valid_until,whitelist,label,driver,vehicle,"
        "cost_centre,kwh_per_day,kwh_per_week,kwh_per_month,sources,chargers",
        "04a1b2c3,rfid,fleet,valid,2026-01-01T00:00:00+01:00,2026-12-31T23:59:59Z,"
        "allowed_offline,Tag 1,Anna Berg,ABC123,CC-7,10,50.5,200,zaptec zaptec-basic,CH-1 CH-2",
        'app-user-9,APP_USER,,blocked,,,NEVER,"Berg, Anna",,,,,,,,',
        "",
    ]
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(str(tmp_path / "csv.db"))
    await db.migrate()
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def test_a_good_file_with_every_column() -> None:
    tokens, budgets, errors = parse_csv(EVERY_COLUMN, known_sources=["zaptec", "zaptec-basic"])
    assert errors == []
    first, second = tokens
    assert first == Token(
        uid="04A1B2C3",
        type="RFID",
        group_id="fleet",
        status="valid",
        valid_from=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        valid_until=datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        whitelist="ALLOWED_OFFLINE",
        label="Tag 1",
        driver="Anna Berg",
        vehicle="ABC123",
        cost_centre="CC-7",
        scope=Scope(sources=["zaptec", "zaptec-basic"], chargers=["CH-1", "CH-2"]),
    )
    assert (second.uid, second.type, second.status, second.whitelist) == (
        "APP-USER-9",
        "APP_USER",
        "blocked",
        "NEVER",
    )
    assert second.label == "Berg, Anna"  # a quoted cell keeps its comma
    assert second.group_id is None and second.driver is None and second.valid_until is None
    assert second.scope.sources == [] and second.scope.chargers == []  # empty: everywhere
    assert {(b.id, b.period, b.limit) for b in budgets} == {
        ("token-04A1B2C3-kwh-day", "day", Decimal(10)),
        ("token-04A1B2C3-kwh-week", "week", Decimal("50.5")),
        ("token-04A1B2C3-kwh-month", "month", Decimal(200)),
    }
    assert all(b.subject == "token" and b.subject_id == "04A1B2C3" for b in budgets)
    assert budgets[0].id == budget_id("token", "04a1b2c3", "kwh", "day")


def test_columns_in_another_order_with_unknown_columns_and_semicolons() -> None:
    text = (
        "\ufeffNotes;Kwh_Per_Day;Cost Centre;UID;status;chargers\r\n"
        "imported 2025;12,5;CC-1;tag-1;BLOCKED;CH-9\r\n"
        "\r\n"
        ";;;tag-2;;\r\n"
    )
    parsed = read_csv(text)
    assert parsed.errors == []
    assert parsed.columns == {"kwh_per_day", "cost_centre", "uid", "status", "chargers"}
    one, two = parsed.tokens
    assert (one.uid, one.status, one.cost_centre, one.scope.chargers) == (
        "TAG-1",
        "blocked",
        "CC-1",
        ["CH-9"],
    )
    assert (two.uid, two.status, two.cost_centre) == ("TAG-2", "valid", None)
    assert [(b.subject_id, b.limit) for b in parsed.budgets] == [("TAG-1", Decimal("12.5"))]
    assert parsed.lines == {"TAG-1": 2, "TAG-2": 4}  # the blank line 3 counts


def test_every_bad_row_is_reported_with_its_line_number() -> None:
    text = (
        "uid,status,type,whitelist,valid_from,valid_until,kwh_per_day,kwh_per_week,group_id,sources\n"
        "GOOD-1,valid,RFID,ALLOWED,,,10,,,zaptec\n"  # line 2
        "good-1,valid,,,,,,,,\n"  # line 3: duplicate uid (case-insensitive)
        ",valid,,,,,,,,\n"  # line 4: no uid
        "BAD-STATUS,paused,,,,,,,,\n"  # line 5
        "BAD-TYPE,,CARD,,,,,,,\n"  # line 6
        "BAD-WL,,,MAYBE,,,,,,\n"  # line 7
        "NAIVE,,,,2026-01-01T08:00:00,,,,,\n"  # line 8: no offset
        "NOT-A-DATE,,,,,tomorrow,,,,\n"  # line 9
        "BACKWARDS,,,,2026-02-01T00:00:00Z,2026-01-01T00:00:00Z,,,,\n"  # line 10
        "NEG,,,,,,-1,abc,,\n"  # line 11: two bad cells
        '"multi\nline",,,,,,,,,\n'  # lines 12-13: uid with a newline
        "BAD-GROUP,,,,,,,,has space,\n"  # line 14
        "BAD-SOURCE,,,,,,,,,ampeco\n"  # line 15
        "TOO-MANY,,,,,,,,,,extra\n"  # line 16
        "Ä-NON-ASCII,,,,,,,,,\n"  # line 17
        "GOOD-2,blocked,,,,,,,,\n"  # line 18
    )
    tokens, budgets, errors = parse_csv(text, known_sources=["zaptec"])
    assert [t.uid for t in tokens] == ["GOOD-1", "GOOD-2"]
    assert [b.subject_id for b in budgets] == ["GOOD-1"]
    found = {(e.line, e.column) for e in errors}
    assert found == {
        (3, "uid"),
        (4, "uid"),
        (5, "status"),
        (6, "type"),
        (7, "whitelist"),
        (8, "valid_from"),
        (9, "valid_until"),
        (10, "valid_until"),
        (11, "kwh_per_day"),
        (11, "kwh_per_week"),
        (12, "uid"),
        (14, "group_id"),
        (15, "sources"),
        (16, "(row)"),
        (17, "uid"),
    }
    messages = {(e.line, e.column): e.message for e in errors}
    assert "already on line 2" in messages[(3, "uid")]
    assert "no UTC offset" in messages[(8, "valid_from")]
    assert "negative" in messages[(11, "kwh_per_day")]
    assert "not a number" in messages[(11, "kwh_per_week")]
    assert "ampeco" in messages[(15, "sources")]
    assert str(RowError(5, "status", "x")) == "line 5: status: x"


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", "(row)", "empty"),
        ("label,driver\nx,y\n", "uid", "no uid column"),
        ("uid,UID\nx,y\n", "uid", "twice"),
    ],
)
def test_a_bad_header_is_line_1(text: str, column: str, message: str) -> None:
    _, _, errors = parse_csv(text)
    assert len(errors) == 1
    assert (errors[0].line, errors[0].column) == (1, column)
    assert message in errors[0].message


async def _token(store: SqliteStore, uid: str) -> Token:
    stored = await store.auth_get("token", uid)
    assert stored is not None
    token = from_entity("token", stored.doc)
    assert isinstance(token, Token)
    return token


async def test_import_writes_tokens_and_budgets_and_re_import_merges(store: SqliteStore) -> None:
    await store.auth_put([to_entity("group", Group(id="fleet"))])
    parsed = read_csv(EVERY_COLUMN)
    report = await import_tokens(
        store, parsed.tokens, parsed.budgets, lines=parsed.lines, columns=parsed.columns
    )
    assert report.errors == [] and report.written
    assert (report.created, report.updated, report.budgets_set) == (2, 0, 3)
    assert (await _token(store, "04A1B2C3")).driver == "Anna Berg"
    assert len(await store.auth_list("budget", None, 10)) == 3

    # A later file with fewer columns: an empty kWh cell drops that budget, absent columns
    # (driver, kwh_per_month, ...) leave the token's values and budgets as they are.
    again = read_csv("uid,label,kwh_per_day,kwh_per_week\n04a1b2c3,,,75\n")
    report = await import_tokens(
        store, again.tokens, again.budgets, lines=again.lines, columns=again.columns
    )
    assert report.errors == [] and (report.updated, report.budgets_set) == (1, 1)
    assert report.budgets_removed == 1
    token = await _token(store, "04A1B2C3")
    assert token.label is None and token.driver == "Anna Berg" and token.group_id == "fleet"
    budgets = {
        b.key: from_entity("budget", b.doc) for b in await store.auth_list("budget", None, 10)
    }
    assert set(budgets) == {"token-04A1B2C3-kwh-week", "token-04A1B2C3-kwh-month"}
    week = budgets["token-04A1B2C3-kwh-week"]
    assert isinstance(week, Budget) and week.limit == Decimal(75)


async def test_import_refuses_config_tokens_and_unknown_groups_and_writes_nothing(
    store: SqliteStore,
) -> None:
    config_token = Token(uid="CFG1", managed_by="config")
    await store.auth_put([to_entity("token", config_token)])
    text = "uid,group_id,kwh_per_day\nNEW-1,,5\ncfg1,,\nNEW-2,ghosts,\nFILE-CFG,,\n"
    parsed = read_csv(text)
    assert parsed.errors == []
    report = await import_tokens(
        store,
        parsed.tokens,
        parsed.budgets,
        lines=parsed.lines,
        columns=parsed.columns,
        config_uids=["FILE-CFG"],
    )
    assert [(e.line, e.column) for e in report.errors] == [(3, "uid"), (4, "group_id"), (5, "uid")]
    assert "configuration file" in report.errors[0].message
    assert not report.written
    assert await store.auth_get("token", "NEW-1") is None
    assert await store.auth_list("budget", None, 10) == []
    assert (await _token(store, "CFG1")).managed_by == "config"


async def test_a_dry_run_reports_but_writes_nothing(store: SqliteStore) -> None:
    parsed = read_csv("uid,kwh_per_month\nDRY-1,100\n")
    report = await import_tokens(store, parsed.tokens, parsed.budgets, dry_run=True)
    assert (report.created, report.budgets_set, report.written) == (1, 1, False)
    assert await store.auth_get("token", "DRY-1") is None
