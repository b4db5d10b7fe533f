"""AMPECO contract over HTTP: signed notifications get 202 `{}` and are stored once."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from support.contract import (
    FIXTURES,
    ampeco_headers,
    compact,
    fixture_bytes,
    fixture_doc,
    inbox,
)
from support.gateway import AMPECO_NEW, AMPECO_OLD, Running

pytestmark = pytest.mark.backends("sqlite", "postgresql")

NAMES = sorted(p.stem for p in (FIXTURES / "ampeco").glob("*.json"))


def same_except_nulls(document: Any, original: Any, where: str = "$") -> None:
    """`document` is `original` parsed: equal, except that null members may be left out."""
    if isinstance(original, dict):
        assert isinstance(document, dict), where
        assert set(document) <= set(original), f"{where}: extra {set(document) - set(original)}"
        for key, value in original.items():
            if key in document:
                same_except_nulls(document[key], value, f"{where}.{key}")
            else:
                assert value is None, f"{where}.{key} was dropped"
    elif isinstance(original, list):
        assert isinstance(document, list) and len(document) == len(original), where
        for i, (a, b) in enumerate(zip(document, original, strict=True)):
            same_except_nulls(a, b, f"{where}[{i}]")
    else:
        assert document == original, where


def test_there_is_one_fixture_per_notification_type() -> None:
    assert len(NAMES) == 39
    for name in NAMES:
        assert fixture_doc("ampeco", name)["notification"] == name


@pytest.mark.parametrize("name", NAMES)
def test_signed_notification_is_accepted_with_202_and_stored_verbatim(
    shared_gateway: Running, name: str
) -> None:
    gateway = shared_gateway
    body = fixture_bytes("ampeco", name)
    response = httpx.post(
        f"{gateway.url}/hooks/ampeco", content=body, headers=ampeco_headers(body), timeout=10
    )
    assert response.status_code == 202, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {}

    (row,) = inbox(gateway, "ampeco", body)
    assert row["event_type"] == name
    assert row["raw_body"] == body
    assert row["status"] in {"received", "processed"}  # processing follows the answer
    assert "unknown_type" not in row["flags"]
    same_except_nulls(row["document"], json.loads(body))
    assert row["document"]["notification"] == name
    assert row["subject"]
    assert row["headers"]["x-tenant"] == "acme-charging"
    assert row["headers"]["x-timestamp"] == "2025-12-04T13:01:02Z"


def test_deprecated_notification_is_accepted_and_flagged(
    gateway: Running, client: httpx.Client
) -> None:
    body = fixture_bytes("ampeco", "SessionStartStopNotification")
    response = client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body))
    assert response.status_code == 202
    (row,) = inbox(gateway, "ampeco")
    assert "deprecated_type" in row["flags"]


def test_duplicate_body_gets_202_and_is_stored_once(gateway: Running, client: httpx.Client) -> None:
    body = fixture_bytes("ampeco", "session.start.stop.notification")
    first = client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body))
    again = client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body))
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == {}
    assert gateway.count("inbox", "source = 'ampeco'") == 1


def test_same_event_with_different_bytes_is_a_new_delivery(
    gateway: Running, client: httpx.Client
) -> None:
    pretty = fixture_bytes("ampeco", "cdr.received")
    dense = compact(json.loads(pretty))
    for body in (pretty, dense):
        assert (
            client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body)).status_code
            == 202
        )
    assert gateway.count("inbox", "source = 'ampeco'") == 2


def test_unknown_future_notification_type_is_accepted_and_flagged(
    gateway: Running, client: httpx.Client
) -> None:
    body = compact(
        {
            "notification": "session.paused.notification",
            "sessionId": 184210,
            "chargePointId": 117,
            "pausedAt": "2025-12-04T12:40:00Z",
            "reason": "grid-operator-request",
        }
    )
    response = client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body))
    assert response.status_code == 202
    assert response.json() == {}
    (row,) = inbox(gateway, "ampeco")
    assert row["event_type"] == "session.paused.notification"
    assert "unknown_type" in row["flags"]
    assert row["raw_body"] == body
    assert row["document"]["reason"] == "grid-operator-request"


@pytest.mark.parametrize("secret", [AMPECO_OLD, AMPECO_NEW], ids=["old", "new"])
def test_either_rotated_api_token_verifies(
    gateway: Running, client: httpx.Client, secret: str
) -> None:
    body = fixture_bytes("ampeco", "evse.changed")
    response = client.post("/hooks/ampeco", content=body, headers=ampeco_headers(body, secret))
    assert response.status_code == 202
    assert gateway.count("inbox", "source = 'ampeco'") == 1


@pytest.mark.parametrize(
    "transform",
    [
        lambda sig_hex, sig_b64: sig_hex.lower(),
        lambda sig_hex, sig_b64: sig_hex.upper(),
        lambda sig_hex, sig_b64: sig_b64,
        lambda sig_hex, sig_b64: "sha256=" + sig_hex,
        lambda sig_hex, sig_b64: "sha256=" + sig_b64,
    ],
    ids=["hex-lower", "hex-upper", "base64", "prefixed-hex", "prefixed-base64"],
)
def test_signature_encodings_are_accepted(
    gateway: Running, client: httpx.Client, transform: Any
) -> None:
    body = fixture_bytes("ampeco", "NetworkStatusNotification")
    sig_hex = ampeco_headers(body)["X-Signature"]
    sig_b64 = ampeco_headers(body, encoding="base64")["X-Signature"]
    headers = {"Content-Type": "application/json", "X-Signature": transform(sig_hex, sig_b64)}
    response = client.post("/hooks/ampeco", content=body, headers=headers)
    assert response.status_code == 202, response.text
