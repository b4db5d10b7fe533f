"""Schema drift: an authentic body that breaks our schema is kept, never lost.

AMPECO and ZTLment quarantine by default (stored raw, answered as accepted, flagged
`schema_mismatch` with the violation, out of the views, counted, listed, reprocessable);
EasyPark keeps rejecting with 422 because it retries hourly until accepted.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from hookgate.config import parse_config
from hookgate.providers import ampeco_catalog as catalog
from hookgate.providers.base import violation
from support.contract import (
    ampeco_headers,
    compact,
    fixture_doc,
    inbox,
    ztlment_headers,
)
from support.gateway import AMPECO_NEW, Running
from support.polling import until

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def drifted_stop() -> bytes:
    """A session stop as a later AMPECO version may send it: no `meterStop`."""
    doc = fixture_doc("ampeco", "SessionStartStopNotification")
    del doc["meterStop"]
    doc["futureField"] = {"kind": "new"}
    return compact(doc)


def post_ampeco(client: httpx.Client, body: bytes, secret: str = AMPECO_NEW) -> httpx.Response:
    return client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body, secret))


def settle(gateway: Running) -> None:
    """Wait (bounded) until the in-process worker has processed what it can."""
    until(lambda: not gateway.count("inbox", "status = 'received'"), timeout=15, what="processing")


def mismatch_count(gateway: Running, source: str, event_type: str) -> float:
    name = "hookgate_schema_mismatches_total"
    wanted = f'{name}{{event_type="{event_type}",source="{source}"}}'
    for line in httpx.get(f"{gateway.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


def test_signed_ampeco_body_missing_a_required_field_is_quarantined_not_lost(
    gateway: Running, client: httpx.Client
) -> None:
    body = drifted_stop()
    response = post_ampeco(client, body)
    assert response.status_code == 202, response.text
    assert response.json() == {}

    (row,) = inbox(gateway, "ampeco")
    assert row["raw_body"] == body
    assert row["status"] == "quarantined"
    assert row["flags"] == ["schema_mismatch"]
    assert row["event_type"] == "SessionStartStopNotification"
    assert row["document"]["violation"] == "$.meterStop: required"
    # The same key a valid body gets (the body hash): AMPECO's resend is a duplicate.
    assert row["dedup_key"] == hashlib.sha256(body).hexdigest()
    assert post_ampeco(client, body).status_code == 202
    assert len(inbox(gateway, "ampeco")) == 1
    assert mismatch_count(gateway, "ampeco", "SessionStartStopNotification") == 2

    settle(gateway)
    assert inbox(gateway, "ampeco")[0]["status"] == "quarantined"
    assert gateway.admin().get("/api/v1/charging-sessions").json()["items"] == []


def test_nested_violation_names_its_path(gateway: Running, client: httpx.Client) -> None:
    doc = fixture_doc("ampeco", "SessionUpdateNotification")
    del doc["session"]["energy"]
    doc["session"]["chargePointId"] = "117"
    body = compact(doc)
    assert post_ampeco(client, body).status_code == 202
    (row,) = inbox(gateway, "ampeco")
    assert row["status"] == "quarantined"
    assert row["document"]["violation"] in {
        "$.session.energy: required",
        "$.session.chargePointId: expected int, got str",
    }


def test_unauthenticated_body_is_never_quarantined(gateway: Running, client: httpx.Client) -> None:
    body = drifted_stop()
    response = post_ampeco(client, body, secret="not-the-token")
    assert response.status_code == 401
    assert inbox(gateway, "ampeco") == []
    response = client.post(
        "/hooks/ampeco", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert inbox(gateway, "ampeco") == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/hooks/ampeco", ampeco_headers),
        ("/hooks/ztlment", ztlment_headers),
    ],
)
def test_malformed_json_stays_400(
    gateway: Running, client: httpx.Client, path: str, headers: Any
) -> None:
    body = b'{"notification": "BootNotification",'
    response = client.post(path, content=body, headers=headers(body))
    assert response.status_code == 400
    assert gateway.count("inbox") == 0


def test_operator_lists_quarantined_events_and_reprocesses_after_an_upgrade(
    gateway: Running, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = drifted_stop()
    assert post_ampeco(client, body).status_code == 202
    admin = gateway.admin()
    (item,) = admin.get("/api/v1/events", params={"status": "quarantined"}).json()["items"]
    assert item["flags"] == ["schema_mismatch"]
    assert item["document"]["violation"] == "$.meterStop: required"
    event_id = item["id"]

    # Before the upgrade the schema still refuses it, and it stays quarantined.
    still = admin.post(f"/api/v1/events/{event_id}/reprocess")
    assert still.status_code == 422, still.text
    assert "meterStop" in still.json()["detail"]

    # The upgrade: a catalog in which `meterStop` is optional (as the later AMPECO sends).
    class Upgraded(catalog.SessionStartStopNotification, kw_only=True):
        meterStop: int | None = None  # type: ignore[assignment]

    monkeypatch.setitem(catalog.EVENTS, "SessionStartStopNotification", Upgraded)
    done = admin.post(f"/api/v1/events/{event_id}/reprocess")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "queued"
    settle(gateway)
    (row,) = inbox(gateway, "ampeco")
    assert row["status"] == "processed"
    assert "schema_mismatch" not in row["flags"]
    (session,) = admin.get("/api/v1/charging-sessions").json()["items"]
    assert session["status"] == "ended"
    assert session["energy_kwh"] is not None


def test_ztlment_drift_is_quarantined_with_the_object_key(
    gateway: Running, client: httpx.Client
) -> None:
    body = compact({"id": "48213", "type": "PAYMENT_OBJECT", "state": "PROCESSED"})
    response = client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body))
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "ztlment")
    assert row["status"] == "quarantined"
    assert row["flags"] == ["schema_mismatch"]
    assert row["event_type"] == "payment.processed"
    assert row["dedup_key"] == "PAYMENT_OBJECT:48213:PROCESSED"
    assert row["document"]["violation"] == "$.id: expected int, got str"
    # A resend of the same state, even formatted differently, stays one event.
    again = compact({"state": "PROCESSED", "type": "PAYMENT_OBJECT", "id": "48213"})
    assert (
        client.post("/hooks/ztlment", content=again, headers=ztlment_headers(again)).status_code
        == 200
    )
    assert len(inbox(gateway, "ztlment")) == 1

    new_type = compact({"id": 7, "type": "REFUND_OBJECT", "state": "PROCESSED"})
    assert (
        client.post(
            "/hooks/ztlment", content=new_type, headers=ztlment_headers(new_type)
        ).status_code
        == 200
    )
    row = inbox(gateway, "ztlment", new_type)[0]
    assert (row["status"], row["dedup_key"]) == ("quarantined", "REFUND_OBJECT:7:PROCESSED")
    assert row["document"]["violation"] == "$.type: invalid enum value 'REFUND_OBJECT'"
    settle(gateway)
    assert gateway.admin().get("/api/v1/payments").json()["items"] == []


def test_without_a_derivable_key_the_body_hash_is_the_key(
    gateway: Running, client: httpx.Client
) -> None:
    body = compact({"id": 7, "state": "PROCESSED"})
    assert (
        client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body)).status_code
        == 200
    )
    (row,) = inbox(gateway, "ztlment")
    assert row["event_type"] == "invalid"
    assert row["dedup_key"] == "quarantine:" + hashlib.sha256(body).hexdigest()
    assert (
        client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body)).status_code
        == 200
    )
    assert len(inbox(gateway, "ztlment")) == 1


def test_quarantine_is_the_default_for_ampeco_and_ztlment_only() -> None:
    config = parse_config(
        {
            "sources": [
                {"name": "a", "provider": "ampeco", "secrets": ["s"]},
                {"name": "z", "provider": "ztlment", "secrets": ["s"]},
                {"name": "e", "provider": "easypark", "username": "u", "password": "p"},
                {"name": "a2", "provider": "ampeco", "secrets": ["s"], "on_invalid": "reject"},
            ]
        },
        env={},
    )
    assert [s.on_invalid for s in config.sources] == [
        "quarantine",
        "quarantine",
        "reject",
        "reject",
    ]


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (
            "Object missing required field `meterStop` - at `$.session`",
            "$.session.meterStop: required",
        ),
        ("Object missing required field `id`", "$.id: required"),
        (
            "Expected `int`, got `str` - at `$.session.chargingPeriods[0].id`",
            "$.session.chargingPeriods[0].id: expected int, got str",
        ),
        ("Expected `object`, got `array`", "$: expected object, got array"),
        ("state must not be empty", "$: state must not be empty"),
    ],
)
def test_violation_is_path_and_rule(detail: str, expected: str) -> None:
    assert violation(detail) == expected
