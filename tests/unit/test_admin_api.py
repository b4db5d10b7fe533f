"""Admin read API (/api/v1): bearer-guarded listing, filters, cursors, event detail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from hookgate.config import parse_config
from support.gateway import (
    ADMIN_TOKEN,
    AMPECO_NEW,
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    ZTLMENT_SECRET,
    Running,
    base_config,
    serve,
)
from support.polling import until

pytestmark = pytest.mark.backends("sqlite", "postgresql")

PROBLEM_JSON = "application/problem+json"


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def post_ampeco(gateway: Running, document: dict[str, Any]) -> httpx.Response:
    body = dumps(document)
    signature = hmac.new(AMPECO_NEW.encode(), body, hashlib.sha256).hexdigest()
    return httpx.post(
        f"{gateway.url}/hooks/ampeco",
        content=body,
        headers={"Content-Type": "application/json", "X-Signature": signature},
    )


def post_ztlment(
    gateway: Running, document: dict[str, Any], secret: str = ZTLMENT_SECRET
) -> httpx.Response:
    body = dumps(document)
    digest = hmac.new(secret.encode(), body, hashlib.sha512).digest()
    return httpx.post(
        f"{gateway.url}/hooks/ztlment",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Payload-Signature": base64.b64encode(digest).decode(),
        },
    )


def post_easypark(gateway: Running, source: str, document: dict[str, Any]) -> httpx.Response:
    credentials = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
    return httpx.post(
        f"{gateway.url}/hooks/{source}",
        content=dumps(document),
        headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
    )


PARKING = {
    "parkingId": 2791368361,
    "parkingUserId": 8993734,
    "licenseNumber": "ABC123",
    "startDate": "2025-12-04T12:02:37Z",
    "endDate": "2025-12-04T13:12:00Z",
    "parkingAreaId": 291048,
    "parkingAreaName": "Nyköpings lasarett, besökande",
    "parkingOperatorId": 403,
    "parkingOperatorName": "EuroPark Svenska AB",
    "price": 22.45,
    "priceVatAmount": 4.49,
    "priceExclusiveVatAmount": 17.96,
    "transactionFeeExclusiveVatAmount": 3.96,
    "transactionFeeVatAmount": 0.99,
    "transactionFee": 4.95,
    "currency": "SEK",
}
CDR = {
    "notification": "cdr.received",
    "id": "DE-AMP-0000184210",
    "createdAt": "2025-12-04T13:01:00Z",
}
EVSE = {
    "notification": "evse.changed",
    "evseId": 341,
    "action": "updated",
    "lastUpdatedAt": "2025-12-04T12:00:00Z",
}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Populated:
    """A gateway holding five events over four sources; `mid` lies between the 3rd and 4th."""

    gateway: Running
    before: datetime
    mid: datetime


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Populated]:
    """Read-only tests share one populated gateway (a gateway start costs about 0.2 s)."""
    db = tmp_path_factory.mktemp("admin") / "hookgate.db"
    for gateway in serve(parse_config(base_config(db), env={})):
        before = datetime.now(UTC) - timedelta(seconds=1)
        assert post_ampeco(gateway, CDR).status_code == 202
        assert post_ampeco(gateway, EVSE).status_code == 202
        assert post_easypark(gateway, "easypark", PARKING).status_code == 200
        # Ids hold milliseconds: `mid` is the next one, and the 4th event comes after it.
        last = datetime.now(UTC)
        mid = last.replace(microsecond=last.microsecond // 1000 * 1000) + timedelta(milliseconds=1)
        until(lambda mid=mid: datetime.now(UTC) > mid, "the clock to pass mid")
        state = {"id": 48213, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}
        assert post_ztlment(gateway, state).status_code == 200
        invalid = {k: v for k, v in PARKING.items() if k != "price"}
        assert post_easypark(gateway, "easypark-q", invalid).status_code == 200
        assert gateway.count("inbox") == 5
        # The in-process worker processes what was stored; wait so listings are stable.
        until(lambda g=gateway: not g.count("inbox", "status = 'received'"), "processing")
        yield Populated(gateway, before, mid)


# --------------------------------------------------------------------------- guard


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/events",
        "/api/v1/rejections",
        "/api/v1/decisions",
        "/api/v1/events/01JEXAMPLE0000000000000000",
    ],
)
def test_requests_without_a_token_get_401_with_a_bearer_challenge(
    populated: Populated, path: str
) -> None:
    gateway = populated.gateway
    response = httpx.get(f"{gateway.url}{path}")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-the-admin-token",
        f"Bearer {ADMIN_TOKEN}x",
        f"Basic {base64.b64encode(f'admin:{ADMIN_TOKEN}'.encode()).decode()}",
        ADMIN_TOKEN,
    ],
    ids=["wrong-token", "token-with-suffix", "basic-scheme", "no-scheme"],
)
def test_requests_with_a_wrong_token_get_401(populated: Populated, authorization: str) -> None:
    gateway = populated.gateway
    response = httpx.get(f"{gateway.url}/api/v1/events", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "www-authenticate" in response.headers


def test_healthz_needs_no_token(populated: Populated) -> None:
    gateway = populated.gateway
    response = httpx.get(f"{gateway.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --------------------------------------------------------------------------- listing


def test_events_are_listed_newest_first(populated: Populated) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        response = admin.get("/api/v1/events")
    assert response.status_code == 200
    page = response.json()
    assert page["next"] is None
    items = page["items"]
    assert [item["type"] for item in items] == [
        "invalid",
        "payment.processed",
        "parking.completed",
        "evse.changed",
        "cdr.received",
    ]
    ids = [item["id"] for item in items]
    assert ids == sorted(ids, reverse=True)
    assert all("raw_body" not in item for item in items)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "ampeco"}, {"cdr.received", "evse.changed"}),
        ({"source": "easypark-q"}, {"invalid"}),
        ({"provider": "easypark"}, {"parking.completed", "invalid"}),
        ({"provider": "ztlment"}, {"payment.processed"}),
        ({"type": "evse.changed"}, {"evse.changed"}),
        ({"type": "payment.processed"}, {"payment.processed"}),
        ({"status": "quarantined"}, {"invalid"}),
        (
            {"status": "processed"},
            {"cdr.received", "evse.changed", "parking.completed", "payment.processed"},
        ),
        ({"source": "ampeco", "type": "cdr.received"}, {"cdr.received"}),
        ({"source": "ampeco", "provider": "easypark"}, set()),
        ({"source": "nobody"}, set()),
    ],
)
def test_events_filters(populated: Populated, params: dict[str, str], expected: set[str]) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        response = admin.get("/api/v1/events", params=params)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["type"] for item in items} == expected
    assert len(items) == len(expected)
    for key, value in params.items():
        for item in items:
            assert item[key] == value


def test_events_since_filter(populated: Populated) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        everything = admin.get("/api/v1/events", params={"since": iso(populated.before)})
        later = admin.get("/api/v1/events", params={"since": iso(populated.mid)})
        offset = admin.get(
            "/api/v1/events",
            params={"since": populated.mid.astimezone(timezone(timedelta(hours=2))).isoformat()},
        )
        future = admin.get(
            "/api/v1/events", params={"since": iso(datetime.now(UTC) + timedelta(hours=1))}
        )
        bad = admin.get("/api/v1/events", params={"since": "yesterday"})
    assert len(everything.json()["items"]) == 5
    assert {i["type"] for i in later.json()["items"]} == {"payment.processed", "invalid"}
    assert {i["type"] for i in offset.json()["items"]} == {"payment.processed", "invalid"}
    assert future.json()["items"] == []
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith(PROBLEM_JSON)


def test_cursor_pagination_walks_every_row_exactly_once(populated: Populated) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        all_ids = [i["id"] for i in admin.get("/api/v1/events").json()["items"]]
        seen: list[str] = []
        sizes = []
        cursor = None
        for _ in range(10):
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            response = admin.get("/api/v1/events", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            sizes.append(len(page["items"]))
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next"]
            if cursor is None:
                break
    assert sizes == [2, 2, 1]
    assert seen == all_ids
    assert len(set(seen)) == 5


def test_cursor_pagination_keeps_the_filter(populated: Populated) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        first = admin.get("/api/v1/events", params={"limit": "1", "source": "ampeco"}).json()
        assert first["next"] is not None
        second = admin.get(
            "/api/v1/events", params={"limit": "1", "source": "ampeco", "cursor": first["next"]}
        ).json()
    assert second["next"] is None
    assert {first["items"][0]["type"], second["items"][0]["type"]} == {
        "cdr.received",
        "evse.changed",
    }


@pytest.mark.parametrize("cursor", ["!!!", "not-a-cursor", "AAAA", "%00"])
def test_bad_cursor_gets_400(populated: Populated, cursor: str) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        response = admin.get("/api/v1/events", params={"cursor": cursor})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["status"] == 400


@pytest.mark.parametrize("limit", ["0", "-1", "501", "ten", "2.5", ""])
def test_bad_limit_gets_400(populated: Populated, limit: str) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        response = admin.get("/api/v1/events", params={"limit": limit})
        rejections = admin.get("/api/v1/rejections", params={"limit": limit})
    for r in (response, rejections):
        assert r.status_code == 400
        assert r.headers["content-type"].startswith(PROBLEM_JSON)


# --------------------------------------------------------------------------- detail


def test_event_detail_includes_the_raw_body(populated: Populated) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        (item,) = admin.get(
            "/api/v1/events", params={"provider": "easypark", "status": "processed"}
        ).json()["items"]
        response = admin.get(f"/api/v1/events/{item['id']}")
    assert response.status_code == 200
    event = response.json()
    assert event["id"] == item["id"]
    assert event["source"] == "easypark"
    assert event["raw_body"] == dumps(PARKING).decode()
    assert base64.b64decode(event["raw_body_base64"]) == dumps(PARKING)
    assert event["document"]["price"] == "22.45"
    assert event["body_sha256"] == hashlib.sha256(dumps(PARKING)).hexdigest()


def test_unknown_event_id_gets_404_problem(populated: Populated) -> None:
    gateway = populated.gateway
    with gateway.admin() as admin:
        response = admin.get("/api/v1/events/01JEXAMPLE0000000000000000")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["status"] == 404
    assert problem["type"]


# --------------------------------------------------------------------------- rejections


def test_rejections_are_listed_with_masked_headers(gateway: Running) -> None:
    assert (
        post_ztlment(
            gateway, {"id": 1, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}, secret="wrong"
        ).status_code
        == 401
    )
    bad_basic = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}x".encode()).decode()
    assert (
        httpx.post(
            f"{gateway.url}/hooks/easypark",
            content=dumps(PARKING),
            headers={"Content-Type": "application/json", "Authorization": f"Basic {bad_basic}"},
        ).status_code
        == 401
    )
    assert httpx.get(f"{gateway.url}/hooks/ampeco").status_code == 405
    with gateway.admin() as admin:
        page = admin.get("/api/v1/rejections").json()
        only_easypark = admin.get("/api/v1/rejections", params={"source": "easypark"}).json()
        paged = admin.get("/api/v1/rejections", params={"limit": "2"}).json()
    items = page["items"]
    assert [(i["source"], i["status"]) for i in items] == [
        ("ampeco", 405),
        ("easypark", 401),
        ("ztlment", 401),
    ]
    assert [i["source"] for i in only_easypark["items"]] == ["easypark"]
    assert len(paged["items"]) == 2 and paged["next"]
    easypark = items[1]
    assert easypark["method"] == "POST"
    assert easypark["path"] == "/hooks/easypark"
    assert easypark["reason"]
    assert easypark["headers"].get("authorization", "Basic ***") == "Basic ***"
    assert EASYPARK_PASSWORD not in json.dumps(page)
    assert bad_basic not in json.dumps(page)
    assert easypark["body"] == dumps(PARKING).decode()
    assert easypark["body_sha256"] == hashlib.sha256(dumps(PARKING)).hexdigest()


def test_decisions_are_listed(gateway: Running) -> None:
    with httpx.Client(base_url=gateway.url) as client:
        token = client.post(
            "/hooks/zaptec-allow/oauth/token",
            data={"grant_type": "password", "username": "zaptec", "password": "zap:pass:word"},
        ).json()["access_token"]
        started = client.post(
            "/hooks/zaptec-allow/session-start",
            content=dumps({"ChargerId": "c-1", "TokenId": "RFID-1"}),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
    assert started.status_code == 200
    with gateway.admin() as admin:
        (decision,) = admin.get("/api/v1/decisions").json()["items"]
    assert decision["result"] == "ALLOWED"
    assert decision["session_id"] == started.json()["sessionId"]
    assert decision["charger_id"] == "c-1"
