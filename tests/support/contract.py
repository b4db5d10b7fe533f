"""Helpers shared by the contract tests: fixtures, signatures, credentials, DB reads."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx

from hookgate.emulate.base import sign
from support.gateway import (
    AMPECO_NEW,
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    ZAPTEC_PASSWORD,
    ZAPTEC_USER,
    ZTLMENT_SECRET,
    Running,
)

FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"
PROBLEM_JSON = "application/problem+json"
PROBLEM_PREFIX = "urn:hookgate:problem:"


def fixture_bytes(provider: str, name: str) -> bytes:
    """The exact bytes of a fixture file (signatures are over these)."""
    return (FIXTURES / provider / f"{name}.json").read_bytes()


def fixture_doc(provider: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(fixture_bytes(provider, name))
    return doc


def compact(document: Any) -> bytes:
    """Compact UTF-8 JSON, as a provider would send a modified fixture."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def ampeco_headers(body: bytes, secret: str = AMPECO_NEW, encoding: str = "hex") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Signature": sign(body, secret, "sha256", encoding),
        "X-Timestamp": "2025-12-04T13:01:02Z",
        "X-Tenant": "acme-charging",
    }


def ztlment_headers(
    body: bytes, secret: str = ZTLMENT_SECRET, encoding: str = "base64"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Payload-Signature": sign(body, secret, "sha512", encoding),
    }


def easypark_headers(password: str = EASYPARK_PASSWORD) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": basic(EASYPARK_USER, password)}


def zaptec_token(client: httpx.Client, source: str = "zaptec") -> str:
    """An access token from the source's token endpoint (password grant, as Zaptec does)."""
    response = client.post(
        f"/hooks/{source}/oauth/token",
        data={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def inbox(gateway: Running, source: str, body: bytes | None = None) -> list[dict[str, Any]]:
    """The inbox rows of one source (of one body, if given), oldest first, JSON decoded."""
    sql = (
        "SELECT id, event_type, status, flags, headers, document, raw_body, dedup_key, subject "
        "FROM inbox WHERE source = ?"
    )
    params: list[Any] = [source]
    if body is not None:
        sql += " AND body_sha256 = ?"
        params.append(hashlib.sha256(body).hexdigest())
    rows = gateway.rows(sql + " ORDER BY id", *params)
    return [
        {
            "id": r[0],
            "event_type": r[1],
            "status": r[2],
            "flags": json.loads(r[3]),
            "headers": json.loads(r[4]),
            "document": json.loads(r[5]) if r[5] is not None else None,
            "raw_body": bytes(r[6]),
            "dedup_key": r[7],
            "subject": r[8],
        }
        for r in rows
    ]


def rejection_ids(gateway: Running) -> set[str]:
    return {r[0] for r in gateway.rows("SELECT id FROM rejections")}


def rejections_since(gateway: Running, before: set[str]) -> list[dict[str, Any]]:
    """Rejection rows whose id was not in `before`."""
    rows = gateway.rows(
        "SELECT id, source, method, path, status, reason, headers, body_sha256, body_size, body "
        "FROM rejections ORDER BY id"
    )
    return [
        {
            "id": r[0],
            "source": r[1],
            "method": r[2],
            "path": r[3],
            "status": r[4],
            "reason": r[5],
            "headers": json.loads(r[6]),
            "body_sha256": r[7],
            "body_size": r[8],
            "body": bytes(r[9]),
        }
        for r in rows
        if r[0] not in before
    ]


def table_text(gateway: Running, table: str) -> str:
    """Every cell of `table` as text (blobs as latin-1), to search for leaked secrets."""
    cells = []
    for row in gateway.rows(f"SELECT * FROM {table}"):
        for cell in row:
            if isinstance(cell, bytes):
                cells.append(cell.decode("latin-1"))
            else:
                cells.append(str(cell))
    return "\n".join(cells)


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> Any:
    """An RFC 9457 answer with the given status (and problem type code)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"]
    if code is not None:
        assert body["type"] == PROBLEM_PREFIX + code
    return body
