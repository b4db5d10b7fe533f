"""Fetch on notify: thin AMPECO notifications sent to a real gateway make its worker read
the named CDR, transaction and charge point from an emulator of AMPECO's public API
(a real HTTP server built from AMPECO's OpenAPI document), project them into the views
and the export, retrying with backoff and keeping to the configured request rate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from hookgate.config import parse_config
from hookgate.emulate.ampeco_api import (
    AmpecoApiEmulator,
    sample_cdr,
    sample_charge_point,
    sample_transaction,
)
from hookgate.emulate.base import sign
from hookgate.store.viewtx import decode_row
from support.gateway import AMPECO_NEW, Running, base_config, serve
from support.polling import until
from support.storage import fresh_storage

pytestmark = pytest.mark.backends("sqlite", "postgresql")

API_TOKEN = "ampeco-public-api-token"
SOURCE = "ampeco-api"


def _config(tmp_path: Path, url: str, api: str, **extra: Any) -> dict[str, Any]:
    data = base_config(tmp_path / "hookgate.db", url)
    data["processing"] = {"poll_interval_ms": 50}
    data["sources"].append(
        {
            "name": SOURCE,
            "provider": "ampeco",
            "secrets": [AMPECO_NEW],
            "api_base_url": api,
            "api_token": API_TOKEN,
            "api_initial_backoff_seconds": 0.05,
            "api_max_backoff_seconds": 0.2,
            **extra,
        }
    )
    return data


@pytest.fixture
def emulator() -> AmpecoApiEmulator:
    return AmpecoApiEmulator(API_TOKEN)


@pytest.fixture
def fetching(
    backend: str, tmp_path: Path, emulator: AmpecoApiEmulator, request: pytest.FixtureRequest
) -> Iterator[Running]:
    extra = getattr(request, "param", {})
    with emulator.serve() as api, fresh_storage(backend, tmp_path) as url:
        yield from serve(parse_config(_config(tmp_path, url, api, **extra), env={}))


def notify(gateway: Running, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Signature": sign(body, AMPECO_NEW, "sha256", "hex"),
    }
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        answer = client.post(f"/hooks/{SOURCE}", content=body, headers=headers)
    assert answer.status_code == 202, answer.text


def fetch_row(gateway: Running, kind: str, ref_id: str) -> dict[str, Any] | None:
    rows = gateway.rows(
        "SELECT status, attempts, last_error FROM reference_fetches "
        "WHERE source = ? AND kind = ? AND ref_id = ?",
        SOURCE,
        kind,
        ref_id,
    )
    if not rows:
        return None
    status, attempts, error = rows[0]
    return {"status": status, "attempts": attempts, "last_error": error}


def settled(gateway: Running, kind: str, ref_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        row = fetch_row(gateway, kind, ref_id)
        return row if row and row["status"] != "pending" else None

    return until(done, f"the {kind} {ref_id} fetch to settle", 30)


def _named(gateway: Running, table: str, key: str) -> dict[str, Any]:
    columns = [
        "session_key",
        "status",
        "token",
        "energy_kwh",
        "cost",
        "currency",
        "flags",
        "cost_components",
        "ended_at",
        "event_ids",
    ]
    row = gateway.rows(
        f"SELECT {', '.join(columns)} FROM {table} WHERE source = ? AND session_key = ?",
        SOURCE,
        key,
    )[0]
    return decode_row(table, dict(zip(columns, row, strict=True)))


def _inline(document: dict[str, Any], node: Any, seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            if name in seen:
                return {}
            return _inline(document, document["components"]["schemas"][name], (*seen, name))
        return {key: _inline(document, value, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(document, value, seen) for value in node]
    return node


@pytest.mark.parametrize(
    ("template", "body"),
    [
        ("/public-api/resources/cdrs/v2.0/{cdr}", sample_cdr(901, "7001")),
        ("/public-api/resources/cdrs/v2.0/{cdr}", sample_cdr(902, "7001", credit=True)),
        ("/public-api/resources/transactions/v1.0/{transaction}", sample_transaction(3, 7001)),
        ("/public-api/resources/charge-points/v2.0/{chargePoint}", sample_charge_point(42)),
    ],
)
def test_emulated_objects_satisfy_the_published_schema(template: str, body: Any) -> None:
    document = AmpecoApiEmulator(API_TOKEN).document
    response = document["paths"][template]["get"]["responses"]["200"]
    schema = _inline(document, response["content"]["application/json"]["schema"])
    errors = [error.message for error in OAS30Validator(schema).iter_errors(body)]
    assert errors == []


def test_thin_notifications_are_fetched_projected_and_exported(
    fetching: Running, emulator: AmpecoApiEmulator
) -> None:
    emulator.put("cdr", 901, sample_cdr(901, "7001", roaming_id="DE-AMP-0000007001"))
    emulator.put("transaction", 3001, sample_transaction(3001, 7001))
    emulator.put("chargePoint", 42, sample_charge_point(42, name="Depot north"))
    # The CDR listing fails twice before it answers: a 503, then a 429 with Retry-After.
    emulator.fail("cdr", "DE-AMP-0000007001", 503)
    emulator.fail("cdr", "DE-AMP-0000007001", 429, retry_after=0.1)

    notify(
        fetching,
        {
            "notification": "cdr.received",
            "id": "DE-AMP-0000007001",
            "createdAt": "2026-11-03T09:31:00Z",
        },
    )
    notify(
        fetching,
        {
            "notification": "transaction.changed",
            "transactionId": 3001,
            "action": "updated",
            "lastUpdatedAt": "2026-11-03T09:32:00Z",
        },
    )
    notify(
        fetching,
        {
            "notification": "chargePoint.changed",
            "chargePointId": 42,
            "action": "updated",
            "lastUpdatedAt": "2026-11-03T07:00:00Z",
        },
    )

    cdr = settled(fetching, "cdr", "DE-AMP-0000007001")
    assert cdr == {"status": "done", "attempts": 3, "last_error": None}
    assert settled(fetching, "transaction", "3001")["status"] == "done"
    assert settled(fetching, "chargePoint", "42")["status"] == "done"

    # Every call carried the token; the CDR was read on the third attempt.
    assert all(entry.authorization == f"Bearer {API_TOKEN}" for entry in emulator.log)
    listing = [entry.status for entry in emulator.log if entry.path.endswith("/cdrs/v2.0")]
    assert listing == [503, 429, 200]

    row = _named(fetching, "charging_sessions", "7001")
    assert row["status"] == "ended"
    assert row["energy_kwh"] == "21.5"
    assert row["cost"] == "8.45"
    assert row["currency"] == "EUR"
    assert row["token"] == "04A2B3C4D5E6F7"
    assert "cdr" in row["flags"]
    assert [part["type"] for part in row["cost_components"]] == [
        "energy",
        "time",
        "parking",
        "fixed",
    ]
    assert row["cost_components"][0] == {
        "type": "energy",
        "amount": "6.45",
        "quantity": "21.5",
        "unit": "kWh",
    }
    payment = fetching.rows(
        "SELECT state, final FROM payment_objects WHERE source = ? AND object_id = ?",
        SOURCE,
        "transaction:3001",
    )
    assert payment and payment[0][0] == "finalized" and bool(payment[0][1])
    name = fetching.rows(
        "SELECT name FROM charge_points WHERE source = ? AND charge_point_id = ?", SOURCE, "42"
    )
    assert name == [("Depot north",)]

    with fetching.admin() as admin:
        report = admin.get("/api/v1/export", params={"month": "2026-11", "format": "json"})
        assert report.status_code == 200, report.text
        lines = [line for line in report.json()["lines"] if line["kind"] == "charging"]
    assert len(lines) == 1
    assert lines[0]["total"] == "8.45"
    assert lines[0]["components"][0]["amount"] == "6.45"
    assert "energy 6.45 for 21.5 kWh" in lines[0]["description"]

    metrics = httpx.get(f"{fetching.url}/metrics", timeout=10).text
    assert (
        f'hookgate_reference_fetches_total{{kind="cdr",outcome="retry",source="{SOURCE}"}} 2.0'
        in metrics
    )


def test_an_object_the_api_does_not_know_fails_without_retries(
    fetching: Running, emulator: AmpecoApiEmulator
) -> None:
    notify(
        fetching,
        {
            "notification": "transaction.changed",
            "transactionId": 999,
            "action": "created",
            "lastUpdatedAt": "2026-11-03T09:32:00Z",
        },
    )
    row = settled(fetching, "transaction", "999")
    assert row["status"] == "failed"
    assert row["attempts"] == 1
    assert "HTTP 404" in row["last_error"]
    assert [entry.status for entry in emulator.requests_for("transaction", 999)] == [404]


@pytest.mark.parametrize("fetching", [{"api_requests_per_second": 4}], indirect=True)
def test_requests_keep_to_the_configured_rate(
    fetching: Running, emulator: AmpecoApiEmulator
) -> None:
    # The tenant allows 5 requests a second; hookgate is told to send at most 4.
    emulator.rate_limit = 5
    for number in range(12):
        emulator.put("chargePoint", 100 + number, sample_charge_point(100 + number))
    for number in range(12):
        notify(
            fetching,
            {
                "notification": "chargePoint.changed",
                "chargePointId": 100 + number,
                "action": "updated",
                "lastUpdatedAt": "2026-11-03T07:00:00Z",
            },
        )
    for number in range(12):
        assert settled(fetching, "chargePoint", str(100 + number))["status"] == "done"
    statuses = [entry.status for entry in emulator.log]
    assert statuses.count(200) == 12
    assert 429 not in statuses
    starts = sorted(entry.at for entry in emulator.log)
    # No one-second window holds more than the configured four requests (plus the one
    # that opens the next window, as a pacer's slots fall).
    assert all(sum(1 for other in starts if start <= other < start + 1.0) <= 5 for start in starts)
