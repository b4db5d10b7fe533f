"""Credentials never land in clear in the rejection log or the server log, and a caller is
not told that a source is misconfigured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from hookgate.oauth import redact_form
from hookgate.verify import redact_json
from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SECRET = "Sup3r-Secret-Pa55"
TOKEN_URL = "/hooks/zaptec/oauth/token"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _stored(gateway: Running) -> str:
    """Every rejection cell as text."""
    cells = []
    for row in gateway.rows("SELECT * FROM rejections"):
        for cell in row:
            cells.append(bytes(cell).decode("latin-1") if isinstance(cell, bytes) else str(cell))
    return "\n".join(cells)


def _last(gateway: Running) -> dict[str, Any]:
    rows = gateway.rows(
        "SELECT body, body_size, body_sha256, detail FROM rejections ORDER BY id DESC LIMIT 1"
    )
    body, size, digest, detail = rows[0]
    return {"body": bytes(body), "size": size, "sha256": digest, "detail": detail}


def _post(gateway: Running, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", content=body, headers=headers, timeout=10)


def test_a_json_body_at_the_token_endpoint_is_kept_only_as_hash_and_size(
    gateway: Running,
) -> None:
    body = json.dumps(
        {"grant_type": "password", "username": ZAPTEC_USER, "password": SECRET}
    ).encode()
    answer = _post(gateway, TOKEN_URL, body, {"Content-Type": "application/json"})
    assert answer.status_code == 400
    last = _last(gateway)
    assert last["body"] == b"" and last["size"] == len(body) and len(last["sha256"]) == 64
    assert SECRET not in _stored(gateway)


@pytest.mark.parametrize(
    "form",
    [
        f"grant_type=password&username={ZAPTEC_USER}&Password={SECRET}",
        f"grant_type=password;username={ZAPTEC_USER};password={SECRET}",
        f"grant_type=password&username={ZAPTEC_USER}&password={SECRET}x",
        f"grant_type=password&username={ZAPTEC_USER}&{SECRET}",
        f"grant_type=password&username={ZAPTEC_USER}&pw={SECRET}",
    ],
    ids=["capital-password", "semicolons", "wrong-password", "bare-value", "unknown-key"],
)
def test_token_forms_are_stored_and_logged_redacted(gateway: Running, form: str) -> None:
    with structlog.testing.capture_logs() as logs:
        answer = _post(gateway, TOKEN_URL, form.encode(), FORM)
    assert answer.status_code in (400, 401)
    assert SECRET not in answer.text
    assert SECRET not in _stored(gateway)
    assert SECRET not in repr(logs)


def test_a_token_form_that_parses_is_kept_with_its_identifiers(gateway: Running) -> None:
    form = f"grant_type=password&username={ZAPTEC_USER}&Password={SECRET}&x={SECRET}"
    assert _post(gateway, TOKEN_URL, form.encode(), FORM).status_code == 400
    assert (
        _last(gateway)["body"] == b"grant_type=password&username=zaptec&Password=***&(unknown)=***"
    )


def test_zaptec_routes_keep_only_redacted_json(gateway: Running) -> None:
    basic = httpx.BasicAuth(ZAPTEC_USER, ZAPTEC_PASSWORD)
    json_type = {"Content-Type": "application/json"}
    form = f"grant_type=password&username={ZAPTEC_USER}&password={SECRET}".encode()
    # Credentials right, body the authentication payload: not JSON, so nothing is kept.
    answer = httpx.post(
        f"{gateway.url}/hooks/zaptec-basic/session-start",
        content=form,
        headers=json_type,
        auth=basic,
        timeout=10,
    )
    assert answer.status_code == 400
    assert _last(gateway)["body"] == b""
    body = json.dumps({"Password": SECRET, "nested": [{"client_secret": SECRET}]}).encode()
    answer = httpx.post(
        f"{gateway.url}/hooks/zaptec-basic/session-start",
        content=body,
        headers=json_type,
        auth=basic,
        timeout=10,
    )
    assert answer.status_code == 422
    assert json.loads(_last(gateway)["body"]) == {
        "Password": "***",
        "nested": [{"client_secret": "***"}],
    }
    assert SECRET not in _stored(gateway)


def test_the_redactors_keep_nothing_they_cannot_parse() -> None:
    assert redact_form(b"\xff=1") is None
    assert redact_form(b"grant_type=password&password") is None
    assert redact_form(b"grant_type=pass word&client_secret=s") == (
        b"grant_type=pass word&client_secret=***"
    )
    assert redact_form(b"grant_type=a%3Bpassword%3Ds") == b"grant_type=***"
    assert redact_json(b"grant_type=password") is None
    assert redact_json(b'{"apiKey": 1, "AuthenticationCode": "x", "ChargerId": "c"}') == (
        b'{"apiKey":"***","AuthenticationCode":"***","ChargerId":"c"}'
    )


def test_a_misconfigured_source_answers_like_a_wrong_credential(
    make_gateway: Any, tmp_path: Path
) -> None:
    data = base_config(tmp_path / "hookgate.db")
    data["sources"] += [
        {"name": "zaptec-none", "provider": "zaptec", "auth": "oauth", "username": "zaptec"},
        {"name": "ep-none", "provider": "easypark", "auth": "basic", "username": "easypark"},
    ]
    gateway = make_gateway(data)
    answers = [
        _post(gateway, "/hooks/unsecured", b"{}", {"Content-Type": "application/json"}),
        _post(
            gateway,
            "/hooks/unsecured",
            b"{}",
            {"Content-Type": "application/json", "X-Signature": "00" * 32},
        ),
        _post(gateway, "/hooks/ep-none", b"{}", {"Content-Type": "application/json"}),
        _post(
            gateway,
            "/hooks/zaptec-none/oauth/token",
            f"grant_type=password&username=zaptec&password={SECRET}".encode(),
            FORM,
        ),
        _post(gateway, "/hooks/zaptec-none/session-start", b"{}", {"Authorization": "Bearer x"}),
    ]
    for answer in answers:
        assert answer.status_code in (400, 401), answer.text
        assert "configured" not in answer.text, answer.text
    details = [r[0] for r in gateway.rows("SELECT detail FROM rejections ORDER BY id")]
    assert len(details) == len(answers)
    assert all("configured" in detail for detail in details), details
