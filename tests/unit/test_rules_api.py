"""Rule management API (/api/v1 tokens, groups, rules, budgets) on a real server.

Most tests share one gateway and use their own ids; the configuration-managed cases start
a gateway of their own.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config

pytestmark = pytest.mark.backends("sqlite", "postgresql")

PROBLEM_JSON = "application/problem+json"
PROBLEM = "urn:hookgate:problem:"
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


@pytest.fixture
def admin(shared_gateway: Running) -> httpx.Client:
    return shared_gateway.admin()


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM + code, body
    assert body["status"] == status
    return body


class Zaptec:
    """Session starts and ends on the `zaptec` source (OAuth, unknown_token = deny)."""

    def __init__(self, running: Running, source: str = "zaptec") -> None:
        self.client = httpx.Client(base_url=running.url, timeout=10)
        self.source = source
        token = self.client.post(
            f"/hooks/{source}/oauth/token",
            data={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
        )
        assert token.status_code == 200, token.text
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def start(self, token: str, charger: str = "CH-1") -> httpx.Response:
        return self.client.post(
            f"/hooks/{self.source}/session-start",
            json={"ChargerId": charger, "TokenId": token},
            headers=self.headers,
        )

    def end(self, session_id: str, kwh: float) -> httpx.Response:
        return self.client.post(
            f"/hooks/{self.source}/session-end",
            json={"SessionId": session_id, "Energy": kwh},
            headers=self.headers,
        )


# --------------------------------------------------------------------------- guard


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("GET", "/api/v1/tokens/ABC"),
        ("PUT", "/api/v1/tokens/ABC"),
        ("PATCH", "/api/v1/tokens/ABC"),
        ("DELETE", "/api/v1/tokens/ABC"),
        ("POST", "/api/v1/tokens/ABC/block"),
        ("GET", "/api/v1/groups"),
        ("DELETE", "/api/v1/groups/G"),
        ("GET", "/api/v1/rules"),
        ("PUT", "/api/v1/rules/CH-1"),
        ("GET", "/api/v1/budgets"),
        ("POST", "/api/v1/budgets"),
    ],
)
def test_every_endpoint_needs_the_admin_token(
    shared_gateway: Running, method: str, path: str
) -> None:
    response = httpx.request(method, shared_gateway.url + path, json={"uid": "ABC"})
    problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.request(
        method, shared_gateway.url + path, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401


# --------------------------------------------------------------------------- tokens


def test_token_round_trip(admin: httpx.Client) -> None:
    uid = unique("tag-")
    created = admin.post("/api/v1/tokens", json={"uid": uid, "label": "Anna", "driver": "A. N."})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["uid"] == uid.upper()
    assert body["managed_by"] == "api"
    assert body["status"] == "valid" and body["whitelist"] == "ALLOWED"
    assert created.headers["location"] == f"/api/v1/tokens/{uid.upper()}"

    # uids in paths are case-insensitive
    fetched = admin.get(f"/api/v1/tokens/{uid.lower()}")
    assert fetched.status_code == 200 and fetched.json() == body
    listed = admin.get("/api/v1/tokens", params={"limit": 500}).json()["items"]
    assert body in listed

    patched = admin.patch(f"/api/v1/tokens/{uid}", json={"label": "Anna B", "vehicle": "EV-1"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["label"] == "Anna B"
    assert patched.json()["driver"] == "A. N."  # untouched by the merge

    # PUT replaces: fields not given fall back to their defaults
    replaced = admin.put(f"/api/v1/tokens/{uid}", json={"uid": uid, "whitelist": "ALWAYS"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["label"] is None and replaced.json()["whitelist"] == "ALWAYS"

    # a GET body can be PUT back as it is
    again = admin.put(f"/api/v1/tokens/{uid}", json=replaced.json())
    assert again.status_code == 200 and again.json() == replaced.json()

    blocked = admin.post(f"/api/v1/tokens/{uid}/block")
    assert blocked.status_code == 200 and blocked.json()["status"] == "blocked"
    unblocked = admin.post(f"/api/v1/tokens/{uid.lower()}/unblock")
    assert unblocked.status_code == 200 and unblocked.json()["status"] == "valid"

    assert admin.delete(f"/api/v1/tokens/{uid}").status_code == 204
    problem(admin.get(f"/api/v1/tokens/{uid}"), 404, "not-found")
    problem(admin.delete(f"/api/v1/tokens/{uid}"), 404, "not-found")
    problem(admin.patch(f"/api/v1/tokens/{uid}", json={"label": "x"}), 404, "not-found")
    problem(admin.post(f"/api/v1/tokens/{uid}/block"), 404, "not-found")


def test_put_creates_a_missing_token_with_201_and_takes_the_uid_from_the_path(
    admin: httpx.Client,
) -> None:
    uid = unique("put-")
    response = admin.put(f"/api/v1/tokens/{uid}", json={"type": "APP_USER"})
    assert response.status_code == 201, response.text
    assert response.json()["uid"] == uid.upper() and response.json()["type"] == "APP_USER"


def test_creating_an_existing_uid_is_a_conflict_whatever_its_case(admin: httpx.Client) -> None:
    uid = unique("dup-")
    assert admin.post("/api/v1/tokens", json={"uid": uid}).status_code == 201
    body = problem(admin.post("/api/v1/tokens", json={"uid": uid.upper()}), 409, "already-exists")
    assert uid.upper() in body["detail"]


def test_managed_by_in_a_body_is_ignored(admin: httpx.Client) -> None:
    uid = unique("mb-")
    response = admin.post("/api/v1/tokens", json={"uid": uid, "managed_by": "config"})
    assert response.status_code == 201 and response.json()["managed_by"] == "api"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (b"{", 400, "malformed-json", None),
        (b"[1, 2]", 422, "invalid-entity", None),
        (b'{"uid": 12}', 422, "invalid-entity", "uid"),
        (b'{"uid": ""}', 422, "invalid-entity", "uid"),
        (b'{"uid": "   "}', 422, "invalid-entity", "uid"),
        (b'{"uid": "A", "status": "gone"}', 422, "invalid-entity", "status"),
        (b'{"uid": "A", "whitelist": "SOMETIMES"}', 422, "invalid-entity", "whitelist"),
        (b'{"uid": "A", "colour": "red"}', 422, "invalid-entity", None),
        (b'{"uid": "A", "scope": {"chargers": [1]}}', 422, "invalid-entity", "scope.chargers[0]"),
        (b'{"uid": "A", "max_sessions": -1}', 422, "invalid-entity", "max_sessions"),
        (b'{"uid": "A", "group_id": "no-such-group"}', 422, "unknown-group", "group_id"),
        (b'{"uid": "A", "scope": {"sources": ["ampeco"]}}', 422, "unknown-source", None),
    ],
)
def test_bad_token_bodies_get_a_problem_naming_the_field(
    admin: httpx.Client, body: bytes, status: int, code: str, field: str | None
) -> None:
    response = admin.post(
        "/api/v1/tokens", content=body, headers={"Content-Type": "application/json"}
    )
    found = problem(response, status, code)
    if field is not None:
        assert found.get("field") == field, found


def test_bad_dates_are_refused_with_the_reason(admin: httpx.Client) -> None:
    naive = admin.post("/api/v1/tokens", json={"uid": "D1", "valid_from": "2026-01-01T00:00:00"})
    assert "valid_from needs a UTC offset" in problem(naive, 422, "invalid-entity")["detail"]
    backwards = admin.post(
        "/api/v1/tokens",
        json={
            "uid": "D2",
            "valid_from": "2026-02-01T00:00:00Z",
            "valid_until": "2026-01-01T00:00:00Z",
        },
    )
    assert "valid_until must be after" in problem(backwards, 422, "invalid-entity")["detail"]


def test_the_uid_in_the_path_and_the_body_must_agree(admin: httpx.Client) -> None:
    uid = unique("agree-")
    assert admin.post("/api/v1/tokens", json={"uid": uid}).status_code == 201
    body = problem(admin.put(f"/api/v1/tokens/{uid}", json={"uid": "OTHER"}), 422, "id-mismatch")
    assert body["field"] == "uid"
    problem(admin.patch(f"/api/v1/tokens/{uid}", json={"uid": "OTHER"}), 422, "id-mismatch")
    # the same uid in another case agrees
    assert admin.patch(f"/api/v1/tokens/{uid}", json={"uid": uid.lower()}).status_code == 200


def test_token_list_pages_by_cursor_and_filters(admin: httpx.Client) -> None:
    group = unique("page-group-")
    assert admin.post("/api/v1/groups", json={"id": group}).status_code == 201
    uids = sorted(unique("PAGE-") for _ in range(5))
    for index, uid in enumerate(uids):
        status = "blocked" if index % 2 else "valid"
        created = admin.post(
            "/api/v1/tokens", json={"uid": uid, "group_id": group, "status": status}
        )
        assert created.status_code == 201, created.text

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"group_id": group, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = admin.get("/api/v1/tokens", params=params).json()
        pages += 1
        seen += [item["uid"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == uids and pages == 3

    blocked = admin.get("/api/v1/tokens", params={"group_id": group, "status": "blocked"}).json()
    assert [item["uid"] for item in blocked["items"]] == uids[1::2]
    problem(admin.get("/api/v1/tokens", params={"cursor": "%%%"}), 400, "bad-cursor")
    problem(admin.get("/api/v1/tokens", params={"limit": 0}), 400, "bad-parameter")


# --------------------------------------------------------------------------- groups


def test_group_round_trip_and_delete_refused_while_in_use(admin: httpx.Client) -> None:
    group = unique("fleet-")
    created = admin.post("/api/v1/groups", json={"id": group, "label": "Fleet", "max_sessions": 2})
    assert created.status_code == 201, created.text
    assert created.json()["managed_by"] == "api"
    assert admin.get(f"/api/v1/groups/{group}").json()["label"] == "Fleet"
    assert admin.patch(f"/api/v1/groups/{group}", json={"label": "Vans"}).json()["label"] == "Vans"
    assert admin.post(f"/api/v1/groups/{group}/block").json()["status"] == "blocked"
    assert admin.post(f"/api/v1/groups/{group}/unblock").json()["status"] == "valid"
    problem(admin.post("/api/v1/groups", json={"id": group}), 409, "already-exists")

    uid = unique("member-")
    assert admin.post("/api/v1/tokens", json={"uid": uid, "group_id": group}).status_code == 201
    budget = {"id": unique("gb-"), "subject": "group", "subject_id": group, "period": "month"}
    assert admin.post("/api/v1/budgets", json={**budget, "limit": 100}).status_code == 201

    body = problem(admin.delete(f"/api/v1/groups/{group}"), 409, "group-in-use")
    assert body["tokens"] == 1 and body["chargers"] == 0

    assert admin.patch(f"/api/v1/tokens/{uid}", json={"group_id": None}).status_code == 200
    assert admin.delete(f"/api/v1/groups/{group}").status_code == 204
    problem(admin.get(f"/api/v1/groups/{group}"), 404, "not-found")
    # the group's budget went with it
    problem(admin.get(f"/api/v1/budgets/{budget['id']}"), 404, "not-found")


# --------------------------------------------------------------------------- rules


def test_charger_rule_round_trip_and_validation(admin: httpx.Client) -> None:
    charger = unique("CH-R-")
    problem(
        admin.post("/api/v1/rules", json={"charger_id": charger, "mode": "reserved"}),
        422,
        "invalid-entity",
    )
    problem(
        admin.post(
            "/api/v1/rules", json={"charger_id": charger, "mode": "reserved", "group_id": "nope"}
        ),
        422,
        "unknown-group",
    )
    problem(
        admin.post("/api/v1/rules", json={"charger_id": charger, "mode": "x"}),
        422,
        "invalid-entity",
    )
    created = admin.post("/api/v1/rules", json={"charger_id": charger, "mode": "open"})
    assert created.status_code == 201, created.text
    assert admin.get(f"/api/v1/rules/{charger}").json()["mode"] == "open"
    assert charger in [
        r["charger_id"] for r in admin.get("/api/v1/rules", params={"mode": "open"}).json()["items"]
    ]

    group = unique("res-")
    assert admin.post("/api/v1/groups", json={"id": group}).status_code == 201
    changed = admin.put(f"/api/v1/rules/{charger}", json={"mode": "reserved", "group_id": group})
    assert changed.status_code == 200 and changed.json()["group_id"] == group
    body = problem(admin.delete(f"/api/v1/groups/{group}"), 409, "group-in-use")
    assert body["chargers"] == 1
    assert admin.delete(f"/api/v1/rules/{charger}").status_code == 204
    problem(admin.get(f"/api/v1/rules/{charger}"), 404, "not-found")


def test_an_open_charger_rule_lets_unknown_tokens_charge(
    shared_gateway: Running, admin: httpx.Client
) -> None:
    zaptec = Zaptec(shared_gateway)
    charger = unique("CH-OPEN-")
    assert zaptec.start("NEVER-SEEN", charger).status_code == 403
    assert (
        admin.post("/api/v1/rules", json={"charger_id": charger, "mode": "open"}).status_code == 201
    )
    assert zaptec.start("NEVER-SEEN", charger).status_code == 200


# --------------------------------------------------------------------------- budgets


def test_budget_round_trip_and_live_usage(shared_gateway: Running, admin: httpx.Client) -> None:
    uid = unique("BUDGET-")
    assert admin.post("/api/v1/tokens", json={"uid": uid}).status_code == 201
    budget_id = unique("b-")
    created = admin.post(
        "/api/v1/budgets",
        json={
            "id": budget_id,
            "subject": "token",
            "subject_id": uid.lower(),
            "period": "day",
            "limit": 10.5,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["subject_id"] == uid  # token uids are normalised here too
    assert body["limit"] == "10.5"
    assert (body["used"], body["reserved_kwh"], body["remaining"]) == ("0", "0", "10.5")

    zaptec = Zaptec(shared_gateway)
    started = zaptec.start(uid)
    assert started.status_code == 200, started.text
    listed = admin.get("/api/v1/budgets", params={"subject": "token", "subject_id": uid}).json()
    [item] = listed["items"]
    assert item["id"] == budget_id
    assert item["active_sessions"] == 1
    assert item["reserved_kwh"] == "1.0"  # session_reserve_kwh held until the end reports
    assert item["remaining"] == "9.5"

    assert zaptec.end(started.json()["sessionId"], 4.25).status_code == 200
    item = admin.get(f"/api/v1/budgets/{budget_id}").json()
    assert (item["used"], item["reserved_kwh"], item["remaining"]) == ("4.25", "0", "6.25")

    patched = admin.patch(f"/api/v1/budgets/{budget_id}", json={"limit": "4"})
    assert patched.status_code == 200 and patched.json()["remaining"] == "0"
    denied = zaptec.start(uid)
    assert denied.status_code == 403 and denied.json()["reason"] == "NO_CREDIT"

    problem(
        admin.post(
            "/api/v1/budgets",
            json={
                "id": unique("b-"),
                "subject": "token",
                "subject_id": "NOBODY",
                "period": "day",
                "limit": 1,
            },
        ),
        422,
        "unknown-subject",
    )
    problem(
        admin.post(
            "/api/v1/budgets",
            json={
                "id": unique("b-"),
                "subject": "token",
                "subject_id": uid,
                "period": "day",
                "limit": -1,
            },
        ),
        422,
        "invalid-entity",
    )
    problem(
        admin.post(
            "/api/v1/budgets",
            json={
                "id": unique("b-"),
                "subject": "token",
                "subject_id": uid,
                "period": "day",
                "metric": "money",
                "limit": 10,
            },
        ),
        422,
        "invalid-entity",
    )

    # deleting the token deletes its budgets
    assert admin.delete(f"/api/v1/tokens/{uid}").status_code == 204
    problem(admin.get(f"/api/v1/budgets/{budget_id}"), 404, "not-found")


# --------------------------------------------------------------------------- decisions


def test_api_changes_are_in_force_for_the_next_zaptec_start(
    shared_gateway: Running, admin: httpx.Client
) -> None:
    zaptec = Zaptec(shared_gateway)
    uid = unique("live-")

    unknown = zaptec.start(uid)
    assert unknown.status_code == 403 and unknown.json()["reason"] == "UNKNOWN"

    assert admin.post("/api/v1/tokens", json={"uid": uid}).status_code == 201
    allowed = zaptec.start(uid.lower())
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["sessionId"]

    assert admin.post(f"/api/v1/tokens/{uid}/block").status_code == 200
    blocked = zaptec.start(uid)
    assert blocked.status_code == 403 and blocked.json()["reason"] == "BLOCKED"

    assert admin.post(f"/api/v1/tokens/{uid}/unblock").status_code == 200
    assert zaptec.start(uid).status_code == 200

    decisions = admin.get("/api/v1/decisions", params={"token": uid.upper()}).json()["items"]
    assert [d["result"] for d in decisions] == ["ALLOWED", "BLOCKED", "ALLOWED", "UNKNOWN"]


# --------------------------------------------------------------------------- config wins


def test_configuration_managed_entities_cannot_be_changed(
    make_gateway: Any, tmp_path: Path
) -> None:
    running = make_gateway(
        base_config(
            tmp_path / "cfg.db",
            authorization={
                "groups": [{"id": "staff"}],
                "tokens": [{"uid": "cfg1", "group_id": "staff"}],
                "chargers": [{"charger_id": "CH-CFG", "mode": "open"}],
                "budgets": [
                    {
                        "id": "cfg-day",
                        "subject": "token",
                        "subject_id": "CFG1",
                        "period": "day",
                        "limit": 20,
                    }
                ],
            },
        )
    )
    with running.admin() as admin:
        token = admin.get("/api/v1/tokens/cfg1")
        assert token.status_code == 200 and token.json()["managed_by"] == "config"
        assert admin.get("/api/v1/tokens", params={"managed_by": "config"}).json()["items"] == [
            token.json()
        ]
        for response in (
            admin.post("/api/v1/tokens", json={"uid": "CFG1"}),
            admin.put("/api/v1/tokens/CFG1", json={"label": "x"}),
            admin.patch("/api/v1/tokens/cfg1", json={"label": "x"}),
            admin.post("/api/v1/tokens/CFG1/block"),
            admin.delete("/api/v1/tokens/CFG1"),
            admin.patch("/api/v1/groups/staff", json={"label": "x"}),
            admin.delete("/api/v1/groups/staff"),
            admin.put("/api/v1/rules/CH-CFG", json={"mode": "open"}),
            admin.delete("/api/v1/rules/CH-CFG"),
            admin.patch("/api/v1/budgets/cfg-day", json={"limit": 1}),
            admin.delete("/api/v1/budgets/cfg-day"),
        ):
            body = problem(response, 409, "managed-by-config")
            assert "configuration file" in body["detail"]
        assert admin.get("/api/v1/tokens/CFG1").json()["status"] == "valid"
        assert admin.get("/api/v1/budgets/cfg-day").json()["managed_by"] == "config"
        # API entities may still refer to configuration ones
        joined = admin.post("/api/v1/tokens", json={"uid": "API1", "group_id": "staff"})
        assert joined.status_code == 201 and joined.json()["managed_by"] == "api"
