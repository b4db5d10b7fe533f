"""The operator console in a real browser (Debian's chromium driven by Playwright) against
a real `hookgate serve`, provider calls sent by `hookgate send` and a local receiver.

Screenshots of every page at 1280 and 390 px wide are saved under the test's directory,
and also in $HOOKGATE_CONSOLE_SCREENSHOTS when it is set (docs/console/ is refreshed so).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hookgate.ids import new_id
from hookgate.timeutil import iso
from support.contract import zaptec_token
from support.e2e import Server, migrate, query, run_cli, serving, write_config
from support.gateway import ADMIN_TOKEN
from support.polling import until
from support.receiver import Receiver, receiver

playwright = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("HOOKGATE_CHROMIUM", "/usr/bin/chromium")
READ_TOKEN = "read-only-token-for-console-tests"
SECRET = "whsec_" + base64.b64encode(b"receiver-secret-for-console-test!").decode()
WIDE, NARROW = 1280, 390


def _require_browser() -> None:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).exists():
        return
    message = f"no chromium at {CHROMIUM}: `make browser` installs it"
    if os.environ.get("HOOKGATE_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[object]:
    _require_browser()
    with playwright.sync_playwright() as p:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            launched.close()


class Shots:
    """Saves screenshots at both widths, in the test's directory and the docs' one."""

    def __init__(self, directory: Path) -> None:
        self.directories = [directory]
        extra = os.environ.get("HOOKGATE_CONSOLE_SCREENSHOTS")
        if extra:
            self.directories.append(Path(extra))
        for d in self.directories:
            d.mkdir(parents=True, exist_ok=True)

    def take(self, page: object, name: str) -> None:
        for width in (WIDE, NARROW):
            page.set_viewport_size({"width": width, "height": 900})  # type: ignore[attr-defined]
            for d in self.directories:
                page.screenshot(path=str(d / f"{name}-{width}.png"), full_page=True)  # type: ignore[attr-defined]
        page.set_viewport_size({"width": WIDE, "height": 900})  # type: ignore[attr-defined]


def _send(server: Server, config: Path, *args: str, check: bool = True) -> str:
    result = run_cli(
        "send", *args, "--url", server.url, "--config", str(config), cwd=config.parent, check=check
    )
    return result.stdout + result.stderr


def _plate(db: str) -> str:
    """The licence plate of the EasyPark transaction the emulator sent."""
    (document,) = query(db, "SELECT document FROM inbox WHERE provider = 'easypark' LIMIT 1")[0]
    parsed = json.loads(document) if isinstance(document, str) else document
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "licenseNumber" and isinstance(item, str):
                    found.append(item)
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(parsed)
    assert found, parsed
    return found[0]


def _offline_zaptec_session(url: str) -> str:
    """A Zaptec session end whose start hookgate never approved (offline charging): its
    session id."""
    now = datetime.now(UTC)
    with httpx.Client(base_url=url, timeout=10) as client:
        bearer = {"Authorization": f"Bearer {zaptec_token(client)}"}
        end = client.post(
            "/hooks/zaptec/session-end",
            json={
                "SessionId": "OFFLINE-1",
                "ChargerId": "CH-OFFLINE",
                "TokenId": "VAN-7",
                "StartDateTime": f"{now - timedelta(minutes=10):%Y-%m-%dT%H:%M:%SZ}",
                "EndDateTime": f"{now - timedelta(minutes=5):%Y-%m-%dT%H:%M:%SZ}",
                "Energy": 12.5,
            },
            headers=bearer,
        )
        assert end.status_code == 200, end.text
    return "OFFLINE-1"


def _lost_ocpi_authorization(db: str) -> str:
    """An OCPI real-time authorization whose session never arrived, as the engine records
    it (the roaming handshake is covered by tests/e2e/test_ocpi_e2e.py): its reference."""
    reference = "AUTH-REF-LOST-1"
    conn = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        conn.execute(
            "INSERT INTO decisions (id, decided_at, source, event_id, charger_id, token, "
            "user_id, installation_id, result, reasons, session_id, fallback, latency_us) "
            "VALUES (?, ?, 'ocpi', NULL, 'LOC-1', 'VAN-7', NULL, NULL, 'ALLOWED', '[]', ?, 0, 40)",
            (new_id(), iso(datetime.now(UTC) - timedelta(minutes=3)), reference),
        )
        conn.commit()
    finally:
        conn.close()
    return reference


def _sign_in(page: object, url: str, token: str) -> None:
    page.goto(url + "/")  # type: ignore[attr-defined]
    assert "/console/login" in page.url  # type: ignore[attr-defined]
    page.get_by_label("Admin token").fill(token)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
    page.wait_for_url(url + "/console/")  # type: ignore[attr-defined]


def _reload_until(page: object, selector: str, text: str, what: str) -> None:
    def shown() -> bool:
        page.reload()  # type: ignore[attr-defined]
        return text in page.locator(selector).inner_text()  # type: ignore[attr-defined]

    until(shown, what, timeout=40)


def test_an_operator_works_through_the_console(browser: object, tmp_path: Path) -> None:
    shots = Shots(tmp_path / "screens")
    with receiver(SECRET) as inbox:
        inbox.behaviour = lambda envelope: (500, 0.0)
        config = write_config(
            tmp_path,
            admin={
                "tokens": [
                    ADMIN_TOKEN,
                    {"name": "night-viewer", "token": READ_TOKEN, "scope": "read"},
                ]
            },
            destinations=[
                {
                    "name": "erp",
                    "kind": "http",
                    "url": inbox.url,
                    "secret": SECRET,
                    "providers": ["easypark"],
                    "max_attempts": 1,
                }
            ],
            # So low that every session with energy is flagged `energy_above_max`.
            anomalies={"max_energy_kwh": "0.001"},
        )
        migrate(config)
        db = f"sqlite:///{tmp_path / 'hookgate.db'}"
        with serving(config) as server:
            _walk_through(browser, server, config, db, inbox, shots)


def _walk_through(
    browser: object, server: Server, config: Path, db: str, inbox: Receiver, shots: Shots
) -> None:
    from playwright.sync_api import expect

    url = server.url
    context = browser.new_context(viewport={"width": WIDE, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()

    # `/` leads to the sign-in page; a wrong token is refused, the right one signs in.
    page.goto(url + "/")
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    shots.take(page, "login")
    page.get_by_label("Admin token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not a configured admin token")
    _sign_in(page, url, ADMIN_TOKEN)
    cookie = next(c for c in context.cookies() if c["name"] == "hookgate_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]

    # Events sent by `hookgate send` appear on the open events page without a reload.
    page.get_by_role("link", name="Events", exact=True).click()
    expect(page.locator("#event-rows")).to_contain_text("No events match")
    _send(server, config, "easypark")
    _send(server, config, "ampeco")
    _send(server, config, "ztlment", "payment")
    _send(server, config, "ampeco", "--secret", "a-secret-not-configured", check=False)
    expect(page.locator("#event-rows")).to_contain_text("easypark", timeout=30_000)
    expect(page.locator("#event-rows")).to_contain_text("ampeco", timeout=30_000)
    expect(page.locator("#live")).to_contain_text("new event")

    # Search for the licence plate (found once processing has indexed the event).
    plate = _plate(db)
    page.get_by_label("Words").fill(plate)
    page.get_by_role("button", name="Filter").click()
    assert f"q={plate}" in page.url
    _reload_until(page, "#event-rows", "easypark", f"a search for {plate} to find the event")
    assert "ampeco" not in page.locator("#event-rows").inner_text()
    shots.take(page, "events")

    # Open it: the pretty raw body, and its delivery to the failing receiver, dead.
    page.locator("#event-rows a").first.click()
    expect(page.get_by_role("heading", name="Raw body")).to_be_visible()
    expect(page.locator("pre.body")).to_contain_text(plate)
    _reload_until(page, "main", "dead", "the delivery to erp to die")
    shots.take(page, "event")

    # The overview says something needs attention: the dead delivery.
    page.get_by_role("link", name="Overview").click()
    expect(page.locator(".attention")).to_contain_text("1 dead deliveries")
    shots.take(page, "overview")

    # Replay the dead delivery once the receiver works again: it is delivered.
    inbox.behaviour = lambda envelope: (200, 0.0)
    page.locator(".attention").get_by_role("link", name="1 dead deliveries").click()
    expect(page.locator("main table").last).to_contain_text("dead")
    page.get_by_role("button", name="Count (dry run)").click()
    expect(page.get_by_role("status")).to_contain_text("1 deliveries would be sent again")
    page.locator("main table").last.locator("a", has_text="event").first.click()
    page.get_by_label("Replay to").select_option("erp")
    page.get_by_role("button", name="Replay", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Replay queued 1 deliveries to erp")
    inbox.wait_for(1)
    _reload_until(page, "main", "delivered", "the replayed delivery to be recorded")
    page.get_by_role("link", name="Deliveries", exact=True).click()
    shots.take(page, "deliveries")

    # Charging: a CSV import previews its bad rows, then imports a token.
    page.get_by_role("link", name="Charging").click()
    rows = "uid,label,kwh_per_month\nVAN-7,Van 7,300\nVAN-8,Van 8,lots\n"
    page.get_by_label("CSV text").fill(rows)
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("table.bad-rows")).to_contain_text("lots")
    expect(page.locator(".preview")).to_contain_text("1 bad rows: nothing written")
    page.get_by_label("CSV text").fill("uid,label,kwh_per_month\nVAN-7,Van 7,300\n")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator(".preview")).to_contain_text("Imported")
    expect(page.locator("main")).to_contain_text("VAN-7")
    allowed = _send(server, config, "zaptec", "--token", "VAN-7")
    assert "denied" not in allowed, allowed

    # Block it: the next Zaptec start is denied, and the decision says why.
    page.get_by_role("button", name="Block VAN-7").click()
    expect(page.get_by_role("status")).to_contain_text("Token VAN-7 blocked")
    denied = _send(server, config, "zaptec", "--token", "VAN-7")
    assert "denied" in denied, denied
    page.get_by_label("Result").select_option("BLOCKED")
    page.get_by_role("button", name="Show decisions").click()
    assert "result=BLOCKED" in page.url
    decisions = page.locator("#decisions ~ .scroll").first
    expect(decisions).to_contain_text("BLOCKED")
    assert "ALLOWED" not in decisions.inner_text()
    shots.take(page, "charging")

    # A forged change without the CSRF token is refused, and changes nothing.
    forged = page.request.post(url + "/console/tokens/VAN-7/unblock", form={"back": "/console/"})
    assert forged.status == 403
    assert "CSRF" in forged.text()
    with httpx.Client(base_url=url, cookies={"hookgate_console": cookie["value"]}) as client:
        assert client.post("/console/tokens/VAN-7/unblock").status_code == 403
    assert "blocked" in page.locator("main table").first.inner_text()

    # The other pages render, with their JSON twins.
    page.goto(url + "/console/rejections")
    page.locator("main table").last.locator("a").first.click()
    expect(page.get_by_role("button", name="Re-run this call")).to_be_visible()
    shots.take(page, "rejection")
    for name, path in [
        ("rejections", "/console/rejections"),
        ("parking", "/console/parking"),
        ("costs", "/console/costs"),
        ("audit", "/console/audit"),
    ]:
        page.goto(url + path)
        expect(page.locator("h1")).to_be_visible()
        shots.take(page, name)
    expect(page.locator("main")).to_contain_text("console")  # the audit log's channel
    page.goto(url + "/console/parking")
    page.locator("main table").last.locator("a").first.click()
    expect(page.get_by_role("heading", name="State history")).to_be_visible()
    shots.take(page, "payment")
    page.goto(url + "/console/charging")
    expect(page.locator("main table").last).to_contain_text("energy_above_max")
    page.locator("main table").last.locator("tr", has_text="energy_above_max").locator(
        "a"
    ).first.click()
    expect(page.get_by_role("heading", name="Meter values")).to_be_visible()
    expect(page.locator("dl.kv")).to_contain_text(
        "energy_above_max More energy than the configured maximum"
    )
    shots.take(page, "session")
    # The month's reconciliation of the traffic sent above, plus a Zaptec end no start
    # approved and an OCPI authorization whose session never came: parking and charging
    # together, the flagged sessions apart, and the two that do not match up each linked
    # to its page.
    offline = _offline_zaptec_session(url)
    lost = _lost_ocpi_authorization(db)
    page.get_by_role("link", name="Reconciliation").click()
    expect(page.get_by_role("heading", name="Monthly reconciliation")).to_be_visible()
    month = page.get_by_label("Month").input_value()
    booked = page.locator("table.recon-lines")
    expect(booked).to_contain_text(plate)
    expect(booked).to_contain_text("parking")
    # The Zaptec sessions above are flagged (energy over the configured maximum): apart.
    expect(page.locator("table.recon-flagged")).to_contain_text("charging")
    expect(page.locator("table.recon-flagged")).to_contain_text("energy_above_max")
    expect(page.locator("table.recon-flagged")).to_contain_text("VAN-7")
    expect(page.locator("table.recon-flagged")).to_contain_text("unmatched")
    expect(page.locator("table.recon-unauthorized")).to_contain_text(offline)
    expect(page.locator("table.recon-without-session")).to_contain_text(lost)
    expect(page.locator(".cards")).to_contain_text("SEK")
    page.get_by_label("Totals per").select_option("legal_entity")
    page.get_by_role("button", name="Show").click()
    assert f"month={month}" in page.url and "group=legal_entity" in page.url
    expect(page.get_by_role("heading", name="Totals per legal entity")).to_be_visible()
    shots.take(page, "reconciliation")
    recon = page.request.get(page.url + "&format=json").json()
    assert recon["group"] == "legal_entity" and recon["currencies"]
    assert [p["session_id"] for p in recon["without_session"]] == [lost]
    download = page.request.get(url + recon["downloads"]["exceptions"])
    assert download.ok and lost in download.text() and offline in download.text()
    page.locator("table.recon-unauthorized a").first.click()
    expect(page.get_by_role("heading", name=f"Charging session {offline}")).to_be_visible()
    page.go_back()
    page.locator("table.recon-without-session a").first.click()
    expect(page.get_by_role("heading", name="Authorization decision")).to_be_visible()
    expect(page.locator("main")).to_contain_text("No session has been reported under this id")
    twin = page.request.get(url + "/console/events?format=json")
    assert twin.ok and any(item["source"] == "easypark" for item in twin.json()["items"])

    # Keyboard: the first Tab reaches the skip link, which moves focus to the content;
    # every form control on the events page has a label.
    page.goto(url + "/console/events")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    controls = "input:not([type=hidden]), select, textarea"
    unlabelled = page.evaluate(
        "(css) => Array.from(document.querySelectorAll(css))"
        ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
        ".map(e => e.name)",
        controls,
    )
    assert unlabelled == []
    snapshot = page.accessibility.snapshot() if hasattr(page, "accessibility") else None
    if snapshot is not None:
        assert "Console pages" in json.dumps(snapshot) or "Events" in json.dumps(snapshot)

    # A read token sees no button that changes anything, and is refused if it tries.
    viewer = browser.new_context(viewport={"width": WIDE, "height": 900})  # type: ignore[attr-defined]
    vpage = viewer.new_page()
    _sign_in(vpage, url, READ_TOKEN)
    vpage.goto(url + "/console/charging")
    expect(vpage.locator("main")).to_contain_text("VAN-7")
    assert vpage.get_by_role("button", name="Unblock VAN-7").count() == 0
    assert vpage.get_by_role("button", name="Import").count() == 0
    vpage.goto(url + "/console/deliveries")
    assert vpage.get_by_role("button", name="Replay").count() == 0
    csrf = vpage.locator("input[name=csrf]").first.get_attribute("value")
    refused = vpage.request.post(url + "/console/tokens/VAN-7/unblock", form={"csrf": csrf or ""})
    assert refused.status == 403 and "may only look" in refused.text()
    viewer.close()

    # Sign out: the session ends, and its old cookie no longer opens a page.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(url + "/console/login")
    page.goto(url + "/console/events")
    assert "/console/login" in page.url
    with httpx.Client(base_url=url, cookies={"hookgate_console": cookie["value"]}) as client:
        answer = client.get("/console/events?format=json")
        assert answer.status_code == 401
    context.close()
