"""ZTLment contract over HTTP: signed object states get 200, dedup on (type, id, state)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest

from support.contract import (
    FIXTURES,
    assert_problem,
    compact,
    fixture_bytes,
    fixture_doc,
    inbox,
    ztlment_headers,
)
from support.gateway import ZTLMENT_SECRET, Running

pytestmark = pytest.mark.backends("sqlite", "postgresql")

# The current list from ZTLment's docs, plus PROCESSING_IBAN from older pages.
STATES = (
    "PENDING_COMPLIANCE_CHECKS",
    "REJECTED_COMPLIANCE",
    "PENDING_APPROVAL",
    "REJECTED_APPROVAL",
    "PENDING_SIGNING",
    "REJECTED_SIGNING",
    "PENDING_PAYMENT",
    "INITIATED_PAYMENT",
    "PROCESSING_PAYMENT",
    "PROCESSED",
    "FAILED",
    "REVERSED",
    "PROCESSING_IBAN",
)


def post(gateway: Running, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/hooks/ztlment",
        content=body,
        headers=headers if headers is not None else ztlment_headers(body),
        timeout=10,
    )


def test_there_is_a_payment_object_fixture_for_every_state() -> None:
    found = {p.stem for p in (FIXTURES / "ztlment").glob("*.json") if p.stem.isupper()}
    assert found == set(STATES)
    for state in STATES:
        doc = fixture_doc("ztlment", state)
        assert doc == {"id": doc["id"], "type": "PAYMENT_OBJECT", "state": state}


@pytest.mark.parametrize("state", STATES)
def test_every_known_state_is_accepted_with_200_and_stored(
    shared_gateway: Running, state: str
) -> None:
    body = fixture_bytes("ztlment", state)
    response = post(shared_gateway, body)
    assert response.status_code == 200, response.text
    (row,) = inbox(shared_gateway, "ztlment", body)
    assert row["event_type"] == f"payment.{state.lower()}"
    assert row["raw_body"] == body
    assert row["status"] in {"received", "processed"}  # processing follows the answer
    assert "unknown_state" not in row["flags"]
    assert row["document"]["id"] == 48213
    assert row["document"]["state"] == state


def test_processed_payment_has_event_type_payment_processed(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("ztlment", "PROCESSED")
    assert (
        client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body)).status_code
        == 200
    )
    assert inbox(gateway, "ztlment")[0]["event_type"] == "payment.processed"


def test_approval_object_is_accepted(gateway: Running, client: httpx.Client) -> None:
    body = fixture_bytes("ztlment", "approval_object")
    response = client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body))
    assert response.status_code == 200
    (row,) = inbox(gateway, "ztlment")
    assert row["event_type"] == "approval.pending_approval"
    assert row["document"]["type"] == "APPROVAL_OBJECT"


def test_same_type_id_and_state_twice_gets_200_and_is_stored_once(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("ztlment", "PENDING_PAYMENT")
    # The same notification re-serialised: different bytes, same (type, id, state).
    dense = compact(json.loads(body))
    assert dense != body
    for payload in (body, body, dense):
        response = client.post("/hooks/ztlment", content=payload, headers=ztlment_headers(payload))
        assert response.status_code == 200
    assert gateway.count("inbox", "source = 'ztlment'") == 1


def test_state_history_keeps_one_row_per_state(gateway: Running, client: httpx.Client) -> None:
    for state in ("PENDING_COMPLIANCE_CHECKS", "PENDING_APPROVAL", "PROCESSED"):
        body = fixture_bytes("ztlment", state)
        assert (
            client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body)).status_code
            == 200
        )
    assert gateway.count("inbox", "source = 'ztlment'") == 3


def test_same_id_and_state_of_another_object_type_is_not_a_duplicate(
    gateway: Running, client: httpx.Client
) -> None:
    payment = compact({"id": 9120, "type": "PAYMENT_OBJECT", "state": "PENDING_APPROVAL"})
    approval = fixture_bytes("ztlment", "approval_object")
    for body in (payment, approval):
        assert (
            client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body)).status_code
            == 200
        )
    assert gateway.count("inbox", "source = 'ztlment'") == 2


def test_unknown_future_state_is_accepted_and_flagged(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("ztlment", "unknown_state")
    state = fixture_doc("ztlment", "unknown_state")["state"]
    assert state not in STATES
    response = client.post("/hooks/ztlment", content=body, headers=ztlment_headers(body))
    assert response.status_code == 200, response.text
    (row,) = inbox(gateway, "ztlment")
    assert "unknown_state" in row["flags"]
    assert row["document"]["state"] == state
    assert row["raw_body"] == body


@pytest.mark.parametrize("encoding", ["hex", "hex-upper", "base64"])
def test_hex_and_base64_signatures_are_accepted(
    gateway: Running, client: httpx.Client, encoding: str
) -> None:
    body = fixture_bytes("ztlment", "INITIATED_PAYMENT")
    headers = ztlment_headers(body, encoding="base64" if encoding == "base64" else "hex")
    if encoding == "hex-upper":
        headers["X-Payload-Signature"] = headers["X-Payload-Signature"].upper()
    assert client.post("/hooks/ztlment", content=body, headers=headers).status_code == 200
    assert gateway.count("inbox", "source = 'ztlment'") == 1


def test_sha256_signature_is_refused(gateway: Running, client: httpx.Client) -> None:
    body = fixture_bytes("ztlment", "PROCESSED")
    digest = hmac.new(ZTLMENT_SECRET.encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "X-Payload-Signature": base64.b64encode(digest).decode(),
    }
    assert_problem(client.post("/hooks/ztlment", content=body, headers=headers), 401)
    assert gateway.count("inbox") == 0
