"""Credentials are checked before the body is read, the token form is capped before it is
parsed, and failed credentials are throttled per source and address without ever
refusing a valid credential (a gateway on 127.0.0.1)."""

from __future__ import annotations

import base64
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookgate.config import ConfigError, parse_config
from hookgate.ingress.throttle import FailureThrottle
from hookgate.oauth import FORM_MAX_BYTES, FORM_MAX_FIELDS
from support.gateway import (
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    ZAPTEC_PASSWORD,
    ZAPTEC_USER,
    Running,
    base_config,
)
from support.polling import until

pytestmark = pytest.mark.backends("sqlite")  # nothing here depends on the storage


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _start(make_gateway: Callable[[dict[str, Any]], Running], tmp: Path, **server: Any) -> Running:
    settings = {"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536, **server}
    return make_gateway(base_config(tmp / "hookgate.db", server=settings))


def _head_only(url: str, path: str, headers: dict[str, str], length: int) -> bytes:
    """Send a request head announcing `length` body bytes, send none, and return what the
    server answers within 5 s (it must answer without waiting for the body)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"no answer without the body; got {answer!r}") from None
            if not chunk:
                break
            answer += chunk
        return answer


_JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/hooks/easypark", {**_JSON, "Authorization": _basic(EASYPARK_USER, "wrong")}),
        ("/hooks/easypark-key", {**_JSON, "X-Partner-Key": "not-the-key"}),
        ("/hooks/zaptec/session-start", {**_JSON, "Authorization": "Bearer hg1.bad.token"}),
        ("/hooks/zaptec-basic/session-start", _JSON),
        ("/hooks/ztlment", _JSON),  # signed body without its signature header
    ],
)
def test_bad_credentials_are_refused_before_the_body(
    make_gateway: Callable[[dict[str, Any]], Running],
    tmp_path: Path,
    path: str,
    headers: dict[str, str],
) -> None:
    gateway = _start(make_gateway, tmp_path)
    answer = _head_only(gateway.url, path, headers, 60_000)
    assert answer.startswith(b"HTTP/1.1 401 "), answer


def test_token_form_over_the_cap_is_refused_before_it_is_read(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    gateway = _start(make_gateway, tmp_path, max_body_bytes=1024 * 1024)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = _head_only(gateway.url, "/hooks/zaptec/oauth/token", form, 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"application/problem+json" in answer

    # The measured attack: 1 MiB of 260,000 keys, sent whole, is refused unparsed.
    many = "&".join(f"k{i}=" for i in range(260_000)).encode()[: 1024 * 1024]
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        reply = client.post("/hooks/zaptec/oauth/token", content=many, headers=form)
        assert reply.status_code == 413
        assert reply.headers["content-type"] == "application/problem+json"
        assert str(FORM_MAX_BYTES) in reply.json()["detail"]


def test_token_form_with_too_many_fields_is_refused(client: httpx.Client) -> None:
    valid = f"grant_type=password&username={ZAPTEC_USER}&password={ZAPTEC_PASSWORD}"
    padded = valid + "".join(f"&x{i}=" for i in range(FORM_MAX_FIELDS))
    assert len(padded) < FORM_MAX_BYTES
    reply = client.post(
        "/hooks/zaptec/oauth/token",
        content=padded,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"
    assert f"more than {FORM_MAX_FIELDS} fields" in reply.json()["error_description"]
    # The same credentials in a normal form still get a token.
    ok = client.post(
        "/hooks/zaptec/oauth/token",
        content=valid,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ok.status_code == 200, ok.text


def _token(client: httpx.Client, password: str, **headers: str) -> httpx.Response:
    return client.post(
        "/hooks/zaptec/oauth/token",
        data={"grant_type": "password", "username": ZAPTEC_USER, "password": password},
        headers=headers,
    )


def test_failed_passwords_are_throttled_but_a_valid_one_passes(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    gateway = _start(make_gateway, tmp_path, auth_failure_limit=3)
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(3):
            assert _token(client, "wrong").status_code == 400
        throttled = _token(client, "wrong")
        assert throttled.status_code == 429
        assert throttled.headers["content-type"] == "application/problem+json"
        assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert throttled.json()["type"] == "urn:hookgate:problem:too-many-failures"

        # A valid credential from the throttled address is never locked out.
        granted = _token(client, ZAPTEC_PASSWORD)
        assert granted.status_code == 200, granted.text
        token = granted.json()["access_token"]
        start = client.post(
            "/hooks/zaptec/session-start",
            json={"ChargerId": "c-1", "TokenId": "t-1"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert start.status_code in (200, 403), start.text  # decided, not refused
        assert _token(client, "wrong").status_code == 429

        # Another address (a trusted proxy's X-Forwarded-For) has its own count ...
        assert _token(client, "wrong", **{"X-Forwarded-For": "203.0.113.7"}).status_code == 400
        # ... and so has another source.
        other = client.post(
            "/hooks/easypark",
            json={},
            headers={"Authorization": _basic(EASYPARK_USER, "wrong")},
        )
        assert other.status_code == 401


def test_failed_basic_credentials_are_throttled_but_valid_ones_are_stored(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    gateway = _start(make_gateway, tmp_path, auth_failure_limit=2)
    body = {
        "parkingId": 991,
        "licenseNumber": "ABC123",
        "startDate": "2024-05-01T10:00:00Z",
        "endDate": "2024-05-01T11:00:00Z",
        "price": 10,
        "priceVatAmount": 2,
        "priceExclusiveVatAmount": 8,
        "currency": "EUR",
    }
    wrong = {"Authorization": _basic(EASYPARK_USER, "wrong")}
    right = {"Authorization": _basic(EASYPARK_USER, EASYPARK_PASSWORD)}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        statuses = [client.post("/hooks/easypark", json=body, headers=wrong).status_code]
        statuses += [client.post("/hooks/easypark", json=body, headers=wrong).status_code]
        statuses += [client.post("/hooks/easypark", json=body, headers=wrong).status_code]
        assert statuses == [401, 401, 429]
        accepted = client.post("/hooks/easypark", json=body, headers=right)
        assert accepted.status_code == 200, accepted.text
    assert gateway.count("inbox", "source = ?", "easypark") == 1


def test_throttle_forgets_the_oldest_entries_and_counts_per_window() -> None:
    now = [0.0]
    throttle = FailureThrottle(limit=2, window=10, capacity=100, clock=lambda: now[0])
    assert throttle.failed("s", "a") is None
    assert throttle.failed("s", "a") is None
    assert throttle.failed("s", "a") == 10
    now[0] = 4.2
    assert throttle.failed("s", "a") == 6  # until the window that began at 0 ends
    assert throttle.failed("t", "a") is None  # per source
    now[0] = 10.0
    assert throttle.failed("s", "a") is None  # a new window
    for n in range(1000):
        throttle.failed("s", f"10.0.{n // 256}.{n % 256}")
    assert len(throttle) == 100  # bounded, whatever the number of addresses
    assert FailureThrottle(limit=0, window=10, capacity=10).failed("s", "a") is None


def test_bodies_read_at_once_are_bounded_across_requests(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    gateway = _start(make_gateway, tmp_path, max_buffered_body_bytes=65536)
    host, port = gateway.url.removeprefix("http://").split(":")
    head = (
        b"POST /hooks/ztlment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Payload-Signature: 00\r\nContent-Length: 60000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=5) as first:
        first.sendall(head + b" " * 40_000)  # a signed body, two thirds of it sent

        def another() -> bytes | None:
            # Past the budget once the first one's bytes have been read.
            answer = b""
            with socket.create_connection((host, int(port)), timeout=0.5) as second:
                second.sendall(head + b" " * 40_000)
                with contextlib.suppress(TimeoutError):
                    answer = second.recv(65536)
                    while answer.startswith(b"HTTP/1.1 503 ") and not answer.endswith(b"}"):
                        answer += second.recv(65536)
            return answer if answer.startswith(b"HTTP/1.1 503 ") else None

        answer = until(another, "a second body refused with 503", 10)
        assert b"retry-after: 1" in answer.lower()
        assert b"too-many-bodies" in answer
        # The first body still arrives whole and is judged on its signature.
        first.sendall(b" " * 20_000)
        assert first.recv(65536).startswith(b"HTTP/1.1 401 ")


def test_budget_below_the_largest_body_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="max_buffered_body_bytes"):
        parse_config(
            {"server": {"max_body_bytes": 1 << 20, "max_buffered_body_bytes": 1 << 19}}, env={}
        )


def test_a_refused_body_is_kept_only_up_to_the_rejection_cap(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    gateway = _start(make_gateway, tmp_path)
    big = b'{"pad": "' + b"x" * 59_000 + b'"}'
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        reply = client.post(
            "/hooks/easypark",
            content=big,
            headers={**_JSON, "Authorization": _basic(EASYPARK_USER, "wrong")},
        )
    assert reply.status_code == 401
    cap = gateway.config.storage.rejection_body_bytes
    rows = until(lambda: gateway.rows("SELECT body, body_size FROM rejections"), what="the refusal")
    [(body, size)] = rows
    assert size == len(big)
    assert bytes(body) == big[:cap]


def test_bearer_tokens_and_signatures_are_never_throttled(
    make_gateway: Callable[[dict[str, Any]], Running], tmp_path: Path
) -> None:
    """Neither can be guessed, and a stale token's 401 is what makes Zaptec fetch a new
    one: a 429 instead would leave it without authorization."""
    gateway = _start(make_gateway, tmp_path, auth_failure_limit=2)
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        bearer = [
            client.post(
                "/hooks/zaptec/session-start",
                json={"ChargerId": "c-1"},
                headers={"Authorization": "Bearer hg1.stale.token"},
            )
            for _ in range(5)
        ]
        signed = [
            client.post(
                "/hooks/ztlment",
                json={"id": 1, "type": "PAYMENT_OBJECT", "state": "PROCESSED"},
                headers={"X-Payload-Signature": "00" * 64},
            ).status_code
            for _ in range(5)
        ]
    assert [r.status_code for r in bearer] == [401] * 5
    assert all("invalid_token" in r.headers["www-authenticate"] for r in bearer)
    assert signed == [401] * 5
