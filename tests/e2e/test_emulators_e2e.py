"""Every provider emulator, through the CLI, against a real `hookgate serve` process."""

from __future__ import annotations

import json
import stat
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hookgate.config import load_config
from hookgate.emulate.ampeco_samples import NAMES
from hookgate.timeutil import parse_iso
from support.e2e import (
    Server,
    free_port,
    migrate,
    query,
    run_cli,
    send_lines,
    send_summary,
    serving,
    write_config,
)
from support.polling import until

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]


class Gate:
    """A served config plus the CLI calls the tests make against it."""

    def __init__(self, server: Server, config: Path, cwd: Path) -> None:
        self.server = server
        self.config = config
        self.cwd = cwd

    @property
    def storage(self) -> str:
        return load_config(self.config).storage.url

    def send(self, *args: str) -> tuple[str, str]:
        result = run_cli(
            "send",
            *args,
            "--url",
            self.server.url,
            "--config",
            str(self.config),
            cwd=self.cwd,
            check=False,
        )
        assert result.returncode == 0, (
            f"hookgate send {' '.join(args)} exited {result.returncode}\n"
            f"{result.stdout}\n{result.stderr}\nserver:\n{self.server.stderr()}"
        )
        return result.stdout, result.stderr

    def events(self, *args: str) -> list[dict[str, Any]]:
        result = run_cli(
            "events",
            "list",
            "--json",
            "--limit",
            "500",
            "--config",
            str(self.config),
            *args,
            cwd=self.cwd,
        )
        page = json.loads(result.stdout)
        assert page["next"] is None
        return list(page["items"])

    def show(self, event_id: str) -> dict[str, Any]:
        result = run_cli("events", "show", event_id, "--config", str(self.config), cwd=self.cwd)
        return dict(json.loads(result.stdout))


@pytest.fixture
def gate(tmp_path: Path, storage_url: str) -> Iterator[Gate]:
    config = write_config(tmp_path, url=storage_url)
    migrate(config)
    with serving(config) as server:
        yield Gate(server, config, tmp_path)


def _statuses(stdout: str) -> list[str]:
    return [status for _, _, status in send_lines(stdout)]


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_zaptec_oauth_cycles_with_duplicate_ends(gate: Gate) -> None:
    out, _ = gate.send("zaptec", "--source", "zaptec-allow", "--count", "3", "--duplicate")
    lines = send_lines(out)
    assert [label for _, label, _ in lines] == [
        "session-start",
        "session-end",
        "session-end (again)",
    ] * 3
    assert _statuses(out) == ["200"] * 9
    assert send_summary(out) == (9, {"200": 9})

    # Every start carried a sessionId; the repeated end answers with the same event.
    session_ids, end_ids = [], []
    for line in out.splitlines():
        if "-> 200" not in line:
            continue
        answer = json.loads(line.split("-> 200", 1)[1].strip())
        if "session-start" in line:
            session_ids.append(answer["sessionId"])
        else:
            end_ids.append(answer["eventId"])
    assert len(set(session_ids)) == 3
    assert end_ids[0] == end_ids[1] and end_ids[2] == end_ids[3] and end_ids[4] == end_ids[5]

    items = gate.events("--source", "zaptec-allow")
    assert Counter(item["type"] for item in items) == {"session.start": 3, "session.end": 3}
    ends = {item["dedup_key"] for item in items if item["type"] == "session.end"}
    assert ends == {f"end:{sid}" for sid in session_ids}
    assert all(item["headers"].get("authorization") == "Bearer ***" for item in items)

    shown = gate.show(end_ids[0])
    assert shown["type"] == "session.end"
    assert "unmatched" not in shown["flags"]
    assert json.loads(shown["raw_body"])["SessionId"] == session_ids[0]

    rows = query(
        gate.storage,
        "SELECT session_id, status FROM authorized_sessions WHERE source = 'zaptec-allow'",
    )
    assert dict(rows) == {sid: "ended" for sid in session_ids}


