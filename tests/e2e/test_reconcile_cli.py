"""`hookgate reconcile --month`: parking and charging together per vehicle, driver, cost
centre and legal entity; flagged lines apart and out of the totals; a credit CDR as a
negative line naming its session; sessions no decision authorized and decisions with no
session; CSV parts and JSON; a bad month refused with a message."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import httpx
import msgspec
import pytest

from hookgate.emulate.ampeco_api import sample_cdr
from hookgate.ids import new_id
from hookgate.store.viewtx import SqlViewTx
from support.e2e import db_path, migrate, run_cli, serving, write_config
from support.gateway import ADMIN_TOKEN
from support.views import T0, seed

pytestmark = pytest.mark.e2e

AUTHORIZATION = {
    "timezone": "Europe/Stockholm",
    "tokens": [
        {
            "uid": "tag-1",
            "driver": "Anna Berg",
            "vehicle": "ABC123",
            "cost_centre": "CC-1",
            "legal_entity": "Fleet AB",
        },
        {"uid": "tag-2", "driver": "Per Lind", "vehicle": "XYZ789", "legal_entity": "Fleet AB"},
    ],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, authorization=AUTHORIZATION)
    migrate(path)
    return path


def cli(config: Path, *args: str) -> str:
    result = run_cli(*args, "--config", str(config), check=False)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _decision(db: Path, session_id: str, token: str) -> str:
    decision_id = new_id()
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "INSERT INTO decisions (id, decided_at, source, event_id, charger_id, token, "
            "user_id, installation_id, result, reasons, session_id, fallback, latency_us) "
            "VALUES (?, ?, 'zaptec', NULL, 'CH-1', ?, NULL, NULL, 'approved', '[]', ?, 0, 10)",
            (decision_id, (T0 + timedelta(hours=1)).isoformat(), token, session_id),
        )
        conn.commit()
    finally:
        conn.close()
    return decision_id


def test_reconcile_month_csv_and_json(config: Path, tmp_path: Path) -> None:
    db = db_path(config.parent)
    common = {"source": "ampeco", "provider": "ampeco", "status": "ended", "currency": "SEK"}
    seed(
        db,
        "parking_transactions",
        parking_id="p1",
        license_number="ABC123",
        started_at=T0 - timedelta(hours=8),
        ended_at=T0 - timedelta(hours=6),
        price="100",
        price_vat="20",
        price_excl_vat="80",
        currency="SEK",
    )
    booked = seed(
        db,
        "charging_sessions",
        **common,
        session_key="7001",
        token="TAG-1",
        started_at=T0,
        ended_at=T0 + timedelta(hours=1),
        cost="50",
        cost_excl_vat="40",
    )
    flagged = seed(
        db,
        "charging_sessions",
        **common,
        session_key="7002",
        token="TAG-2",
        started_at=T0 + timedelta(days=1),
        ended_at=T0 + timedelta(days=1, hours=1),
        cost="900",
        cost_excl_vat="720",
        flags=["energy_above_max"],
    )
    offline = seed(
        db,
        "charging_sessions",
        source="zaptec",
        provider="zaptec",
        status="ended",
        session_key="Z-9",
        token="TAG-2",
        started_at=T0 + timedelta(days=2),
        ended_at=T0 + timedelta(days=2, hours=1),
        flags=["unmatched"],
    )
    # A credit CDR for session 7001, as the fetch worker stores it.
    credit = sample_cdr(
        905, "7001", credit=True, total_cost=-12.5, currency="SEK", end="2025-12-05T10:00:00Z"
    )
    conn = sqlite3.connect(db)
    try:
        SqlViewTx(conn, "sqlite").insert(
            "reference_fetches",
            {
                "source": "ampeco",
                "kind": "cdr",
                "ref_id": "DE-AMP-0000000905",
                "id": new_id(),
                "event_id": new_id(),
                "status": "done",
                "attempts": 1,
                "next_at": T0,
                "fetched_at": T0,
                "document": msgspec.to_builtins(credit),
                "updated_at": T0,
            },
        )
        conn.commit()
    finally:
        conn.close()
    lost = _decision(db, "Z-LOST", "TAG-1")
    _decision(db, "7001", "TAG-1")  # its session arrived

    lines = list(csv.DictReader(io.StringIO(cli(config, "reconcile", "--month", "2025-12"))))
    by_id = {line["id"]: line for line in lines}
    assert by_id[booked["id"]]["section"] == "booked"
    assert by_id[booked["id"]]["legal_entity"] == "Fleet AB"
    assert by_id[flagged["id"]]["section"] == "flagged"
    assert by_id[flagged["id"]]["flags"] == "energy_above_max"
    credit_line = by_id["cdr:DE-AMP-0000000905"]
    assert (credit_line["section"], credit_line["total"], credit_line["references"]) == (
        "credit",
        "-12.50",
        booked["id"],
    )
    assert {line["kind"] for line in lines} == {"parking", "charging"}

    totals = list(
        csv.DictReader(
            io.StringIO(cli(config, "reconcile", "--month", "2025-12", "--part", "totals"))
        )
    )
    vehicle = {(t["dimension"], t["key"]): t for t in totals}
    # Parking 100 + charging 50 - credit 12.50; the flagged 900 is left out.
    abc = vehicle[("vehicle", "ABC123")]
    assert (abc["total"], abc["amount_excl_vat"], abc["lines"], abc["incomplete"]) == (
        "137.50",
        "120.00",
        "3",
        "1",
    )
    assert vehicle[("legal_entity", "Fleet AB")]["total"] == "137.50"
    # Both of XYZ789's sessions are flagged (energy, offline): none is in the totals.
    assert ("vehicle", "XYZ789") not in vehicle
    assert by_id[offline["id"]]["section"] == "flagged"

    exceptions = list(
        csv.DictReader(
            io.StringIO(cli(config, "reconcile", "--month", "2025-12", "--part", "exceptions"))
        )
    )
    assert [(e["problem"], e["id"]) for e in exceptions] == [
        ("decision_without_session", lost),
        ("unauthorized_session", offline["id"]),
    ]

    document = json.loads(cli(config, "reconcile", "--month", "2025-12", "--format", "json"))
    assert set(document) == {"month", "timezone", "lines", "totals", "exceptions"}
    assert len(document["lines"]) == len(lines)

    bad = run_cli("reconcile", "--month", "12/2025", "--config", str(config), check=False)
    assert bad.returncode == 2 and "--month" in bad.stderr

    # The same through the admin API.
    with serving(config) as server:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answer = httpx.get(
            f"{server.url}/api/v1/reconciliation",
            params={"month": "2025-12"},
            headers=headers,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == document
        part = httpx.get(
            f"{server.url}/api/v1/reconciliation",
            params={"month": "2025-12", "format": "csv", "part": "exceptions"},
            headers=headers,
            timeout=10,
        )
        assert part.status_code == 200
        assert part.headers["content-type"].startswith("text/csv")
        assert list(csv.DictReader(io.StringIO(part.text))) == exceptions
        refused = httpx.get(
            f"{server.url}/api/v1/reconciliation",
            params={"month": "2025-13"},
            headers=headers,
            timeout=10,
        )
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"


def test_failed_fetches_are_listed_and_requeued(config: Path) -> None:
    db = db_path(config.parent)
    conn = sqlite3.connect(db)
    try:
        tx = SqlViewTx(conn, "sqlite")
        for ref_id, status, error in (("1", "failed", "HTTP 404: gone"), ("2", "done", None)):
            tx.insert(
                "reference_fetches",
                {
                    "source": "ampeco",
                    "kind": "transaction",
                    "ref_id": ref_id,
                    "id": new_id(),
                    "event_id": new_id(),
                    "status": status,
                    "attempts": 1,
                    "next_at": T0,
                    "last_error": error,
                    "updated_at": T0,
                },
            )
        conn.commit()
    finally:
        conn.close()
    listed = json.loads(cli(config, "fetches", "list", "--status", "failed", "--json"))
    assert listed["counts"] == {"done": 1, "failed": 1}
    assert [(i["ref_id"], i["last_error"]) for i in listed["items"]] == [("1", "HTTP 404: gone")]
    assert "failed   ampeco transaction 1 attempts=1 HTTP 404: gone" in cli(
        config, "fetches", "list"
    )
    assert cli(config, "fetches", "requeue", "--source", "ampeco").strip() == "requeued 1"
    after = json.loads(cli(config, "fetches", "list", "--json"))
    assert after["counts"] == {"done": 1, "pending": 1}
    (pending,) = [i for i in after["items"] if i["status"] == "pending"]
    assert (pending["ref_id"], pending["attempts"]) == ("1", 0)
