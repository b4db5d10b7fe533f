"""The read and rule commands an operator meets first: lists with headers that stay in
line, a word when there is nothing, choices named on a bad value, `rejections show`, the
groups/chargers/budgets commands and paged token lists."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from hookgate.cli import main
from hookgate.domain.events import InboundEvent, Rejection
from hookgate.ids import new_id
from hookgate.store.sqlite import SqliteStore

CONFIG = """\
[storage]
url = "sqlite:///hookgate.db"

[admin]
tokens = ["${HG_LISTS_UNSET_ADMIN}"]

[[sources]]
name = "zaptec"
provider = "zaptec"
password = "pw"

[[authorization.groups]]
id = "from-file"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hookgate.toml"
    path.write_text(CONFIG, encoding="utf-8")
    assert run(path, "migrate").exit_code == 0
    return path


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [*args, "--config", str(config)])


def ok(config: Path, *args: str) -> str:
    result = run(config, *args)
    assert result.exit_code == 0, result.output
    return result.output


def _event(event_type: str, source: str = "ampeco") -> InboundEvent:
    body = b"{}"
    return InboundEvent(
        id=new_id(),
        source=source,
        provider="ampeco",
        event_type=event_type,
        received_at=datetime.now(UTC),
        dedup_key=new_id(),
        raw_body=body,
        body_sha256="00",
        headers={"content-type": "application/json"},
        document={},
    )


def _store(config: Path, events: list[InboundEvent], rejections: list[Rejection]) -> None:
    async def fill() -> None:
        store = SqliteStore(str(config.parent / "hookgate.db"))
        await store.open()
        try:
            for event in events:
                await store.ingest(event)
            for rejection in rejections:
                await store.record_rejection(rejection)
        finally:
            await store.close()

    asyncio.run(fill())


def test_events_list_has_a_header_aligned_columns_and_an_empty_line(config: Path) -> None:
    assert ok(config, "events", "list").strip() == "no events yet"
    long_type = "session.start.stop.notification.with.a.very.long.suffix.v2"
    _store(config, [_event("cdr.received"), _event(long_type)], [])
    lines = ok(config, "events", "list").splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "SOURCE", "TYPE", "STATUS", "FLAGS", "NOTE"]
    # Every row's STATUS starts where the header's does, the long type notwithstanding.
    column = lines[0].index("STATUS")
    assert all(line[column:].startswith("received") for line in lines[1:]), lines
    assert len(lines) == 3
    assert ok(config, "events", "list", "--source", "nope").strip() == "no events match"


def test_a_bad_status_names_the_allowed_values(config: Path) -> None:
    result = run(config, "events", "list", "--status", "bogus")
    assert result.exit_code == 2
    assert "'received', 'processed', 'failed', 'quarantined'" in result.output
    result = run(config, "sessions", "list", "--status", "bogus")
    assert result.exit_code == 2 and "'active', 'ended'" in result.output


def test_view_lists_say_when_there_is_nothing(config: Path) -> None:
    assert ok(config, "sessions", "list").strip() == "no charging sessions match"
    assert ok(config, "parking", "list").strip() == "no parking transactions match"
    assert ok(config, "deliveries", "list").strip() == "no deliveries match"
    result = run(config, "parking", "show", "123456")
    assert result.exit_code == 1
    assert "no parking transaction with id 123456" in result.output
    assert "parking_id" in result.output


def test_rejections_list_and_show(config: Path) -> None:
    assert ok(config, "rejections", "list").strip() == "no rejections yet"
    rejection = Rejection(
        id=new_id(),
        received_at=datetime.now(UTC),
        source="zaptec",
        provider="zaptec",
        method="POST",
        path="/hooks/zaptec/session-start",
        status=401,
        reason="unauthorized",
        detail="the bearer token is not valid",
        headers={"authorization": "Bearer ***"},
        remote="127.0.0.1",
        body_sha256="00",
        body_size=2,
        body=b"{}",
        replay=None,
    )
    _store(config, [], [rejection])
    lines = ok(config, "rejections", "list").splitlines()
    assert lines[0].split() == ["ID", "RECEIVED", "SOURCE", "STATUS", "REASON", "DETAIL"]
    assert lines[1].startswith(rejection.id)
    shown = json.loads(ok(config, "rejections", "show", rejection.id))
    assert shown["reason"] == "unauthorized" and shown["body"] == "{}"
    assert shown["headers"] == {"authorization": "Bearer ***"}
    assert shown["rerunnable"] is False
    missing = run(config, "rejections", "show", "nope")
    assert missing.exit_code == 1 and "rejections list" in missing.output


