"""With `format = "json"` a real `hookgate serve` writes nothing but JSON lines: uvicorn's
start-up and shutdown lines, the access log, rejections, delivery failures; and httpx's
per-request lines stay out at info."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.e2e import Server, free_port, hookgate_cmd, migrate, query, write_config
from support.gateway import EASYPARK_PASSWORD, EASYPARK_USER
from support.polling import until

pytestmark = pytest.mark.e2e

FIXTURE = (
    Path(__file__).resolve().parents[1] / "contract" / "fixtures" / "easypark" / "current.json"
)


def _headers(password: str = EASYPARK_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{EASYPARK_USER}:{password}".encode()).decode()
    return {"Content-Type": "application/json", "Authorization": f"Basic {token}"}


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a file as JSON; a line that is not is a failure naming it."""
    parsed = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{path.name} line {number} is not JSON: {line!r}")
        assert isinstance(parsed[-1], dict), line
    return parsed


def test_every_line_of_a_json_server_is_json(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        port=port,
        logging={"level": "info", "format": "json", "access_log": True},
        # A destination that answers 405: one failed attempt, then dead; its HTTP
        # requests would be httpx INFO lines if those were not kept at warning.
        destinations=[
            {
                "name": "self",
                "kind": "http",
                "url": f"http://127.0.0.1:{port}/healthz",
                "max_attempts": 1,
            }
        ],
    )
    migrate(config)
    server = Server(config, port=port)
    server.start()
    try:
        body = FIXTURE.read_bytes()
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert (
                client.post("/hooks/easypark", content=body, headers=_headers()).status_code == 200
            )
            assert (
                client.post("/hooks/easypark", content=body, headers=_headers()).status_code == 409
            )
            wrong = client.post("/hooks/easypark", content=body, headers=_headers("wrong"))
            assert wrong.status_code == 401
        until(
            lambda: "delivery_dead" in server.err_path.read_text(encoding="utf-8"),
            "the dead delivery logged",
        )
    finally:
        assert server.stop() == 0
        server.kill()

    lines = _lines(server.err_path)
    assert _lines(server.err_path.with_suffix(".stdout")) == []
    assert all({"event", "level", "timestamp", "logger"} <= line.keys() for line in lines), lines

    uvicorn = [line for line in lines if line["logger"].startswith("uvicorn")]
    events = [line["event"] for line in uvicorn]
    assert any("Application startup complete" in e for e in events), events
    assert any(line["event"] == "listening" for line in lines), "the address served"
    (listening,) = [line for line in lines if line["event"] == "listening"]
    assert listening["address"] == f"http://127.0.0.1:{port}"
    assert any("Shutting down" in e or "Finished server process" in e for e in events), events
    assert not [line for line in uvicorn if "color_message" in line]

    assert not [line for line in lines if line["logger"].startswith(("httpx", "httpcore"))]

    accepted = [line for line in lines if line["event"] == "webhook accepted"]
    assert [(a["status"], a["duplicate"]) for a in accepted] == [(200, False), (409, True)]
    (event_id,) = {a["event_id"] for a in accepted}
    assert query(tmp_path / "hookgate.db", "SELECT id FROM inbox") == [(event_id,)]
    assert all(a["source"] == "easypark" and a["duration_ms"] >= 0 for a in accepted)
    # The answered 409 is the duplicate itself, not a rejection.
    (rejected,) = [line for line in lines if line["event"] == "request rejected"]
    assert rejected["reason"] == "unauthorized" and rejected["status"] == 401
    assert query(tmp_path / "hookgate.db", "SELECT id FROM rejections") == [
        (rejected["rejection_id"],)
    ]

    (dead,) = [line for line in lines if line["event"] == "delivery_dead"]
    assert dead["level"] == "warning" and dead["destination"] == "self"
    assert dead["status_code"] == 405


def test_the_access_log_is_off_by_default(tmp_path: Path) -> None:
    config = write_config(tmp_path, logging={"level": "info", "format": "json"})
    migrate(config)
    server = Server(config)
    server.start()
    try:
        body = FIXTURE.read_bytes()
        response = httpx.post(f"{server.url}/hooks/easypark", content=body, headers=_headers())
        assert response.status_code == 200
    finally:
        server.stop()
        server.kill()
    lines = _lines(server.err_path)
    assert any(line["event"] == "hookgate started" for line in lines)
    assert not [line for line in lines if line["event"] == "webhook accepted"]
    # uvicorn's own per-request access line stays off as well.
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]


@pytest.mark.parametrize("format", ["json", "console"])
def test_a_refused_start_follows_the_log_format(tmp_path: Path, format: str) -> None:
    config = write_config(tmp_path, logging={"level": "info", "format": format})
    # No `hookgate migrate`: serve refuses and says what to run.
    result = subprocess.run(
        hookgate_cmd("serve", "--config", str(config), "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    if format == "console":
        assert result.stderr.startswith("Error: there is no database at"), result.stderr
        return
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    (refused,) = lines
    assert refused["event"] == "serve refused" and refused["level"] == "error"
    assert "hookgate migrate --config" in refused["reason"]
