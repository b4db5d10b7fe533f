"""Fleet cost export: month bounds in the local zone, price + fee, unknown amounts left
empty, driver and cost centre from the tokens, totals per vehicle and currency."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from hookgate.domain.rules import AuthEntity
from hookgate.export import build_report, lines_csv, month_bounds, report_json, totals_csv
from hookgate.store.sqlite import SqliteStore
from support.views import seed


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(str(tmp_path / "export.db"), auto_migrate=True)
    await db.open()
    await db.auth_put(
        [
            AuthEntity(
                kind="token",
                key="TAG-1",
                doc=msgspec.json.encode(
                    {
                        "uid": "TAG-1",
                        "driver": "Anna Berg",
                        "vehicle": "abc 123",
                        "cost_centre": "CC-10",
                    }
                ),
            ),
            AuthEntity(kind="token", key="TAG-2", doc=msgspec.json.encode({"uid": "TAG-2"})),
        ]
    )
    yield db
    await db.close()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_month_bounds_follow_the_zone_and_refuse_bad_months() -> None:
    since, until = month_bounds("2025-12", "Europe/Stockholm")
    assert since == at("2025-11-30T23:00:00+00:00")
    assert until == at("2025-12-31T23:00:00+00:00")
    assert month_bounds("2025-06", "UTC")[1] == at("2025-07-01T00:00:00+00:00")
    for bad in ("2025-13", "2025-1", "December", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_bounds(bad, "UTC")


async def test_lines_totals_and_formats(store: SqliteStore, tmp_path: Path) -> None:
    db = tmp_path / "export.db"
    # Ends 00:30 on 1 December in Stockholm: December, although November in UTC.
    seed(
        db,
        "parking_transactions",
        parking_id="p1",
        license_number="ABC-123",
        ended_at=at("2025-11-30T23:30:00+00:00"),
        area_name="Lasarett",
        operator_name="EuroPark",
        price="100",
        price_vat="20",
        price_excl_vat="80",
        fee="5.5",
        fee_vat="1.1",
        fee_excl_vat="4.4",
    )
    # Ends on 1 January local time: not December.
    seed(db, "parking_transactions", parking_id="p2", ended_at=at("2025-12-31T23:30:00+00:00"))
    seed(
        db,
        "charging_sessions",
        session_key="s1",
        token="tag-1",
        charger_id="CH-7",
        energy_kwh="12.5",
        started_at=at("2025-12-10T08:00:00+00:00"),
        ended_at=at("2025-12-10T09:00:00+00:00"),
        cost="62.50",
        cost_excl_vat="50",
        currency="SEK",
    )
    # Only the total is known: VAT and the net amount stay empty, never 0.
    seed(
        db,
        "charging_sessions",
        session_key="s2",
        token="TAG-2",
        ended_at=at("2025-12-11T09:00:00+00:00"),
        cost="10",
        currency="SEK",
    )
    # Still charging: no line.
    seed(db, "charging_sessions", session_key="s3", status="active", token="TAG-1")

    report = await build_report(store, "2025-12", "Europe/Stockholm")
    assert [(line.kind, line.date) for line in report.lines] == [
        ("parking", "2025-12-01"),
        ("charging", "2025-12-10"),
        ("charging", "2025-12-11"),
    ]
    parking, charging, partial = report.lines
    assert (parking.vehicle, parking.token, parking.driver, parking.cost_centre) == (
        "ABC-123",
        "TAG-1",
        "Anna Berg",
        "CC-10",
    )
    assert (parking.amount_excl_vat, parking.vat, parking.total) == ("84.40", "21.10", "105.50")
    assert parking.description == "Parking Lasarett / EuroPark"
    assert (charging.vehicle, charging.token, charging.driver) == ("abc 123", "TAG-1", "Anna Berg")
    assert (charging.amount_excl_vat, charging.vat, charging.total) == ("50.00", "12.50", "62.50")
    assert charging.description == "Charging 12.5 kWh at CH-7"
    assert (partial.vehicle, partial.amount_excl_vat, partial.vat, partial.total) == (
        None,
        None,
        None,
        "10.00",
    )
    totals = {(t.vehicle, t.currency): t for t in report.totals}
    assert set(totals) == {("ABC-123", "SEK"), ("abc 123", "SEK"), ("token:TAG-2", "SEK")}
    unknown = totals[("token:TAG-2", "SEK")]
    assert (unknown.lines, unknown.total, unknown.vat, unknown.incomplete) == (1, "10.00", None, 1)

    rows = list(csv.reader(io.StringIO(lines_csv(report))))
    assert rows[0] == [
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
    ]
    assert rows[3][8:] == ["", "", "10.00", "SEK", "", ""]
    assert lines_csv(report).endswith("\r\n")
    total_rows = list(csv.reader(io.StringIO(totals_csv(report))))
    assert total_rows[0] == [
        "vehicle",
        "currency",
        "lines",
        "amount_excl_vat",
        "vat",
        "total",
        "incomplete",
    ]
    assert ["token:TAG-2", "SEK", "1", "", "", "10.00", "1"] in total_rows

    document = json.loads(report_json(report))
    assert document["month"] == "2025-12"
    assert document["lines"][0]["total"] == "105.50"
    assert document["lines"][2]["vat"] is None
    assert len(document["totals"]) == 3


async def test_an_unknown_fee_leaves_the_parking_amounts_unknown(
    store: SqliteStore, tmp_path: Path
) -> None:
    seed(
        tmp_path / "export.db",
        "parking_transactions",
        parking_id="p3",
        license_number="XYZ 999",
        ended_at=at("2025-12-05T10:00:00+00:00"),
        fee="3.00",
        fee_vat=None,
        fee_excl_vat=None,
    )
    (line,) = (await build_report(store, "2025-12", "UTC")).lines
    assert (line.amount_excl_vat, line.vat, line.total) == (None, None, "103.00")
    assert line.driver is None and line.token is None


async def test_a_stored_amount_out_of_range_is_flagged_and_left_out_of_the_totals(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Rows an older version stored (1E+400 was accepted) no longer take the month down:
    the amount is empty, the line says why, the totals count the line as incomplete."""
    db = tmp_path / "export.db"
    seed(db, "parking_transactions", parking_id="huge", license_number="HUGE1", price="1E+400")
    seed(
        db,
        "parking_transactions",
        parking_id="digits",
        license_number="HUGE1",
        price_vat="9" * 5000,
    )
    seed(db, "parking_transactions", parking_id="fine", license_number="HUGE1")
    seed(
        db,
        "parking_transactions",
        parking_id="fee",
        license_number="FEE1",
        fee="1E+999999999",
        fee_vat="0",
        fee_excl_vat="0",
    )
    seed(
        db,
        "charging_sessions",
        session_key="nan",
        token="TAG-2",
        ended_at=at("2025-12-04T12:00:00+00:00"),
        cost="NaN",
        cost_excl_vat="lots",
        currency="SEK",
    )
    report = await build_report(store, "2025-12", "UTC")
    lines = {line.id: line for line in report.lines}
    assert len(lines) == 5
    huge = next(line for line in report.lines if line.total is None and line.vat == "20.00")
    assert huge.note is not None and "price" in huge.note and "1E+400" in huge.note
    assert "left out of the totals" in huge.note
    digits = next(line for line in report.lines if line.vat is None and line.total == "100.00")
    assert digits.note is not None and "price_vat" in digits.note
    fee = next(line for line in report.lines if line.vehicle == "FEE1")
    assert (fee.total, fee.vat, fee.amount_excl_vat) == (None, "20.00", "80.00")
    assert fee.note is not None and fee.note.startswith("fee:")
    charging = next(line for line in report.lines if line.kind == "charging")
    assert (charging.total, charging.amount_excl_vat, charging.vat) == (None, None, None)
    assert (
        charging.note is not None and "cost" in charging.note and "cost_excl_vat" in charging.note
    )
    fine = [line for line in report.lines if line.note is None]
    assert len(fine) == 1 and fine[0].total == "100.00"

    totals = {t.vehicle: t for t in report.totals}
    # Only the in-range amounts are added up; both broken lines count as incomplete.
    assert (totals["HUGE1"].lines, totals["HUGE1"].incomplete) == (3, 2)
    assert totals["HUGE1"].total == "200.00"
    assert totals["HUGE1"].vat == "40.00"
    assert totals["HUGE1"].amount_excl_vat == "240.00"
    rows = list(csv.DictReader(io.StringIO(lines_csv(report))))
    assert sum(1 for row in rows if "left out of the totals" in row["note"]) == 4
    assert totals_csv(report).count("\r\n") == 1 + len(report.totals)
    assert len(json.loads(report_json(report))["lines"]) == 5