def test_zaptec_basic_auth_and_camel_case_bodies(gate: Gate) -> None:
    out, _ = gate.send("zaptec", "--source", "zaptec-basic")
    assert [label for _, label, _ in send_lines(out)] == ["session-start", "session-end"]
    assert _statuses(out) == ["200", "200"]

    out, _ = gate.send("zaptec", "--source", "zaptec-allow", "--case", "camel", "--json")
    answers = _json_lines(out)
    assert [a["status"] for a in answers] == [200, 200]
    session_id = answers[0]["response"]["sessionId"]

    items = gate.events()
    assert Counter(item["source"] for item in items) == {"zaptec-basic": 2, "zaptec-allow": 2}
    basic = [item for item in items if item["source"] == "zaptec-basic"]
    assert all(item["headers"]["authorization"] == "Basic ***" for item in basic)

    camel_start = next(
        i for i in items if i["source"] == "zaptec-allow" and i["type"] == "session.start"
    )
    shown = gate.show(camel_start["id"])
    raw = json.loads(shown["raw_body"])
    assert "chargerId" in raw and "ChargerId" not in raw  # the body really was camelCase
    assert shown["document"]["charger_id"] == raw["chargerId"]
    assert shown["document"]["token"] == raw["tokenId"]

    camel_end = answers[1]["response"]["eventId"]
    end = gate.show(camel_end)
    assert end["dedup_key"] == f"end:{session_id}"
    assert "unmatched" not in end["flags"]
    assert json.loads(end["raw_body"])["sessionId"] == session_id


def test_ampeco_all_types_and_default_session(gate: Gate) -> None:
    out, _ = gate.send("ampeco", "all", "--source", "ampeco")
    lines = send_lines(out)
    assert [label for _, label, _ in lines] == list(NAMES)
    assert _statuses(out) == ["202"] * len(NAMES)
    assert send_summary(out) == (len(NAMES), {"202": len(NAMES)})

    out, _ = gate.send("ampeco")
    session = [label for _, label, _ in send_lines(out)]
    assert session == [
        "session.start.stop.notification",
        "SessionMeterValuesNotification",
        "SessionMeterValuesNotification",
        "SessionMeterValuesNotification",
        "SessionUpdateNotification",
        "SessionUpdateNotification",
        "session.start.stop.notification",
        "cdr.received",
    ]
    assert _statuses(out) == ["202"] * len(session)

    items = gate.events("--source", "ampeco")
    assert len(items) == len(NAMES) + len(session)
    assert Counter(item["type"] for item in items) == Counter([*NAMES, *session])
    assert len({item["dedup_key"] for item in items}) == len(items)

    cdr = next(item for item in items if item["type"] == "cdr.received")
    shown = gate.show(cdr["id"])
    assert json.loads(shown["raw_body"])["notification"] == "cdr.received"
    assert shown["headers"]["x-tenant"] == "emulator"
    assert shown["headers"]["x-signature"].endswith("...")  # kept, but masked


def test_easypark_duplicate_gets_409_and_api_key_source(gate: Gate) -> None:
    out, err = gate.send("easypark", "--duplicate", "--json")
    answers = _json_lines(out)
    assert [a["status"] for a in answers] == [200, 409]
    assert answers[0]["label"] == answers[1]["label"]
    parking_id = int(answers[0]["label"].removeprefix("parking "))
    conflict = answers[1]["response"]
    assert conflict["status"] == 409 and conflict["title"] == "Conflict"
    assert send_summary(err) == (2, {"200": 1, "409": 1})

    out, _ = gate.send("easypark", "--source", "easypark-key")
    assert _statuses(out) == ["200"]
    key_label = send_lines(out)[0][1]

    items = gate.events()
    assert Counter(item["source"] for item in items) == {"easypark": 1, "easypark-key": 1}
    stored = next(item for item in items if item["source"] == "easypark")
    assert stored["id"] == conflict["event_id"]  # the 409 names the stored event
    assert stored["dedup_key"] == f"parking:{parking_id}"
    shown = gate.show(stored["id"])
    assert json.loads(shown["raw_body"])["parkingId"] == parking_id
    assert shown["type"] == "parking.completed"

    keyed = next(item for item in items if item["source"] == "easypark-key")
    assert keyed["dedup_key"] == "parking:" + key_label.removeprefix("parking ")
    assert keyed["headers"]["x-partner-key"] == "***"


