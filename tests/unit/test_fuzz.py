"""Property-based fuzzing of every parser and verifier at hookgate's edges (bounded: a few
hundred examples each). `bench/fuzz.py` runs the same targets for minutes.

Each test asserts that any input gets a value or the refusal its parser promises, never
another exception. Every crash these tests found is pinned by an `@example`.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate.providers.base import Call, Reject
from support.fuzz_targets import (
    PROVIDERS,
    ROUTES,
    SOURCES,
    admin_queries,
    bodies,
    check_admin_answer,
    check_bearer,
    check_config,
    check_csv,
    check_cursor,
    check_parse,
    check_token_endpoint,
    check_verify,
    config_documents,
    content_types,
    credentials,
    csv_texts,
    cursor_texts,
    form_bodies,
    header_text,
)
from support.gateway import ADMIN_TOKEN, Running

EXAMPLES = int(os.environ.get("HOOKGATE_FUZZ_EXAMPLES", "300"))
bounded = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize(("source", "route"), ROUTES)
@bounded
@given(data=st.data())
def test_parsers_refuse_or_parse_any_body(source: str, route: str, data: st.DataObject) -> None:
    provider = SOURCES[source].provider
    check_parse(source, route, data.draw(bodies(provider)))


@pytest.mark.parametrize("source", sorted(SOURCES))
@bounded
@given(headers=credentials(), body=st.binary(max_size=64))
def test_verifiers_pass_or_refuse_any_credentials(
    source: str, headers: dict[str, str], body: bytes
) -> None:
    check_verify(source, headers, body)


@bounded
@given(content_type=content_types, body=form_bodies, auth=st.none() | header_text)
def test_token_endpoint_answers_any_request(
    content_type: str, body: bytes, auth: str | None
) -> None:
    check_token_endpoint(content_type, body, auth)


@bounded
@given(token=header_text)
def test_bearer_tokens_are_checked_without_error(token: str) -> None:
    check_bearer(token)


@bounded
@given(data=config_documents)
def test_config_loads_or_says_what_to_fix(data: dict[str, Any]) -> None:
    check_config(data)


@bounded
@given(text=csv_texts)
def test_token_csv_is_read_whatever_it_holds(text: str) -> None:
    check_csv(text)


@bounded
@given(text=cursor_texts)
def test_cursors_decode_or_are_refused(text: str) -> None:
    check_cursor(text)


@pytest.mark.backends("sqlite", "postgresql")
@settings(
    max_examples=max(EXAMPLES // 2, 50),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(query=admin_queries())
def test_admin_lists_answer_any_query_without_a_5xx(shared_gateway: Running, query: str) -> None:
    with httpx.Client(
        base_url=shared_gateway.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    ) as client:
        response = client.get(query)
    check_admin_answer(
        response.status_code, response.headers.get("content-type", ""), response.content
    )


# -- crashes the fuzzing found, pinned ---------------------------------------------------

ZAPTEC_END = (
    b'{"SessionId":"00000000-0000-0000-0000-000000000000","ChargerId":"c-1",'
    b'"StartDateTime":"2025-12-04T12:02:37Z","EndDateTime":"%s","Energy":%s}'
)


@pytest.mark.parametrize(
    ("source", "route", "body"),
    [
        # OverflowError: an instant past 9999-12-31 in UTC once its offset is applied.
        ("zaptec", "session-end", ZAPTEC_END % (b"9999-12-31T23:59:59-23:59", b"1")),
        ("zaptec", "session-start", b'{"ChargerId":"c","StartDateTime":"0001-01-01T00:00+01:00"}'),
        (
            "ampeco-q",
            "",
            b'{"notification":"transaction.changed","transactionId":4,"action":"",'
            b'"lastUpdatedAt":"9999-12-31T23:39:-233399"}',
        ),
    ],
)
def test_found_crashes_are_refused(source: str, route: str, body: bytes) -> None:
    check_parse(source, route, body)


def test_easypark_instants_beyond_utc_are_a_schema_violation() -> None:
    body = (
        b'{"parkingId":1,"licenseNumber":"A","startDate":"2025-12-04T12:00:00Z",'
        b'"endDate":"9999-12-31T23:59:59-23","price":1,"priceVatAmount":0.2,'
        b'"priceExclusiveVatAmount":0.8,"currency":"SEK"}'
    )
    check_parse("easypark", "", body)
    with pytest.raises(Reject) as refused:
        PROVIDERS["easypark"].parse(SOURCES["easypark"], Call("", {}, body))
    assert refused.value.status == 422 and "endDate" in refused.value.detail


@pytest.mark.parametrize("energy", [b"1e300", b"1000000000", b"0.0000001"])
def test_zaptec_energy_out_of_range_is_a_schema_violation(energy: bytes) -> None:
    """An energy no charger reports (1e300 kWh) would sit in every budget sum of its
    token: Energy is bounded like money (beyond a float, msgspec refuses it already)."""
    body = ZAPTEC_END % (b"2025-12-04T13:00:00Z", energy)
    with pytest.raises(Reject) as refused:
        PROVIDERS["zaptec"].parse(SOURCES["zaptec"], Call("session-end", {}, body))
    assert refused.value.status == 422 and "Energy" in refused.value.detail


@pytest.mark.backends("sqlite", "postgresql")
@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/events?since=9999-12-31T23:59:59-23:59",
        "/api/v1/charging-sessions?until=0001-01-01T00:00:00%2B23:59",
        "/api/v1/decisions?since=9999-12-31T23:59:59-23:59",
    ],
)
def test_admin_instants_beyond_utc_are_a_bad_parameter(shared_gateway: Running, query: str) -> None:
    """OverflowError (a 500) before instants beyond UTC's range became a ValueError."""
    with shared_gateway.admin() as client:
        response = client.get(query)
    assert response.status_code == 400, response.text
    check_admin_answer(400, response.headers["content-type"], response.content)


@pytest.mark.backends("sqlite", "postgresql")
@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/events?source=a%00b",
        "/api/v1/parking-transactions?license_number=%00",
        "/api/v1/tokens?status=x&group_id=%00",
        "/api/v1/events/%00",
        "/api/v1/deliveries?destination=%00",
    ],
)
def test_admin_nul_in_a_parameter_is_a_bad_parameter(shared_gateway: Running, query: str) -> None:
    """PostgreSQL refuses NUL in text: this was a 503 storage-unavailable."""
    with shared_gateway.admin() as client:
        response = client.get(query)
    assert response.status_code == 400, response.text
    check_admin_answer(400, response.headers["content-type"], response.content)
    assert "NUL" in response.json()["detail"]
