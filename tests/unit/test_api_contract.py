"""The admin API's published contract: the OpenAPI document, the docs served offline,
parameter validation, problem answers everywhere under /api, token scopes and the audit
log of changes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from hookgate.config import ConfigError, parse_config
from support.gateway import (
    ADMIN_TOKEN,
    EASYPARK_PASSWORD,
    EASYPARK_USER,
    Running,
    base_config,
)
from support.polling import until

pytestmark = pytest.mark.backends("sqlite", "postgresql")

READER = "reader-token-for-tests"
WRITER = "writer-token-for-tests"
PROBLEM_JSON = "application/problem+json"
DOCS_UI = Path(__file__).parents[2] / "src/hookgate/admin/docs_ui"
FIXTURES = Path(__file__).parents[1] / "contract/fixtures"


@pytest.fixture
def scoped(make_gateway: Any, tmp_path: Path) -> Iterator[Running]:
    """A gateway with a read token, a named write token and an old-style bare token."""
    tokens = [
        ADMIN_TOKEN,
        {"name": "dashboard", "token": READER, "scope": "read"},
        {"name": "ops-alice", "token": WRITER, "scope": "write"},
    ]
    yield make_gateway(base_config(tmp_path / "hookgate.db", admin={"tokens": tokens}))


def client(gateway: Running, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def test_document_is_valid_openapi_and_covers_every_admin_route(scoped: Running) -> None:
    document = httpx.get(f"{scoped.url}/api/v1/openapi.json").json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    served: set[tuple[str, str]] = set()
    described = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    routes = [r for r in scoped.app.web.routes if isinstance(r, Route)]
    for route in routes:
        if not route.path.startswith("/api/v1/"):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                served.add((method, path))
    assert served, "no admin routes found"
    assert served == described
    # Every operation answers problem+json on errors and names a scope.
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["operationId"]
            if path != "/api/v1/openapi.json":
                assert operation["x-required-scope"] == ("read" if method == "get" else "write")
                assert PROBLEM_JSON in operation["responses"]["401"]["content"]


def test_list_parameters_are_described_with_their_allowed_values(scoped: Running) -> None:
    document = httpx.get(f"{scoped.url}/api/v1/openapi.json").json()
    params = {p["name"]: p for p in document["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert sorted(params["status"]["schema"]["enum"]) == [
        "failed",
        "processed",
        "quarantined",
        "received",
    ]
    assert params["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }
    assert "cursor" in params and params["since"]["schema"]["format"] == "date-time"


def test_docs_are_served_from_the_gateway_itself(scoped: Running) -> None:
    page = httpx.get(f"{scoped.url}/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(not s.startswith(("http:", "https:", "//")) for s in sources)
    for source in sources:
        asset = httpx.get(f"{scoped.url}/api/{source}")
        assert asset.status_code == 200, source
    init = httpx.get(f"{scoped.url}/api/docs/assets/init.js").text
    assert "validatorUrl: null" in init and "v1/openapi.json" in init
    problem(httpx.get(f"{scoped.url}/api/docs/assets/secrets.txt"), 404)


def test_vendored_docs_files_are_pinned_with_their_licence() -> None:
    readme = (DOCS_UI / "README.md").read_text(encoding="utf-8")
    assert "5.32.0" in readme and "Apache License 2.0" in readme
    assert (DOCS_UI / "LICENSE").read_text(encoding="utf-8").strip().startswith("Apache License")
    assert (DOCS_UI / "NOTICE").exists()
    bundle = (DOCS_UI / "swagger-ui-bundle.js").read_bytes()
    assert hashlib.sha256(bundle).hexdigest().startswith("d9bbb469128e88a9")


@pytest.mark.parametrize(
    ("url", "parameter", "allowed"),
    [
        (
            "/api/v1/events?status=bogus",
            "status",
            ["received", "processed", "failed", "quarantined"],
        ),
        ("/api/v1/deliveries?status=lost", "status", ["pending", "failed", "delivered", "dead"]),
        ("/api/v1/tokens?status=maybe", "status", ["valid", "blocked"]),
        ("/api/v1/events?since=yesterday", "since", None),
        ("/api/v1/decisions?until=2025-13-01T00:00:00Z", "until", None),
        ("/api/v1/events?cursor=%25%25", "cursor", None),
        ("/api/v1/audit?cursor=bm9wZQ", "cursor", None),
        ("/api/v1/destinations?cursor=bm9wZQ", "cursor", None),
        ("/api/v1/events?limit=0", "limit", None),
        # Unicode digits (str.isdigit holds for them, int() refuses some) are not a limit.
        ("/api/v1/events?limit=%C2%B9", "limit", None),
        ("/api/v1/sources?limit=%D9%A3", "limit", None),
        ("/api/v1/destinations?limit=%EF%BC%95", "limit", None),
        ("/api/v1/audit?limit=%F0%9D%9F%93", "limit", None),
        ("/api/v1/events?colour=red", "colour", None),
        ("/api/v1/events?limit=5&limit=6", "limit", None),
        ("/api/v1/export?month=2025-12&totals=perhaps", "totals", ["true", "false"]),
    ],
)
def test_bad_parameters_are_400_naming_them(
    scoped: Running, url: str, parameter: str, allowed: list[str] | None
) -> None:
    with client(scoped, READER) as c:
        body = problem(c.get(url), 400)
    assert body["parameter"] == parameter
    assert parameter in body["detail"]
    if allowed is not None:
        assert sorted(body["allowed"]) == sorted(allowed)


def test_every_error_under_api_is_problem_json(scoped: Running) -> None:
    with client(scoped, READER) as c:
        problem(c.get("/api/v1/no-such-thing"), 404)
        problem(c.get("/api/nothing"), 404)
        problem(c.delete("/api/v1/events"), 405)
        problem(c.get("/api/v1/events/01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404)
    problem(httpx.get(f"{scoped.url}/api/v1/events"), 401)
    problem(httpx.get(f"{scoped.url}/api/v1/events", headers={"Authorization": "Bearer x"}), 401)


def test_a_read_token_reads_but_every_change_is_403(scoped: Running) -> None:
    document = httpx.get(f"{scoped.url}/api/v1/openapi.json").json()
    changes = [
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method != "get"
    ]
    assert len(changes) > 20
    with client(scoped, READER) as c:
        assert c.get("/api/v1/events").status_code == 200
        for method, path in changes:
            url = re.sub(r"\{\w+\}", "x", path)
            body = problem(c.request(method.upper(), url, json={}), 403)
            assert "dashboard" in body["detail"] and "write" in body["detail"]
        # Nothing changed, and every attempt is in the audit log as refused.
        tried = c.get("/api/v1/audit", params={"limit": 500}).json()["items"]
        assert len(tried) == len(changes)
        assert {(e["actor"], e["outcome"], e["status"]) for e in tried} == {
            ("dashboard", "refused", 403)
        }


def test_changes_are_audited_with_who_what_and_outcome(scoped: Running) -> None:
    with client(scoped, WRITER) as alice, client(scoped, ADMIN_TOKEN) as legacy:
        created = alice.post("/api/v1/tokens", json={"uid": "04aabbccdd"})
        assert created.status_code == 201
        assert alice.post("/api/v1/tokens/04AABBCCDD/block").json()["status"] == "blocked"
        problem(legacy.post("/api/v1/tokens/nobody/block"), 404)
        rehearsal = legacy.post("/api/v1/replay", json={"source": "ampeco", "dry_run": True})
        assert rehearsal.json() == {"queued": 0, "dry_run": True}

        first = alice.get("/api/v1/audit", params={"limit": 2}).json()
        rest = alice.get("/api/v1/audit", params={"cursor": first["next"]}).json()
        entries = first["items"] + rest["items"]
        assert rest["next"] is None
        assert [
            (e["actor"], e["action"], e["target"], e["outcome"], e["status"]) for e in entries
        ] == [
            ("admin", "replay", None, "ok", 200),
            ("admin", "blockToken", "nobody", "refused", 404),
            ("ops-alice", "blockToken", "04AABBCCDD", "ok", 200),
            ("ops-alice", "createToken", None, "ok", 201),
        ]
        assert entries[0]["detail"]["body"] == {"source": "ampeco", "dry_run": True}
        assert entries[-1]["detail"]["body"] == {"uid": "04aabbccdd"}
        assert all(e["channel"] == "api" and e["at"].endswith("Z") for e in entries)
        mine = alice.get("/api/v1/audit", params={"actor": "ops-alice"}).json()["items"]
        assert {e["actor"] for e in mine} == {"ops-alice"}
        problem(alice.get("/api/v1/audit", params={"outcome": "meh"}), 400)


def test_named_tokens_in_the_configuration(tmp_path: Path) -> None:
    config = parse_config(
        base_config(
            tmp_path / "x.db",
            admin={"tokens": ["old", {"name": "ci", "token": "t", "scope": "read"}]},
        ),
        env={},
    )
    named = [(t.name, t.scope) for t in config.admin.named()]
    assert named == [("admin", "write"), ("ci", "read")]
    two = parse_config(base_config(tmp_path / "x.db", admin={"tokens": ["a", "b"]}), env={})
    assert [t.name for t in two.admin.named()] == ["admin-1", "admin-2"]
    with pytest.raises(ConfigError, match="unique"):
        parse_config(
            base_config(
                tmp_path / "x.db",
                admin={"tokens": [{"name": "x", "token": "1"}, {"name": "x", "token": "2"}]},
            ),
            env={},
        )
    with pytest.raises(ConfigError, match="scope"):
        parse_config(
            base_config(
                tmp_path / "x.db",
                admin={"tokens": [{"name": "x", "token": "1", "scope": "admin"}]},
            ),
            env={},
        )


def test_a_token_is_compared_with_every_configured_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from hookgate.admin import api as module
    from hookgate.config import AdminToken

    tokens = [AdminToken(name=f"t{i}", token=f"secret-{i}", scope="read") for i in range(3)]
    admin = module.AdminApi(lambda: None, tokens)  # type: ignore[arg-type,return-value]
    compared: list[bytes] = []
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return original(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", counting)
    assert admin._match("secret-0") is tokens[0]
    assert admin._match("nope") is None
    # Every token is compared, even after the first one matched: no early exit to time.
    assert len(compared) == 6


def test_sources_show_health_without_secrets(scoped: Running) -> None:
    basic = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
    body = (FIXTURES / "easypark/current.json").read_bytes()
    for credentials in (basic, "d3Jvbmc6d3Jvbmc="):
        httpx.post(
            f"{scoped.url}/hooks/easypark",
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Basic {credentials}"},
        )
    with client(scoped, READER) as c:
        source = c.get("/api/v1/sources/easypark").json()
        listed = c.get("/api/v1/sources", params={"provider": "easypark", "limit": 1}).json()
        problem(c.get("/api/v1/sources/nowhere"), 404)
        problem(c.get("/api/v1/sources", params={"provider": "acme"}), 400)
    assert source["last_event_id"] and source["last_rejection_reason"] == "unauthorized"
    assert sum(source["events_24h"].values()) == 1
    # Refusals are summed once their minute is over (docs/security.md): no count yet.
    assert isinstance(source["rejections_24h"], int)
    assert source["path"] == "/hooks/easypark" and source["auth"] == "basic"
    assert source["credentials"] == [
        "sha256:" + hashlib.sha256(EASYPARK_PASSWORD.encode()).hexdigest()[:12]
    ]
    text = json.dumps(source)
    assert EASYPARK_PASSWORD not in text and "password" not in source["settings"]
    assert [s["name"] for s in listed["items"]] == ["easypark"] and listed["next"]


def test_search_and_stats_through_the_api(scoped: Running) -> None:
    basic = base64.b64encode(f"{EASYPARK_USER}:{EASYPARK_PASSWORD}".encode()).decode()
    document = json.loads((FIXTURES / "easypark/current.json").read_bytes())
    stored = httpx.post(
        f"{scoped.url}/hooks/easypark",
        json=document,
        headers={"Authorization": f"Basic {basic}"},
    )
    assert stored.status_code == 200
    plate = document["licenseNumber"]
    with client(scoped, READER) as c:
        found = until(
            lambda: c.get(
                "/api/v1/search/events", params={"field": f"licenseNumber={plate}"}
            ).json()["items"],
            "the event to be indexed",
        )
        assert [hit["source"] for hit in found] == ["easypark"]
        none = c.get(
            "/api/v1/search/events",
            params=[("field", f"licenseNumber={plate}"), ("field", "parkingAreaId=0")],
        ).json()
        assert none["items"] == []
        problem(c.get("/api/v1/search/events", params={"field": "no-equals-sign"}), 400)
        # Before the epoch no event exists: an empty page, not a failure (found by fuzzing).
        early = {"q": "abc", "since": "0357-11-17T21:34:59Z"}
        assert c.get("/api/v1/search/events", params=early).json()["items"] == []
        counts = c.get("/api/v1/stats/events", params={"by": "source", "grain": "day"}).json()
        assert {(i["source"], i["count"]) for i in counts["items"]} == {("easypark", 1)}
        assert c.get("/api/v1/stats/backlog").json()["quarantined"] == 0
        problem(c.get("/api/v1/stats/events", params={"grain": "month"}), 400)


def test_a_large_action_body_is_413_and_a_failure_inside_is_problem_json(
    scoped: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    with client(scoped, WRITER) as c:
        big = c.post("/api/v1/replay", json={"event_ids": ["x" * 1000] * 300})
        assert problem(big, 413)["type"].endswith("body-too-large")
        entry = c.get("/api/v1/audit", params={"action": "replay"}).json()["items"][0]
        assert (entry["outcome"], entry["status"]) == ("refused", 413)

        def broken(*_: Any) -> Any:
            raise RuntimeError("a bug")

        monkeypatch.setattr(scoped.app.gateway.store, "list_events", broken)
        failed = problem(c.get("/api/v1/events"), 500)
        assert failed["type"].endswith("internal-error") and "bug" not in failed["detail"]


def test_a_nul_in_a_body_is_400_on_every_backend(scoped: Running) -> None:
    """Found by schemathesis on PostgreSQL: a NUL inside `event_ids` reached the
    database, which refused it as text (answered 503, as if storage were down)."""
    with client(scoped, WRITER) as c:
        replay = c.post("/api/v1/replay", json={"event_ids": ["01\x00"]})
        assert problem(replay, 400)["parameter"] == "body"
        token = c.post("/api/v1/tokens", json={"uid": "04AB", "label": "van\x00"})
        assert problem(token, 400)["parameter"] == "body"
        paused = c.post("/api/v1/destinations/x/disable", json={"reason": "\x00"})
        assert problem(paused, 400)["parameter"] == "body"