FORMULAS = (
    '=HYPERLINK("http://evil","x")',
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "+1+1",
    "-2+3",
    "\r=1",
    "\uff1d1+1",
)


async def test_csv_cells_a_spreadsheet_would_evaluate_are_defused(
    store: SqliteStore, tmp_path: Path
) -> None:
    """OWASP CSV injection: a plate or token that starts a formula is shown, not run;
    negative amounts stay numbers; JSON keeps the text as received."""
    db = tmp_path / "export.db"
    for n, plate in enumerate(FORMULAS):
        seed(
            db,
            "parking_transactions",
            parking_id=f"p{n}",
            license_number=plate,
            area_name="=cmd|' /C calc'!A0",
            price="-10.5",
            price_vat="-2.1",
            price_excl_vat="-8.4",
        )
    seed(
        db,
        "charging_sessions",
        session_key="s1",
        token="=1+1",
        ended_at=at("2025-12-04T12:00:00+00:00"),
        cost="-5",
        currency="SEK",
    )
    report = await build_report(store, "2025-12", "UTC")
    rows = list(csv.DictReader(io.StringIO(lines_csv(report))))
    plates = [row["vehicle"] for row in rows if row["kind"] == "parking"]
    assert sorted(plates) == sorted("'" + plate for plate in FORMULAS)
    (charging,) = (row for row in rows if row["kind"] == "charging")
    assert charging["token"] == "'=1+1"
    assert charging["total"] == "-5.00"
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r", "\uff1d")), (column, cell)
            if cell.startswith("-"):
                assert column in ("amount_excl_vat", "vat", "total"), (column, cell)
        if row["kind"] == "parking":
            assert (row["amount_excl_vat"], row["vat"], row["total"]) == (
                "-8.40",
                "-2.10",
                "-10.50",
            )
    totals = list(csv.DictReader(io.StringIO(totals_csv(report))))
    assert {row["vehicle"] for row in totals} >= {"'" + plate for plate in FORMULAS}
    assert "token:=1+1" in {row["vehicle"] for row in totals}  # starts with "t": harmless
    assert all(row["total"].startswith("-") for row in totals)
    document = json.loads(report_json(report))
    assert {line["vehicle"] for line in document["lines"]} >= set(FORMULAS)