def test_ztlment_payment_flow_and_duplicated_approval(gate: Gate) -> None:
    out, _ = gate.send("ztlment", "payment")
    assert _statuses(out) == ["200"] * 7
    payment_labels = [label for _, label, _ in send_lines(out)]
    assert payment_labels[-1].endswith("PROCESSED")

    out, _ = gate.send("ztlment", "approval", "--duplicate")
    assert _statuses(out) == ["200"] * 6
    assert send_summary(out) == (6, {"200": 6})

    items = gate.events("--source", "ztlment")
    assert len(items) == 10
    kinds = Counter(item["type"].split(".", 1)[0] for item in items)
    assert kinds == {"payment": 7, "approval": 3}
    assert len({item["dedup_key"] for item in items}) == 10
    processed = next(item for item in items if item["type"] == "approval.processed")
    shown = gate.show(processed["id"])
    body = json.loads(shown["raw_body"])
    assert body["type"] == "APPROVAL_OBJECT" and body["state"] == "PROCESSED"
    assert shown["document"]["final"] is True


def test_init_writes_a_config_that_serves_the_emulators(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    result = run_cli(
        "init", "--path", "hookgate.toml", "--port", str(port), "--public-url", url, cwd=home
    )
    config = home / "hookgate.toml"
    assert config.is_file(), result.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert (home / "hookgate.db").is_file(), "init must create the database"
    assert f"http://127.0.0.1:{port}/hooks/zaptec/oauth/token" in result.stdout

    checked = run_cli("check-config", "--config", str(config), cwd=home, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "valid" in checked.stdout
    states = {line.split()[0]: line.split()[2] for line in checked.stdout.splitlines()[1:]}
    # The secrets AMPECO and ZTLment issue are placeholders until the operator has them;
    # the emulators sign with whatever the file holds.
    assert states == {
        "zaptec": "ok",
        "ampeco": "PLACEHOLDER",
        "easypark": "ok",
        "ztlment": "PLACEHOLDER",
    }, checked.stdout

    with serving(config, cwd=home, port=port) as server:
        gate = Gate(server, config, home)
        # The starter denies unknown charge tokens: a 403 deny, never a 2xx.
        out, _ = gate.send("zaptec", "--json")
        answers = _json_lines(out)
        assert [a["status"] for a in answers] == [403]
        assert answers[0]["response"]["authorized"] is False
        out, _ = gate.send("ampeco")
        assert _statuses(out) == ["202"] * 8
        out, _ = gate.send("easypark")
        assert _statuses(out) == ["200"]
        out, _ = gate.send("ztlment")
        assert _statuses(out) == ["200"] * 7
        items = gate.events()
        assert "source has a placeholder secret" in server.stderr()
    assert Counter(item["source"] for item in items) == {
        "zaptec": 1,
        "ampeco": 8,
        "easypark": 1,
        "ztlment": 7,
    }


def _sessions(gate: Gate) -> list[dict[str, Any]]:
    result = run_cli(
        "sessions", "list", "--json", "--config", str(gate.config), cwd=gate.cwd, check=True
    )
    return list(json.loads(result.stdout)["items"])


def _wait_for_sessions(gate: Gate, count: int) -> list[dict[str, Any]]:

    def ended() -> list[dict[str, Any]] | None:
        items = [s for s in _sessions(gate) if s["ended_at"]]
        return items if len(items) >= count else None

    return until(ended, f"{count} ended sessions")


def test_emulated_sessions_end_now_or_at_the_given_time(gate: Gate) -> None:
    before = datetime.now(UTC)
    gate.send("ampeco")
    (now_session,) = _wait_for_sessions(gate, 1)
    ended = parse_iso(now_session["ended_at"])
    assert before - timedelta(minutes=10) <= ended <= datetime.now(UTC)
    assert 2 <= float(now_session["energy_kwh"]) <= 80

    gate.send("ampeco", "--at", "2026-03-01T10:00:00+01:00")
    sessions = _wait_for_sessions(gate, 2)
    (moved,) = [s for s in sessions if s["id"] != now_session["id"]]
    at = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert at - timedelta(minutes=10) <= parse_iso(moved["ended_at"]) <= at
    assert parse_iso(moved["started_at"]) >= at - timedelta(hours=8, minutes=10)

    bad = run_cli(
        "send",
        "ampeco",
        "--at",
        "2026-03-01T09:00:00",
        "--url",
        gate.server.url,
        "--config",
        str(gate.config),
        cwd=gate.cwd,
        check=False,
    )
    assert bad.returncode == 2
    assert "no UTC offset" in bad.stderr
