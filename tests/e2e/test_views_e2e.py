"""Domain views filled by a real gateway: provider calls over HTTP, processing in the
gateway's own worker, rows read back from its database and its admin API."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from hookgate.emulate.ampeco_samples import session_sequence
from hookgate.emulate.base import sign
from hookgate.store.viewtx import SqlViewTx
from support.gateway import (
    AMPECO_NEW,
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    ZAPTEC_PASSWORD,
    ZAPTEC_USER,
    ZTLMENT_SECRET,
    Running,
)
from support.polling import until

FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"


def fixture_body(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / f"{name}.json").read_bytes()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def processed(gateway: Running, timeout: float = 20) -> None:
    """Wait until the gateway's worker has processed every stored event."""
    until(lambda: not gateway.count("inbox", "status = 'received'"), "processing", timeout)
    assert gateway.count("inbox", "status = 'failed'") == 0


def view(gateway: Running, table: str, **where: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(gateway.db)
    try:
        return SqlViewTx(conn, "sqlite").select(table, where)
    finally:
        conn.close()


def send_ampeco(client: httpx.Client, document: dict[str, Any], indent: int | None = None) -> None:
    body = json.dumps(document, indent=indent).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": sign(body, AMPECO_NEW, "sha256", "hex"),
    }
    assert client.post("/hooks/ampeco", content=body, headers=headers).status_code == 202


def test_provider_calls_become_views(gateway: Running) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        # Zaptec: an approved start, then its end naming the sessionId hookgate issued.
        token = client.post(
            "/hooks/zaptec-allow/oauth/token",
            data={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
        ).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        start = client.post(
            "/hooks/zaptec-allow/session-start",
            content=fixture_body("zaptec", "start_pascal"),
            headers={**bearer, "Content-Type": "application/json"},
        )
        assert start.status_code == 200, start.text
        session_id = start.json()["sessionId"]
        end = json.loads(fixture_body("zaptec", "end_pascal"))
        end["SessionId"] = session_id
        assert client.post("/hooks/zaptec-allow/session-end", json=end, headers=bearer).is_success

        # AMPECO: a whole session, out of order, with the stop re-sent as other bytes.
        bodies = session_sequence(184210, 117, 341, "04A1B2C3D40000")
        for index in (6, 2, 0, 5, 1, 7, 4, 3):
            send_ampeco(client, bodies[index])
        send_ampeco(client, bodies[6], indent=2)

        # EasyPark: a VAT split that does not add up.
        parked = client.post(
            "/hooks/easypark",
            content=fixture_body("easypark", "inconsistent"),
            headers={"Content-Type": "application/json"},
            auth=(EASYPARK_USER, EASYPARK_PASSWORD),
        )
        assert parked.status_code == 200

        # ZTLment: PROCESSED overtakes the payment's pending states.
        for state in ("PENDING_COMPLIANCE_CHECKS", "PROCESSED", "PENDING_PAYMENT"):
            body = fixture_body("ztlment", state)
            signature = sign(body, ZTLMENT_SECRET, "sha512", "base64")
            assert client.post(
                "/hooks/ztlment",
                content=body,
                headers={"Content-Type": "application/json", "X-Payload-Signature": signature},
            ).is_success

    processed(gateway)

    [zaptec] = view(gateway, "charging_sessions", source="zaptec-allow")
    assert (zaptec["session_key"], zaptec["status"], zaptec["energy_kwh"]) == (
        session_id,
        "ended",
        "12.345",
    )
    assert (zaptec["started_at"], zaptec["ended_at"]) == (
        at("2025-12-04T12:02:37Z"),
        at("2025-12-04T14:10:05Z"),
    )
    # The end's start (the fixture's date) is far from the moment hookgate approved it.
    assert len(zaptec["event_ids"]) == 2 and zaptec["flags"] == ["start_far_from_approved"]

    [ampeco] = view(gateway, "charging_sessions", source="ampeco")
    assert {k: ampeco[k] for k in ("session_key", "status", "energy_kwh", "cost", "currency")} == {
        "session_key": "184210",
        "status": "ended",
        "energy_kwh": "10.32",
        "cost": "5.02",
        "currency": "EUR",
    }
    assert len(ampeco["event_ids"]) == 8  # seven reports and the stop sent again
    assert len(view(gateway, "meter_values", session_key="184210")) == 15
    [cdr] = view(gateway, "provider_refs", kind="cdr")
    assert cdr["ref_id"] == "DE-AMP-0000184210"

    [parking] = view(gateway, "parking_transactions")
    assert (parking["price_excl_vat"], parking["consistent"], parking["flags"]) == (
        "19.96",
        False,
        ["price_inconsistent"],
    )

    [payment] = view(gateway, "payment_objects")
    assert (payment["state"], payment["final"], payment["flags"]) == (
        "PROCESSED",
        True,
        ["out_of_order"],
    )
    states = sorted(view(gateway, "payment_states"), key=lambda s: s["event_id"])
    assert [(s["state"], s["applied"], s["out_of_order"]) for s in states] == [
        ("PENDING_COMPLIANCE_CHECKS", True, False),
        ("PROCESSED", True, False),
        ("PENDING_PAYMENT", False, True),
    ]

    with gateway.admin() as admin:
        listed = admin.get("/api/v1/charging-sessions", params={"source": "ampeco"})
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["energy_kwh"], item["ended_at"]) == ("10.32", "2025-12-04T13:00:00.000000Z")
