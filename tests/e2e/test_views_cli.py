"""The views, deliveries, destinations, replay, export and re-run commands, run as
`hookgate ...` subprocesses against a config file and its SQLite database."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import hmac
import io
import json
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from hookgate.config import parse_config
from hookgate.domain.events import InboundEvent, Rejection, StoredEvent
from hookgate.ids import new_id
from hookgate.oauth import TokenIssuer
from hookgate.providers import build_providers
from hookgate.store.base import ViewTx
from hookgate.store.sqlite import SqliteStore
from support.e2e import db_path, migrate, run_cli, serving, write_config
from support.gateway import AMPECO_NEW, EASYPARK_USER
from support.views import T0, seed

pytestmark = pytest.mark.e2e
T = TypeVar("T")
FIXTURES = Path(__file__).parents[1] / "contract" / "fixtures"
DESTINATIONS = [
    {
        "name": "erp",
        "kind": "http",
        "url": "http://127.0.0.1:9/hook",
        "secret": "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
    },
    {"name": "lake", "kind": "http", "url": "http://127.0.0.1:9/lake"},
]
AUTHORIZATION = {
    "timezone": "Europe/Stockholm",
    "tokens": [{"uid": "tag-1", "driver": "Anna Berg", "vehicle": "ABC123", "cost_centre": "CC-1"}],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, destinations=DESTINATIONS, authorization=AUTHORIZATION)
    migrate(path)
    return path


def cli(config: Path, *args: str, ok: bool = True) -> str:
    """stdout of one command, or stderr when it must fail."""
    result = run_cli(*args, "--config", str(config), check=False)
    assert result.returncode == (0 if ok else 1), f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout if ok else result.stderr


def with_store(config: Path, work: Callable[[SqliteStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteStore(str(db_path(config.parent)))
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def test_view_listings_and_details(config: Path) -> None:
    db = db_path(config.parent)
    session = seed(
        db,
        "charging_sessions",
        session_key="s1",
        charger_id="CH-1",
        token="TAG-1",
        started_at=T0,
        ended_at=T0 + timedelta(hours=1),
        energy_kwh="10.5",
        cost="52.50",
        cost_excl_vat="42.00",
        currency="SEK",
    )
    seed(db, "charging_sessions", session_key="s2", charger_id="CH-2", started_at=T0)
    seed(db, "meter_values", session_key="s1", at=T0, measurand="Energy", value="1", unit="kWh")
    parking = seed(db, "parking_transactions", parking_id="p1", license_number="ABC123")
    payment = seed(db, "payment_objects", object_id="pay-1")
    seed(db, "payment_states", event_id=new_id(), object_id="pay-1", state="PENDING_PAYMENT")
    point = seed(db, "charge_points", charge_point_id="117", network_status="online")
    seed(db, "evses", evse_id="341", charge_point_id="117")

    listed = json.loads(cli(config, "sessions", "list", "--charger", "CH-1", "--json"))
    assert [i["session_key"] for i in listed["items"]] == ["s1"]
    text = cli(config, "sessions", "list", "--limit", "1")
    assert "more: --cursor" in text
    shown = json.loads(cli(config, "sessions", "show", session["id"]))
    assert shown["meter_values"][0]["value"] == "1"
    assert "no charging session" in cli(config, "sessions", "show", "nope", ok=False)
    bad = run_cli("sessions", "list", "--since", "soon", "--config", str(config), check=False)
    assert bad.returncode == 2 and "--since" in bad.stderr

    assert parking["id"] in cli(config, "parking", "list", "--plate", "ABC123")
    history = json.loads(cli(config, "payments", "show", payment["id"]))["history"]
    assert [h["state"] for h in history] == ["PENDING_PAYMENT"]
    assert point["id"] in cli(config, "charge-points", "list", "--network-status", "online")
    evses = json.loads(cli(config, "charge-points", "show", point["id"]))["evses"]
    assert [e["evse_id"] for e in evses] == ["341"]


def test_listings_show_and_filter_anomaly_flags(config: Path) -> None:
    db = db_path(config.parent)
    flagged = seed(
        db,
        "charging_sessions",
        session_key="s1",
        started_at=T0,
        flags=["energy_above_max", "parked_while_charging"],
    )
    seed(db, "charging_sessions", session_key="s2", started_at=T0 + timedelta(hours=1))
    stay = seed(db, "parking_transactions", parking_id="p1", flags=["parked_while_charging"])
    plain = seed(db, "parking_transactions", parking_id="p2")

    table = cli(config, "sessions", "list").splitlines()
    assert "FLAGS" in table[0]
    [row] = [line for line in table if flagged["id"] in line]
    assert row.rstrip().endswith("energy_above_max,parked_while_charging")
    only = cli(config, "sessions", "list", "--flag", "energy_above_max", "--json")
    assert [i["id"] for i in json.loads(only)["items"]] == [flagged["id"]]
    shown = json.loads(cli(config, "sessions", "show", flagged["id"]))
    assert shown["flags"] == ["energy_above_max", "parked_while_charging"]
    parked = cli(config, "parking", "list", "--flag", "parked_while_charging")
    assert stay["id"] in parked and "parked_while_charging" in parked
    assert plain["id"] not in parked
    bad = run_cli("sessions", "list", "--flag", "huge", "--config", str(config), check=False)
    assert bad.returncode == 2 and "energy_above_max" in bad.stderr  # the choices are named


def test_deliveries_destinations_and_replay(config: Path) -> None:
    async def processed(store: SqliteStore) -> str:
        event = InboundEvent(
            id=new_id(),
            source="easypark",
            provider="easypark",
            event_type="parking.completed",
            received_at=datetime.now(UTC),
            dedup_key="parking:1",
            raw_body=b"{}",
            body_sha256="00",
            headers={},
            document={},
        )
        await store.ingest(event)

        def handler(tx: ViewTx, ev: StoredEvent) -> list[str]:
            return ["erp"]

        await store.process_pending(handler, 10)
        return event.id

    event_id = with_store(config, processed)
    listed = json.loads(cli(config, "deliveries", "list", "--event", event_id, "--json"))
    (delivery,) = listed["items"]
    assert (delivery["destination"], delivery["status"]) == ("erp", "pending")
    shown = json.loads(cli(config, "deliveries", "show", delivery["id"]))
    assert shown["history"] == []

    cli(config, "destinations", "disable", "erp", "--reason", "maintenance")
    listed_json = cli(config, "destinations", "list", "--json")
    assert "whsec_" not in listed_json
    (erp, _) = json.loads(listed_json)["items"]
    assert (erp["disabled"], erp["disabled_reason"]) == (True, "maintenance")
    cli(config, "destinations", "enable", "erp")
    assert "enabled" in cli(config, "destinations", "list").splitlines()[1]

    assert cli(config, "replay", event_id).strip() == "queued 1"
    assert cli(config, "replay", event_id, "--destination", "lake").strip() == "queued 1"
    assert cli(config, "replay", "--source", "easypark", "--status", "pending") == "queued 2\n"
    refused = run_cli("replay", "--config", str(config), check=False)
    assert refused.returncode == 2 and "EVENT_ID" in refused.stderr


def test_export_csv_json_and_totals(config: Path, tmp_path: Path) -> None:
    db = db_path(config.parent)
    seed(
        db,
        "parking_transactions",
        parking_id="p1",
        ended_at=T0,
        fee="5",
        fee_vat="1",
        fee_excl_vat="4",
    )
    seed(
        db,
        "charging_sessions",
        session_key="s1",
        token="TAG-1",
        ended_at=T0,
        cost="50",
        cost_excl_vat="40",
        currency="SEK",
    )
    rows = list(csv.DictReader(io.StringIO(cli(config, "export", "--month", "2025-12"))))
    assert [(r["kind"], r["vehicle"], r["driver"], r["total"]) for r in rows] == [
        ("parking", "ABC123", "Anna Berg", "105.00"),
        ("charging", "ABC123", "Anna Berg", "50.00"),
    ]
    totals = list(
        csv.DictReader(io.StringIO(cli(config, "export", "--month", "2025-12", "--totals")))
    )
    assert [(t["vehicle"], t["total"], t["vat"]) for t in totals] == [("ABC123", "155.00", "31.00")]
    out = tmp_path / "costs.csv"
    cli(config, "export", "--month", "2025-12", "-o", str(out))
    assert out.read_bytes().startswith(b"kind,id,date,vehicle,")
    bad = run_cli("export", "--month", "12/2025", "--config", str(config), check=False)
    assert bad.returncode == 2 and "--month" in bad.stderr


def signed_ampeco(body: bytes, secret: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
    }


def test_reprocess_and_rerun_against_a_served_gateway(config: Path) -> None:
    with serving(config) as server:
        invalid = httpx.post(
            f"{server.url}/hooks/easypark-q",
            json={"parkingId": "not-a-number"},
            auth=(EASYPARK_USER, "wrong"),
        )
        assert invalid.status_code == 401
        rejected = json.loads(cli(config, "rejections", "list", "--json"))["items"][0]
        quarantine_body = json.dumps({"parkingId": []}).encode()
        headers = {"Content-Type": "application/json"}
        stored = httpx.post(
            f"{server.url}/hooks/easypark-q",
            content=quarantine_body,
            headers=headers,
            auth=(EASYPARK_USER, "park:ing-secret"),
        )
        assert stored.status_code < 300, stored.text
    (event,) = json.loads(cli(config, "events", "list", "--status", "quarantined", "--json"))[
        "items"
    ]
    listed = cli(config, "events", "list", "--status", "quarantined")
    assert event["id"] in listed and "schema_mismatch" in listed
    assert "$.parkingId: expected int, got array" in listed

    still = cli(config, "events", "reprocess", event["id"], ok=False)
    assert "still-invalid" in still
    refused = cli(config, "rejections", "rerun", rejected["id"], ok=False)
    assert "no-replay-copy" in refused and "never stored" in refused

    # A call AMPECO signed with a secret added to the config only later.
    body = (FIXTURES / "ampeco" / "SessionStartStopNotification.json").read_bytes()
    parsed = parse_config(
        {"sources": [{"name": "ampeco", "provider": "ampeco", "secrets": ["s"]}]}, env={}
    )
    source = parsed.source("ampeco")
    assert source is not None
    provider = build_providers(TokenIssuer(os.urandom(32)))["ampeco"]

    async def refuse(store: SqliteStore) -> str:
        rejection = Rejection(
            id=new_id(),
            received_at=datetime.now(UTC),
            source="ampeco",
            provider="ampeco",
            method="POST",
            path="/hooks/ampeco",
            status=401,
            reason="unauthorized",
            detail="the X-Signature signature does not match the body",
            headers={},
            remote=None,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_size=len(body),
            body=body,
            replay=provider.replay_copy(source, signed_ampeco(body, AMPECO_NEW), body),
        )
        await store.record_rejection(rejection)
        return rejection.id

    rejection_id = with_store(config, refuse)
    result: dict[str, Any] = json.loads(cli(config, "rejections", "rerun", rejection_id, "--json"))
    assert result["status"] == "stored"
    shown = json.loads(cli(config, "events", "show", result["event_id"]))
    assert shown["type"] == "SessionStartStopNotification"
    assert base64.b64encode(body) and shown["raw_body"] == body.decode()
    again = cli(config, "rejections", "rerun", rejection_id, ok=False)
    assert "already-rerun" in again
