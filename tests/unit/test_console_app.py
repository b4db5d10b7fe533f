"""The console over a real gateway on both backends, through HTTP without a browser:
sign-in and its cookie, pages and their JSON twins, the attention state, and changes that
need the session's CSRF token and a write token, audited with the channel `console`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookgate.config import parse_config
from hookgate.domain.events import InboundEvent, RejectionCount
from hookgate.ids import new_id
from hookgate.store import make_store
from support.e2e import run_cli
from support.gateway import ADMIN_TOKEN, AMPECO_NEW, AMPECO_OLD, Running, base_config, serve
from support.polling import until
from support.storage import fresh_storage
from support.views import seed

pytestmark = pytest.mark.backends("sqlite", "postgresql")

READ_TOKEN = "read-only-token-for-console-unit-tests"
PAGES = [
    "/console/",
    "/console/?window=day",
    "/console/?window=week",
    "/console/events",
    "/console/events?q=ABC123&field=licenseNumber%3DABC123",
    "/console/rejections?window=week",
    "/console/deliveries?status=dead",
    "/console/charging",
    "/console/parking",
    "/console/costs?month=2026-01",
    "/console/audit",
]


@pytest.fixture
def console(backend: str, tmp_path: Path) -> Iterator[Running]:
    with fresh_storage(backend, tmp_path) as url:
        data = base_config(
            tmp_path / "hookgate.db",
            url,
            admin={
                "tokens": [
                    ADMIN_TOKEN,
                    {"name": "viewer", "token": READ_TOKEN, "scope": "read"},
                ]
            },
            destinations=[{"name": "erp", "kind": "http", "url": "http://127.0.0.1:9/in"}],
        )
        yield from serve(parse_config(data, env={}))


@contextmanager
def signed_in(running: Running, token: str = ADMIN_TOKEN) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running.url, timeout=10) as client:
        answer = client.post("/console/login", data={"token": token, "next": "/console/"})
        assert answer.status_code == 303, answer.text
        yield client


def csrf_of(client: httpx.Client, path: str = "/console/deliveries") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def test_sign_in_sets_a_strict_cookie_and_stays_inside_the_console(console: Running) -> None:
    with httpx.Client(base_url=console.url, timeout=10) as client:
        assert client.get("/").headers["location"] == "/console/"
        page = client.get("/console/events?status=failed")
        assert page.status_code == 303
        assert (
            page.headers["location"] == "/console/login?next=%2Fconsole%2Fevents%3Fstatus%3Dfailed"
        )
        assert client.get("/console/events?format=json").status_code == 401

        wrong = client.post("/console/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers

        away = client.post(
            "/console/login", data={"token": ADMIN_TOKEN, "next": "https://evil.example/"}
        )
        assert away.headers["location"] == "/console/"
        cookie = away.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        behind_tls = client.post(
            "/console/login",
            data={"token": ADMIN_TOKEN, "next": "//evil.example/"},
            headers={"X-Forwarded-Proto": "https"},
        )
        assert behind_tls.headers["location"] == "/console/"
        assert "secure" in behind_tls.headers["set-cookie"].lower()


def test_every_page_renders_with_its_json_twin(console: Running) -> None:
    with signed_in(console) as client:
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, (path, page.text[:500])
            assert page.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in page.headers["content-security-policy"]
            joined = path + ("&" if "?" in path else "?") + "format=json"
            twin = client.get(joined)
            assert twin.status_code == 200 and isinstance(twin.json(), dict), joined
        bad = client.get("/console/events?status=bogus")
        assert bad.status_code == 400 and "status is one of" in bad.text
        missing = client.get("/console/events/nope?format=json")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


def test_pausing_a_destination_shows_in_the_attention_state_and_is_audited(
    console: Running,
) -> None:
    with signed_in(console) as client:
        token = csrf_of(client)
        overview = client.get("/console/?format=json").json()
        assert overview["attention"] == []
        paused = client.post("/console/destinations/erp/pause", data={"csrf": token})
        assert paused.status_code == 303
        assert "paused" in paused.headers["set-cookie"]  # the notice shown next
        assert "Destination erp paused" in client.get("/console/deliveries").text
        titles = [a["title"] for a in client.get("/console/?format=json").json()["attention"]]
        assert titles == ["Destination paused: erp"]
        resumed = client.post("/console/destinations/erp/resume", data={"csrf": token})
        assert resumed.status_code == 303
        assert client.get("/console/?format=json").json()["attention"] == []
        unknown = client.post("/console/destinations/nope/pause", data={"csrf": token})
        assert unknown.status_code == 303  # back to the page, saying what went wrong
        audit = client.get("/console/audit?format=json").json()["items"]
    done = [(a["actor"], a["channel"], a["action"], a["target"], a["outcome"]) for a in audit]
    assert done == [
        ("admin", "console", "pause", "nope", "refused"),
        ("admin", "console", "resume", "erp", "ok"),
        ("admin", "console", "pause", "erp", "ok"),
    ]


def test_changes_need_the_csrf_token_and_a_write_token(console: Running) -> None:
    with signed_in(console) as client:
        token = csrf_of(client)
        assert client.post("/console/destinations/erp/pause").status_code == 403
        forged = client.post("/console/destinations/erp/pause", data={"csrf": token[:-1] + "x"})
        assert forged.status_code == 403
        assert client.get("/console/?format=json").json()["attention"] == []
    with signed_in(console, READ_TOKEN) as viewer:
        page = viewer.get("/console/deliveries").text
        assert "Pause erp" not in page and "Replay by filter" not in page
        refused = viewer.post("/console/destinations/erp/pause", data={"csrf": csrf_of(viewer)})
        assert refused.status_code == 403 and "may only look" in refused.text
        assert viewer.get("/console/?format=json").json()["attention"] == []
        # sign-out needs the CSRF token too, then the cookie is refused
        assert viewer.post("/console/logout").status_code == 403
        out = viewer.post("/console/logout", data={"csrf": csrf_of(viewer)})
        assert out.headers["location"] == "/console/login"
        assert viewer.get("/console/?format=json").status_code == 401


def test_a_refused_call_is_re_run_from_the_console_once_its_secret_is_configured(
    backend: str, tmp_path: Path
) -> None:
    rotated = "ampeco-rotated-secret-not-yet-configured"

    def config(secrets: list[str]) -> Any:
        data = base_config(tmp_path / "hookgate.db", url)
        for source in data["sources"]:
            if source["name"] == "ampeco":
                source["secrets"] = secrets
        return parse_config(data, env={})

    with fresh_storage(backend, tmp_path) as url:
        first = serve(config([AMPECO_OLD, AMPECO_NEW]))
        running = next(first)
        try:
            sent = run_cli("send", "ampeco", "--url", running.url, "--secret", rotated, check=False)
            assert "failed" in sent.stdout + sent.stderr or sent.returncode == 1
            with signed_in(running) as client:
                page = client.get("/console/rejections?format=json").json()
                rejection = next(r for r in page["items"] if r["source"] == "ampeco")
                detail = client.get(f"/console/rejections/{rejection['id']}")
                assert "Re-run this call" in detail.text
                token = csrf_of(client, f"/console/rejections/{rejection['id']}")
                still = client.post(
                    f"/console/rejections/{rejection['id']}/rerun", data={"csrf": token}
                )
                assert still.status_code == 303
                assert "Not%20done" in still.headers["set-cookie"]
        finally:
            first.close()
        second = serve(config([AMPECO_OLD, AMPECO_NEW, rotated]))
        running = next(second)
        try:
            with signed_in(running) as client:
                token = csrf_of(client, f"/console/rejections/{rejection['id']}")
                done = client.post(
                    f"/console/rejections/{rejection['id']}/rerun", data={"csrf": token}
                )
                assert done.status_code == 303
                assert done.headers["location"].startswith("/console/events/")
                event = client.get(done.headers["location"] + "?format=json").json()["event"]
                assert event["source"] == "ampeco"
                again = client.get(f"/console/rejections/{rejection['id']}").text
                assert "Re-run this call" not in again
        finally:
            second.close()


def test_a_quarantined_event_shows_in_the_attention_state_and_is_reprocessed(
    backend: str, tmp_path: Path
) -> None:
    parking = (Path(__file__).parents[1] / "contract/fixtures/easypark/current.json").read_bytes()
    held = InboundEvent(
        id=new_id(),
        source="easypark-q",
        provider="easypark",
        event_type="invalid",
        received_at=datetime.now(UTC),
        dedup_key="quarantine:1",
        raw_body=parking,
        body_sha256="00",
        headers={"content-type": "application/json"},
        document={"parkingId": "quarantine:1"},
        status="quarantined",
    )

    async def store_it(config: Any) -> None:
        store = make_store(config.storage)
        await store.migrate()
        await store.open()
        try:
            await store.ingest(held)
        finally:
            await store.close()

    with fresh_storage(backend, tmp_path) as url:
        config = parse_config(base_config(tmp_path / "hookgate.db", url), env={})
        asyncio.run(store_it(config))
        gateway = serve(config)
        running = next(gateway)
        try:
            with signed_in(running) as client:
                attention = client.get("/console/?format=json").json()["attention"]
                assert [a["title"] for a in attention] == ["1 quarantined events"]
                page = client.get(f"/console/events/{held.id}").text
                assert "Reprocess" in page
                done = client.post(
                    f"/console/events/{held.id}/reprocess",
                    data={"csrf": csrf_of(client, f"/console/events/{held.id}")},
                )
                assert done.headers["location"] == f"/console/events/{held.id}"
                assert "queued" in done.headers["set-cookie"]
                until(
                    lambda: (
                        client.get(f"/console/events/{held.id}?format=json").json()["event"][
                            "status"
                        ]
                        == "processed"
                    ),
                    "the reprocessed event to be processed",
                )
                assert client.get("/console/?format=json").json()["attention"] == []
                shown = client.get(f"/console/events/{held.id}?format=json").json()
                assert shown["outcome"]["processed_at"] is not None
                assert shown["outcome"]["error"] is None
                assert "processed 20" in client.get(f"/console/events/{held.id}").text
        finally:
            gateway.close()


def test_fleet_costs_download_and_a_silent_source(console: Running) -> None:
    async def old_event() -> None:
        store = make_store(console.config.storage)
        await store.open()
        try:
            await store.ingest(
                InboundEvent(
                    id=new_id(),
                    source="ampeco",
                    provider="ampeco",
                    event_type="session.started",
                    received_at=datetime.now(UTC) - timedelta(hours=3),
                    dedup_key="old:1",
                    raw_body=b"{}",
                    body_sha256="00",
                    headers={},
                    document={},
                    status="processed",
                )
            )
        finally:
            await store.close()

    asyncio.run(old_event())
    with signed_in(console) as client:
        attention = client.get("/console/?format=json").json()["attention"]
        assert [a["title"] for a in attention] == ["Silent source: ampeco"]
        assert "No event for 3 h" in attention[0]["detail"]
        lines = client.get("/console/costs/download?month=2026-01&as=csv")
        assert lines.status_code == 200 and lines.headers["content-type"].startswith("text/csv")
        assert 'filename="fleet-costs-2026-01.csv"' in lines.headers["content-disposition"]
        totals = client.get("/console/costs/download?month=2026-01&as=totals")
        assert "fleet-costs-2026-01-totals.csv" in totals.headers["content-disposition"]
        report = client.get("/console/costs/download?month=2026-01&as=json").json()
        assert report["month"] == "2026-01" and report["lines"] == []
        bad = client.get("/console/costs?month=2026-13")
        assert bad.status_code == 400


def test_a_rejection_spike_raises_the_attention_state(console: Running) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)

    async def refusals(counts: list[RejectionCount]) -> None:
        store = make_store(console.config.storage)
        await store.open()
        try:
            await store.count_rejections(counts)
        finally:
            await store.close()

    def count(minutes_ago: int, total: int) -> RejectionCount:
        return RejectionCount(
            minute=now - timedelta(minutes=minutes_ago),
            source="ampeco",
            reason="unauthorized",
            total=total,
            recorded=1,
            body_bytes=100,
        )

    # the day's usual rate: a few an hour, then 30 in the last quarter hour
    asyncio.run(refusals([count(m, 1) for m in range(60, 24 * 60, 20)]))
    with signed_in(console) as client:
        assert client.get("/console/?format=json").json()["attention"] == []
        asyncio.run(refusals([count(5, 30)]))
        attention = client.get("/console/?format=json").json()["attention"]
    assert [a["title"] for a in attention] == ["Rejection spike: ampeco"]
    assert attention[0]["link"] == "/console/rejections?source=ampeco&window=hour"


def test_flagged_sessions_and_parking_show_their_flags(console: Running) -> None:
    flagged = seed(
        console.storage_url,
        "charging_sessions",
        source="zaptec",
        provider="zaptec",
        session_key="big",
        started_at=datetime.now(UTC) - timedelta(hours=2),
        ended_at=datetime.now(UTC) - timedelta(hours=1),
        token="VAN-7",
        plate="AB123",
        flags=["energy_above_max", "parked_while_charging"],
    )
    seed(
        console.storage_url,
        "parking_transactions",
        parking_id="p-flagged",
        license_number="AB 123",
        flags=["parked_while_charging"],
    )
    with signed_in(console) as client:
        listing = client.get("/console/charging").text
        row = listing[listing.index(f"/console/charging/sessions/{flagged['id']}") :]
        row = row[: row.index("</tr>")]
        assert '<span class="flag">energy_above_max</span>' in row
        assert '<span class="flag">parked_while_charging</span>' in row
        detail = client.get(f"/console/charging/sessions/{flagged['id']}").text
        assert "More energy than the configured maximum for this charger or token." in detail
        assert "The vehicle was parked (EasyPark) while this session charged it" in detail
        assert "AB123" in detail
        parking = client.get("/console/parking").text
        row = parking[parking.index("AB 123") :]
        assert "parked_while_charging" in row[: row.index("</tr>")]