def test_groups_chargers_and_budgets_through_the_rule_checks(config: Path) -> None:
    assert "from-file" in ok(config, "groups", "list")
    assert "added group fleet" in ok(config, "groups", "add", "fleet", "--label", "Vans")
    again = run(config, "groups", "add", "fleet")
    assert again.exit_code == 1 and "--replace" in again.output
    file_owned = run(config, "groups", "add", "from-file", "--replace")
    assert file_owned.exit_code == 1 and "configuration file" in file_owned.output

    unknown = run(config, "chargers", "add", "CH-1", "--mode", "reserved", "--group", "nope")
    assert unknown.exit_code == 1 and "there is no group nope" in unknown.output
    no_group = run(config, "chargers", "add", "CH-1", "--mode", "reserved")
    assert no_group.exit_code == 1 and "group_id" in no_group.output
    ok(config, "chargers", "add", "CH-1", "--mode", "reserved", "--group", "fleet")
    listed = ok(config, "chargers", "list").splitlines()
    assert listed[0].split() == ["CHARGER", "MODE", "GROUP", "MANAGED"]
    assert listed[1].split() == ["CH-1", "reserved", "fleet", "api"]

    in_use = run(config, "groups", "remove", "fleet")
    assert in_use.exit_code == 1 and "still used by 0 token(s) and reserved by 1" in in_use.output

    added = ok(
        config,
        "budgets",
        "add",
        "--subject",
        "group",
        "--subject-id",
        "fleet",
        "--period",
        "month",
        "--limit",
        "500",
    )
    assert "added budget group-fleet-kwh-month" in added
    no_owner = run(
        config,
        "budgets",
        "add",
        "--subject",
        "group",
        "--subject-id",
        "ghost",
        "--period",
        "day",
        "--limit",
        "5",
    )
    assert no_owner.exit_code == 1 and "there is no group ghost" in no_owner.output
    bad = run(
        config,
        "budgets",
        "add",
        "--subject",
        "group",
        "--subject-id",
        "fleet",
        "--period",
        "day",
        "--limit",
        "-1",
    )
    assert bad.exit_code == 2
    budgets = json.loads(ok(config, "budgets", "list", "--json"))["items"]
    assert [(b["id"], b["limit"]) for b in budgets] == [("group-fleet-kwh-month", "500")]

    ok(config, "chargers", "remove", "CH-1")
    assert "removed group fleet and 1 budget(s)" in ok(config, "groups", "remove", "fleet")
    assert "no budgets" in ok(config, "budgets", "list")
    assert ok(config, "chargers", "list").startswith("no charger rules")


def test_tokens_list_pages(config: Path) -> None:
    for index in range(5):
        ok(config, "tokens", "add", f"tag-{index}")
    page = ok(config, "tokens", "list", "--limit", "2").splitlines()
    assert [line.split()[0] for line in page[1:3]] == ["TAG-0", "TAG-1"]
    assert page[-1] == "2 token(s) shown, 3 more: --cursor TAG-1 (or --all)"
    following = ok(config, "tokens", "list", "--limit", "2", "--cursor", "TAG-1").splitlines()
    assert [line.split()[0] for line in following[1:3]] == ["TAG-2", "TAG-3"]
    everything = ok(config, "tokens", "list", "--all").splitlines()
    assert everything[-1] == "5 token(s)"
    paged = json.loads(ok(config, "tokens", "list", "--limit", "4", "--json"))
    assert len(paged["items"]) == 4 and paged["next"] == "TAG-3"


def test_mistaken_addresses_get_a_message(config: Path) -> None:
    sent = run(config, "send", "easypark", "--url", "notaurl", "--username", "u", "--password", "p")
    assert sent.exit_code == 2 and "e.g. http://127.0.0.1:8000" in sent.output
    served = run(config, "serve", "--port", "99999")
    assert served.exit_code == 2 and "0<=x<=65535" in served.output
