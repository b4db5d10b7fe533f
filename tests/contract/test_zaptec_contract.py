"""Zaptec contract over HTTP: RFC 6749 token endpoint, session start (decide), session end."""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from hookgate.config import ZaptecSource
from hookgate.oauth import TokenIssuer
from support.contract import (
    assert_problem,
    basic,
    compact,
    fixture_doc,
    inbox,
    rejection_ids,
    rejections_since,
    zaptec_token,
)
from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config

pytestmark = pytest.mark.backends("sqlite", "postgresql")

PLACEHOLDER = "00000000-0000-0000-0000-000000000000"
TOKEN_URL = "/hooks/{}/oauth/token"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def start(
    client: httpx.Client, source: str, document: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    return client.post(f"/hooks/{source}/session-start", content=compact(document), headers=headers)


def end(
    client: httpx.Client, source: str, document: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    return client.post(f"/hooks/{source}/session-end", content=compact(document), headers=headers)


def end_doc(name: str, session_id: str) -> dict[str, Any]:
    doc = fixture_doc("zaptec", name)
    key = "SessionId" if "SessionId" in doc else "sessionId"
    assert doc[key] == PLACEHOLDER
    doc[key] = session_id
    return doc


def session_row(
    gateway: Running, session_id: str, source: str = "zaptec-allow"
) -> dict[str, Any] | None:
    rows = gateway.rows(
        "SELECT status, charger_id, token, energy_kwh, ended_at, end_event_id, start_event_id "
        "FROM authorized_sessions WHERE session_id = ? AND source = ?",
        session_id,
        source,
    )
    if not rows:
        return None
    assert len(rows) == 1
    keys = (
        "status",
        "charger_id",
        "token",
        "energy_kwh",
        "ended_at",
        "end_event_id",
        "start_event_id",
    )
    return dict(zip(keys, rows[0], strict=True))


def decisions(gateway: Running, source: str) -> list[dict[str, Any]]:
    rows = gateway.rows(
        "SELECT result, session_id, charger_id, token, user_id, installation_id "
        "FROM decisions WHERE source = ? ORDER BY id",
        source,
    )
    keys = ("result", "session_id", "charger_id", "token", "user_id", "installation_id")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# --------------------------------------------------------------------------- token endpoint


def test_password_grant_issues_a_bearer_token(gateway: Running, client: httpx.Client) -> None:
    response = client.post(
        TOKEN_URL.format("zaptec"),
        content=f"grant_type=password&username={ZAPTEC_USER}&password=zap%3Apass%3Aword",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0


def test_client_credentials_grant_with_credentials_in_the_body(
    gateway: Running, client: httpx.Client
) -> None:
    response = client.post(
        TOKEN_URL.format("zaptec"),
        data={
            "grant_type": "client_credentials",
            "client_id": ZAPTEC_USER,
            "client_secret": ZAPTEC_PASSWORD,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert response.headers["cache-control"] == "no-store"


def test_client_credentials_grant_with_http_basic(gateway: Running, client: httpx.Client) -> None:
    response = client.post(
        TOKEN_URL.format("zaptec-allow"),
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic(ZAPTEC_USER, ZAPTEC_PASSWORD)},
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    # The client-credentials token opens the hooks like a password-grant one.
    doc = fixture_doc("zaptec", "start_pascal")
    assert start(client, "zaptec-allow", doc, bearer(body["access_token"])).status_code == 200


@pytest.mark.parametrize(
    ("form", "auth", "status", "error"),
    [
        (
            {"grant_type": "password", "username": ZAPTEC_USER, "password": "wrong"},
            None,
            400,
            "invalid_grant",
        ),
        (
            {"grant_type": "password", "username": "someone", "password": ZAPTEC_PASSWORD},
            None,
            400,
            "invalid_grant",
        ),
        (
            {"grant_type": "authorization_code", "code": "abc"},
            None,
            400,
            "unsupported_grant_type",
        ),
        ({"username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD}, None, 400, "invalid_request"),
        ({"grant_type": "password", "username": ZAPTEC_USER}, None, 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "client_id": ZAPTEC_USER, "client_secret": "x"},
            None,
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "client_credentials"},
            basic(ZAPTEC_USER, "wrong"),
            401,
            "invalid_client",
        ),
    ],
    ids=[
        "wrong-password",
        "wrong-username",
        "unknown-grant",
        "missing-grant-type",
        "missing-password",
        "bad-client-secret-in-body",
        "bad-client-secret-in-basic",
    ],
)
def test_token_endpoint_errors_follow_rfc_6749(
    shared_gateway: Running,
    form: dict[str, str],
    auth: str | None,
    status: int,
    error: str,
) -> None:
    gateway = shared_gateway
    before = rejection_ids(gateway)
    headers = {"Authorization": auth} if auth else {}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        response = client.post(TOKEN_URL.format("zaptec"), data=form, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert "access_token" not in body
    if auth:
        assert response.headers["www-authenticate"].startswith("Basic")
    (rejection,) = rejections_since(gateway, before)
    assert rejection["status"] == status
    # The recorded form never shows a password or client secret in clear.
    assert ZAPTEC_PASSWORD.encode() not in rejection["body"]
    assert b"wrong" not in rejection["body"]
    assert rejection["headers"].get("authorization", "Basic ***") == "Basic ***"


def test_token_endpoint_needs_a_form_body(gateway: Running, client: httpx.Client) -> None:
    response = client.post(
        TOKEN_URL.format("zaptec"),
        json={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --------------------------------------------------------------------------- session start


@pytest.mark.parametrize("name", ["start_pascal", "start_camel"])
def test_session_start_on_allow_source_is_approved_with_a_session_id(
    gateway: Running, client: httpx.Client, name: str
) -> None:
    doc = fixture_doc("zaptec", name)
    response = start(client, "zaptec-allow", doc, bearer(zaptec_token(client, "zaptec-allow")))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"sessionId"}
    session_id = str(uuid.UUID(body["sessionId"]))
    assert session_id == body["sessionId"]

    (decision,) = decisions(gateway, "zaptec-allow")
    assert decision["result"] == "ALLOWED"
    assert decision["session_id"] == session_id
    lowered = {k.lower(): v for k, v in doc.items()}
    assert decision["charger_id"] == lowered["chargerid"]
    assert decision["token"] == lowered["tokenid"]
    assert decision["user_id"] == lowered["userid"]
    assert decision["installation_id"] == lowered["installationid"]

    session = session_row(gateway, session_id)
    assert session is not None
    assert session["status"] == "active"
    (event,) = inbox(gateway, "zaptec-allow")
    assert event["event_type"] == "session.start"
    assert event["raw_body"] == compact(doc)
    assert session["start_event_id"] == event["id"]


def test_each_start_gets_its_own_session_id(gateway: Running, client: httpx.Client) -> None:
    token = zaptec_token(client, "zaptec-allow")
    doc = fixture_doc("zaptec", "start_pascal")
    ids = [start(client, "zaptec-allow", doc, bearer(token)).json()["sessionId"] for _ in range(3)]
    assert len(set(ids)) == 3
    assert gateway.count("authorized_sessions", "status = 'active'") == 3
    assert gateway.count("inbox", "source = 'zaptec-allow'") == 3


@pytest.mark.parametrize("token_key", ["AUTHENTICATIONCODE", "idTag"])
def test_start_with_device_id_and_token_aliases_in_mixed_case(
    gateway: Running, client: httpx.Client, token_key: str
) -> None:
    doc = fixture_doc("zaptec", "start_aliases")
    assert "deviceID" in doc and "ChargerId" not in doc
    doc[token_key] = doc.pop("AUTHENTICATIONCODE")
    response = start(client, "zaptec-allow", doc, bearer(zaptec_token(client, "zaptec-allow")))
    assert response.status_code == 200, response.text
    (decision,) = decisions(gateway, "zaptec-allow")
    assert decision["charger_id"] == "ZAP077341"
    assert decision["token"] == "04E2F1A9C3B7D5"
    assert decision["installation_id"] == doc["InstallationID"]
    assert decision["user_id"] == doc["userid"]


def test_unknown_token_on_deny_source_gets_403_and_no_session(
    gateway: Running, client: httpx.Client
) -> None:
    doc = fixture_doc("zaptec", "start_pascal")
    response = start(client, "zaptec", doc, bearer(zaptec_token(client, "zaptec")))
    assert response.status_code == 403, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["authorized"] is False
    assert body["reason"] == "UNKNOWN"
    assert isinstance(body["message"], str) and body["message"]
    assert "sessionId" not in body
    (decision,) = decisions(gateway, "zaptec")
    assert decision["result"] == "UNKNOWN"
    assert decision["session_id"] is None
    assert gateway.count("authorized_sessions") == 0
    assert gateway.count("inbox", "source = 'zaptec'") == 1


def test_session_start_without_charger_is_refused_with_422(
    gateway: Running, client: httpx.Client
) -> None:
    doc = {
        k: v
        for k, v in fixture_doc("zaptec", "start_pascal").items()
        if k not in ("ChargerId", "DeviceId")
    }
    response = start(client, "zaptec-allow", doc, bearer(zaptec_token(client, "zaptec-allow")))
    assert_problem(response, 422)
    assert gateway.count("inbox") == 0
    assert gateway.count("decisions") == 0


# --------------------------------------------------------------------------- session end


@pytest.mark.parametrize(
    ("start_name", "end_name"), [("start_pascal", "end_pascal"), ("start_camel", "end_camel")]
)
def test_session_end_closes_the_session_and_stores_the_energy(
    gateway: Running, client: httpx.Client, start_name: str, end_name: str
) -> None:
    headers = bearer(zaptec_token(client, "zaptec-allow"))
    session_id = start(client, "zaptec-allow", fixture_doc("zaptec", start_name), headers).json()[
        "sessionId"
    ]
    doc = end_doc(end_name, session_id)
    response = end(client, "zaptec-allow", doc, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")

    energy = doc.get("Energy", doc.get("energy"))
    session = session_row(gateway, session_id)
    assert session is not None
    assert session["status"] == "ended"
    assert session["energy_kwh"] == str(energy)
    assert session["ended_at"] is not None
    (event,) = [e for e in inbox(gateway, "zaptec-allow") if e["event_type"] == "session.end"]
    assert event["raw_body"] == compact(doc)
    assert "unmatched" not in event["flags"]
    assert session["end_event_id"] == event["id"]
    lowered = {k.lower(): v for k, v in event["document"].items()}
    assert str(lowered.get("energy_kwh", lowered.get("energy"))) == str(energy)


def test_repeated_session_end_gets_200_and_changes_nothing(
    gateway: Running, client: httpx.Client
) -> None:
    headers = bearer(zaptec_token(client, "zaptec-allow"))
    session_id = start(
        client, "zaptec-allow", fixture_doc("zaptec", "start_pascal"), headers
    ).json()["sessionId"]
    doc = end_doc("end_pascal", session_id)
    assert end(client, "zaptec-allow", doc, headers).status_code == 200
    after_first = session_row(gateway, session_id)

    def stored() -> list[dict[str, Any]]:
        # The in-process worker may process the events meanwhile: that changes status only.
        return [
            {k: v for k, v in row.items() if k != "status"}
            for row in inbox(gateway, "zaptec-allow")
        ]

    inbox_after_first = stored()

    again = copy.deepcopy(doc)
    again["Energy"] = 99.9  # a resend with other data must not overwrite the first end
    for body in (doc, again):
        assert end(client, "zaptec-allow", body, headers).status_code == 200
    assert session_row(gateway, session_id) == after_first
    assert stored() == inbox_after_first
    assert gateway.count("inbox", "source = 'zaptec-allow' AND event_type = 'session.end'") == 1


def test_session_end_without_a_known_start_is_accepted_and_flagged_unmatched(
    gateway: Running, client: httpx.Client
) -> None:
    headers = bearer(zaptec_token(client, "zaptec-allow"))
    offline_session = str(uuid.uuid4())
    doc = end_doc("end_pascal", offline_session)
    response = end(client, "zaptec-allow", doc, headers)
    assert response.status_code == 200, response.text
    (event,) = inbox(gateway, "zaptec-allow")
    assert event["event_type"] == "session.end"
    assert "unmatched" in event["flags"]
    assert event["raw_body"] == compact(doc)
    # A repeat of the unmatched end is still idempotent.
    assert end(client, "zaptec-allow", doc, headers).status_code == 200
    assert gateway.count("inbox", "source = 'zaptec-allow'") == 1


def test_session_end_for_a_session_of_another_source_is_unmatched(
    gateway: Running, client: httpx.Client
) -> None:
    allow = bearer(zaptec_token(client, "zaptec-allow"))
    session_id = start(client, "zaptec-allow", fixture_doc("zaptec", "start_pascal"), allow).json()[
        "sessionId"
    ]
    other = {
        "Authorization": basic(ZAPTEC_USER, ZAPTEC_PASSWORD),
        "Content-Type": "application/json",
    }
    assert end(client, "zaptec-basic", end_doc("end_pascal", session_id), other).status_code == 200
    (event,) = inbox(gateway, "zaptec-basic")
    assert "unmatched" in event["flags"]
    session = session_row(gateway, session_id)
    assert session is not None and session["status"] == "active"


# --------------------------------------------------------------------------- Basic source


def test_basic_source_accepts_http_basic(gateway: Running, client: httpx.Client) -> None:
    headers = {
        "Authorization": basic(ZAPTEC_USER, ZAPTEC_PASSWORD),
        "Content-Type": "application/json",
    }
    response = start(client, "zaptec-basic", fixture_doc("zaptec", "start_pascal"), headers)
    assert response.status_code == 200, response.text
    session_id = response.json()["sessionId"]
    assert (
        end(client, "zaptec-basic", end_doc("end_pascal", session_id), headers).status_code == 200
    )
    session = session_row(gateway, session_id, "zaptec-basic")
    assert session is not None and session["status"] == "ended"
    for event in inbox(gateway, "zaptec-basic"):
        assert ZAPTEC_PASSWORD not in json.dumps(event["headers"])


def test_basic_source_refuses_a_wrong_password_with_a_basic_challenge(
    gateway: Running, client: httpx.Client
) -> None:
    headers = {"Authorization": basic(ZAPTEC_USER, "zap"), "Content-Type": "application/json"}
    response = start(client, "zaptec-basic", fixture_doc("zaptec", "start_pascal"), headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Basic")
    assert gateway.count("inbox") == 0


def test_basic_source_has_no_token_endpoint(gateway: Running, client: httpx.Client) -> None:
    response = client.post(
        TOKEN_URL.format("zaptec-basic"),
        data={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
    )
    assert_problem(response, 404)
    assert ZAPTEC_PASSWORD.encode() not in b"".join(
        bytes(r[0]) for r in gateway.rows("SELECT body FROM rejections")
    )


# --------------------------------------------------------------------------- bearer tokens


def test_start_without_a_bearer_token_is_refused_with_a_bearer_challenge(
    gateway: Running, client: httpx.Client
) -> None:
    response = start(
        client,
        "zaptec-allow",
        fixture_doc("zaptec", "start_pascal"),
        {"Content-Type": "application/json"},
    )
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert gateway.count("inbox") == 0


def test_token_is_bound_to_its_source(gateway: Running, client: httpx.Client) -> None:
    source_a = gateway.config.source("zaptec")
    source_b = gateway.config.source("zaptec-allow")
    assert isinstance(source_a, ZaptecSource) and isinstance(source_b, ZaptecSource)
    assert (source_a.username, source_a.password) == (source_b.username, source_b.password)
    token = zaptec_token(client, "zaptec")
    response = start(client, "zaptec-allow", fixture_doc("zaptec", "start_pascal"), bearer(token))
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert gateway.count("inbox") == 0
    assert gateway.count("decisions") == 0


def test_tampered_token_is_refused(gateway: Running, client: httpx.Client) -> None:
    token = zaptec_token(client, "zaptec-allow")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    response = start(client, "zaptec-allow", fixture_doc("zaptec", "start_pascal"), bearer(forged))
    assert_problem(response, 401)


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def _issuer(gateway: Running, now: float) -> TokenIssuer:
    (row,) = gateway.rows("SELECT value FROM meta WHERE key = 'oauth_signing_key'")
    return TokenIssuer(bytes.fromhex(row[0]), clock=_Clock(now))


def test_expired_token_is_refused_with_invalid_token_challenge(
    gateway: Running, client: httpx.Client
) -> None:
    source = gateway.config.source("zaptec-allow")
    assert isinstance(source, ZaptecSource)
    doc = fixture_doc("zaptec", "start_pascal")
    # Control: a token minted now with the gateway's key is accepted.
    fresh, _ = _issuer(gateway, time.time()).issue(source)
    assert start(client, "zaptec-allow", doc, bearer(fresh)).status_code == 200
    # The same key, a token issued two lifetimes ago: expired.
    old, ttl = _issuer(gateway, time.time() - 2 * source.token_ttl_seconds).issue(source)
    assert ttl == source.token_ttl_seconds
    response = start(client, "zaptec-allow", doc, bearer(old))
    assert_problem(response, 401)
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert 'error="invalid_token"' in challenge
    assert gateway.count("inbox", "source = 'zaptec-allow'") == 1


def _with_zaptec_password(data: dict[str, Any], password: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for source in data["sources"]:
        if source["provider"] == "zaptec":
            source["password"] = password
    return data


def test_token_stops_working_when_the_source_credentials_change(
    gateway: Running, client: httpx.Client, make_gateway: Any
) -> None:
    token = zaptec_token(client, "zaptec-allow")
    doc = fixture_doc("zaptec", "start_pascal")
    # Another instance on the same database with the same credentials accepts the token ...
    twin = make_gateway(base_config(gateway.db, gateway.storage_url))
    with httpx.Client(base_url=twin.url, timeout=10) as other:
        assert start(other, "zaptec-allow", doc, bearer(token)).status_code == 200
    # ... one whose password was changed does not.
    changed = make_gateway(
        _with_zaptec_password(base_config(gateway.db, gateway.storage_url), "a-new:password")
    )
    with httpx.Client(base_url=changed.url, timeout=10) as other:
        response = start(other, "zaptec-allow", doc, bearer(token))
        assert_problem(response, 401)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        # The new password gets a working token there.
        fresh = other.post(
            TOKEN_URL.format("zaptec-allow"),
            data={"grant_type": "password", "username": ZAPTEC_USER, "password": "a-new:password"},
        )
        assert fresh.status_code == 200
        assert (
            start(other, "zaptec-allow", doc, bearer(fresh.json()["access_token"])).status_code
            == 200
        )
