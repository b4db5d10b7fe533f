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
    "/console/reconciliation",
    "/console/reconciliation?month=2026-01&group=cost_centre",
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


class Clock:
    """Seconds since the epoch that stand still until the test moves them."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_idle_past_the_configured_limit_is_sent_to_sign_in(
    backend: str, tmp_path: Path
) -> None:
    with fresh_storage(backend, tmp_path) as url:
        data = base_config(
            tmp_path / "hookgate.db", url, console={"idle_minutes": 5, "lifetime_hours": 1}
        )
        for running in serve(parse_config(data, env={})):
            sessions = running.app.console.sessions
            assert (sessions.idle, sessions.lifetime) == (300, 3600)
            clock = Clock()
            sessions.clock = clock
            with signed_in(running) as client:
                clock.now += 299  # used just within the limit: the deadline slides
                page = client.get("/console/events")
                assert page.status_code == 200
                assert "set-cookie" in page.headers  # re-signed with the later deadline
                clock.now += 299
                assert client.get("/console/events").status_code == 200
                clock.now += 301  # idle past the configured 5 minutes
                gone = client.get("/console/events?status=failed")
                assert gone.status_code == 303
                assert gone.headers["location"].startswith("/console/login?next=")
                assert client.get("/console/events?format=json").status_code == 401
            with signed_in(running) as client:  # and a busy session ends after 1 hour
                for _ in range(12):
                    clock.now += 280
                    assert client.get("/console/audit").status_code == 200
                clock.now += 280  # 3640 s after sign-in
                assert client.get("/console/audit").status_code == 303


RECON_AUTHORIZATION = {
    "timezone": "Europe/Stockholm",
    "tokens": [
        {
            "uid": "tag-1",
            "driver": "Anna Berg",
            "vehicle": "ABC123",
            "cost_centre": "CC-1",
            "legal_entity": "Fleet AB",
        },
        {"uid": "tag-2", "driver": "Per Lind", "vehicle": "XYZ789", "legal_entity": "Fleet AB"},
    ],
}


def _decision(url: str, session_id: str, token: str, at: datetime) -> str:
    """An approving Zaptec decision, as the engine records one."""
    import sqlite3

    from hookgate.store.dialect import DIALECTS

    decision_id = new_id()
    postgres = url.startswith("postgresql://")
    d = DIALECTS["postgresql" if postgres else "sqlite"]
    sql = d.sql(
        "INSERT INTO decisions (id, decided_at, source, event_id, charger_id, token, user_id, "
        "installation_id, result, reasons, session_id, fallback, latency_us) VALUES "
        f"(?, ?, 'zaptec', NULL, 'CH-1', ?, NULL, NULL, 'ALLOWED', {d.json_mark}, ?, ?, 10)"
    )
    params = (decision_id, d.instant(at), token, "[]", session_id, d.flag(False))
    if postgres:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(sql, params)
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
    return decision_id


def test_the_reconciliation_page_sets_lines_apart_and_links_what_does_not_match(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import msgspec

    from hookgate.emulate.ampeco_api import sample_cdr
    from support.views import T0, seed

    with fresh_storage(backend, tmp_path) as url:
        data = base_config(tmp_path / "hookgate.db", url, authorization=RECON_AUTHORIZATION)
        for running in serve(parse_config(data, env={})):
            db = running.config.storage.url
            common = {"source": "ampeco", "provider": "ampeco", "currency": "SEK"}
            seed(db, "parking_transactions", parking_id="p1", license_number="ABC123")
            booked = seed(
                db,
                "charging_sessions",
                **common,
                session_key="7001",
                token="TAG-1",
                started_at=T0,
                ended_at=T0 + timedelta(hours=1),
                cost="50",
                cost_excl_vat="40",
            )
            flagged = seed(
                db,
                "charging_sessions",
                **common,
                session_key="7002",
                token="TAG-2",
                started_at=T0 + timedelta(days=1),
                ended_at=T0 + timedelta(days=1, hours=1),
                cost="900",
                cost_excl_vat="720",
                flags=["energy_above_max"],
            )
            offline = seed(
                db,
                "charging_sessions",
                source="zaptec",
                provider="zaptec",
                session_key="Z-9",
                token="TAG-2",
                started_at=T0 + timedelta(days=2),
                ended_at=T0 + timedelta(days=2, hours=1),
                flags=["unmatched"],
            )
            credit = sample_cdr(
                905,
                "7001",
                credit=True,
                total_cost=-12.5,
                currency="SEK",
                end="2025-12-05T10:00:00Z",
            )
            seed(
                db,
                "reference_fetches",
                source="ampeco",
                kind="cdr",
                ref_id="DE-AMP-0000000905",
                event_id=new_id(),
                status="done",
                attempts=1,
                next_at=T0,
                fetched_at=T0,
                document=msgspec.to_builtins(credit),
                updated_at=T0,
            )
            lost = _decision(db, "Z-LOST", "TAG-1", T0 + timedelta(hours=1))
            _decision(db, "7001", "TAG-1", T0)  # its session arrived

            with signed_in(running) as client:
                page = client.get("/console/reconciliation?month=2025-12&group=legal_entity")
                assert page.status_code == 200, page.text[:500]
                html = page.text
                assert 'href="/console/reconciliation" aria-current="page"' in html
                assert f'href="/console/charging/sessions/{booked["id"]}"' in html
                assert f'href="/console/charging/sessions/{offline["id"]}"' in html
                assert f'href="/console/decisions/{lost}"' in html
                assert "energy_above_max" in html and "Fleet AB" in html
                assert 'href="/console/reconciliation/download?month=2025-12&amp;as=json"' in html

                twin = client.get(
                    "/console/reconciliation?month=2025-12&group=legal_entity&format=json"
                ).json()
                assert twin["group"] == "legal_entity"
                assert [(t["key"], t["total"]) for t in twin["totals"]] == [("Fleet AB", "137.50")]
                # Parking 100 + charging 50 - the credit 12.50; the flagged lines left out.
                assert twin["currencies"] == [
                    {
                        "currency": "SEK",
                        "lines": 3,
                        "incomplete": 1,
                        "amount_excl_vat": "120.00",
                        "vat": "30.00",
                        "total": "137.50",
                    }
                ]
                assert {line["kind"] for line in twin["lines"]} == {"parking", "charging"}
                assert {line["id"] for line in twin["flagged"]} == {flagged["id"], offline["id"]}
                (credit_line,) = twin["credits"]
                assert credit_line["references"] == booked["id"]
                assert credit_line["original_found"] is True
                assert [p["id"] for p in twin["unauthorized"]] == [offline["id"]]
                assert [(p["id"], p["session_id"]) for p in twin["without_session"]] == [
                    (lost, "Z-LOST")
                ]
                by_vehicle = client.get("/console/reconciliation?month=2025-12&format=json")
                assert {t["key"] for t in by_vehicle.json()["totals"]} == {"ABC123"}

                # The downloads are the files `hookgate reconcile` writes.
                whole = client.get("/console/reconciliation/download?month=2025-12&as=json")
                assert whole.headers["content-type"] == "application/json"
                assert (
                    'filename="reconciliation-2025-12.json"' in whole.headers["content-disposition"]
                )
                assert len(whole.json()["lines"]) == 5
                problems = client.get(
                    "/console/reconciliation/download?month=2025-12&as=exceptions"
                )
                assert problems.headers["content-type"].startswith("text/csv")
                assert (
                    "reconciliation-2025-12-exceptions.csv"
                    in problems.headers["content-disposition"]
                )
                assert "decision_without_session" in problems.text and "Z-LOST" in problems.text

                # The decision with no session: its page says so.
                decision = client.get(f"/console/decisions/{lost}")
                assert decision.status_code == 200
                assert "Z-LOST" in decision.text
                assert "No session has been reported under this id" in decision.text
                matched = client.get("/console/charging?format=json").json()["decisions"]
                kept = next(d for d in matched if d["session_id"] == "7001")
                found = client.get(f"/console/decisions/{kept['id']}?format=json").json()
                assert [s["id"] for s in found["sessions"]] == [booked["id"]]
                assert found["decision"]["reasons"] == []

                for bad, words in [
                    ("/console/reconciliation?month=2025-13", "month"),
                    ("/console/reconciliation?month=2025-12&group=planet", "group is one of"),
                    ("/console/reconciliation/download?month=2025-12&as=pdf", "as is one of"),
                ]:
                    refused = client.get(bad + "&format=json")
                    assert refused.status_code == 400, bad
                    assert refused.headers["content-type"] == "application/problem+json"
                    assert words in refused.json()["detail"], refused.json()
                missing = client.get("/console/decisions/nope?format=json")
                assert missing.status_code == 404

                # A long month: each list is cut, and says where the rest is.
                monkeypatch.setattr("hookgate.console.web.RECONCILIATION_SHOWN", 1)
                cut = client.get("/console/reconciliation?month=2025-12&format=json").json()
                assert len(cut["flagged"]) == 1 and cut["counts"]["flagged"] == 2
                assert len(cut["lines"]) == 1 and cut["counts"]["lines"] == 2
                html = client.get("/console/reconciliation?month=2025-12").text
                assert "The first 1 of 2: every line is in the" in html


def test_a_signed_out_session_is_refused_by_every_instance(backend: str, tmp_path: Path) -> None:
    from hookgate.console.auth import COOKIE
    from hookgate.store import console as console_queries

    with fresh_storage(backend, tmp_path) as url:
        config = parse_config(base_config(tmp_path / "hookgate.db", url), env={})
        first, second = serve(config), serve(config)
        one, other = next(first), next(second)  # two instances on one database
        try:
            with signed_in(one) as client:
                cookie = client.cookies[COOKIE]
                with httpx.Client(
                    base_url=other.url, cookies={COOKIE: cookie}, timeout=10
                ) as elsewhere:
                    assert elsewhere.get("/console/events?format=json").status_code == 200
                    out = client.post("/console/logout", data={"csrf": csrf_of(client)})
                    assert out.status_code == 303
                    assert out.headers["location"] == "/console/login"
                    # The other instance refuses the old cookie at once: pages and changes.
                    assert elsewhere.get("/console/events?format=json").status_code == 401
                    page = elsewhere.get("/console/events")
                    assert page.status_code == 303
                    assert page.headers["location"].startswith("/console/login")
                    changed = elsewhere.post("/console/destinations/erp/pause", data={})
                    assert changed.status_code == 401
            with httpx.Client(base_url=one.url, cookies={COOKIE: cookie}, timeout=10) as again:
                assert again.get("/console/events?format=json").status_code == 401
            with signed_in(other) as fresh:  # a new sign-in is not affected
                assert fresh.get("/console/events?format=json").status_code == 200
        finally:
            first.close()
            second.close()

        async def prune() -> tuple[dict[str, int], dict[str, int], bool]:
            store = make_store(config.storage)
            await store.open()
            try:
                past = datetime.now(UTC) - timedelta(minutes=1)
                await store.sql_write(lambda conn: console_queries.revoke(conn, "long-over", past))
                counted = await store.prune(datetime.now(UTC), dry_run=True)
                done = await store.prune(datetime.now(UTC))
                gone = await store.sql_read(lambda conn: console_queries.revoked(conn, "long-over"))
                return counted, done, gone
            finally:
                await store.close()

        counted, done, gone = asyncio.run(prune())
        # The expired sign-out goes; the one signed out above lasts as long as its session.
        assert counted["console_revocations"] == done["console_revocations"] == 1
        assert gone is False


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
