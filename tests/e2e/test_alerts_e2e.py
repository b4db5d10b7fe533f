"""`hookgate serve` evaluates its alert rules itself: refused EasyPark calls from `hookgate
send` fire an alert that reaches a verifying webhook receiver, shows in `hookgate alerts
list` and the admin API; the request id of a refusal leads to its record."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.delivery_receiver import Receiver, serve
from support.e2e import migrate, run_cli, serving, write_config
from support.gateway import ADMIN_TOKEN
from support.polling import until

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]

SECRET = "whsec_" + base64.b64encode(b"e2e-alert-notification-secret!!!").decode()


@pytest.fixture
def inbox() -> Iterator[Receiver]:
    yield from serve(Receiver(secret=SECRET))


def test_serve_fires_an_alert_for_refused_credentials_and_leads_to_the_refusal(
    tmp_path: Path, storage_url: str, inbox: Receiver
) -> None:
    config = write_config(
        tmp_path,
        url=storage_url,
        logging={"level": "info", "format": "json"},
        alerts={
            "interval_seconds": 0.2,
            "rules": [
                {
                    "kind": "rejection_spike",
                    "name": "rotated-secret",
                    "reasons": ["unauthorized"],
                    "above": 2,
                    "window_seconds": 120,
                }
            ],
            "notifiers": [
                {"name": "oncall", "kind": "webhook", "url": inbox.url, "secret": SECRET}
            ],
        },
    )
    migrate(config)
    with serving(config) as server:
        sent = run_cli(
            "send",
            "easypark",
            "--url",
            server.url,
            "--config",
            str(config),
            "--password",
            "stale-password",
            "--count",
            "3",
            cwd=tmp_path,
            check=False,
        )
        assert sent.returncode == 1, sent.stdout + sent.stderr
        verified = until(
            lambda: [r.payload for r in inbox.received if r.verified],
            timeout=30,
            what="the alert notification",
        )
        assert verified[0]["type"] == "alert.firing"
        assert verified[0]["alert"]["rule"] == "rotated-secret"
        assert verified[0]["alert"]["subject"] == "easypark"

        listed = json.loads(
            run_cli("alerts", "list", "--json", "--config", str(config), cwd=tmp_path).stdout
        )
        [alert] = listed["items"]
        assert alert["status"] == "firing" and alert["id"] == verified[0]["alert"]["id"]
        shown = json.loads(
            run_cli("alerts", "show", alert["id"], "--config", str(config), cwd=tmp_path).stdout
        )
        assert shown["details"]["reasons"] == {"unauthorized": 3}
        table = run_cli("alerts", "list", "--config", str(config), cwd=tmp_path).stdout
        assert "rotated-secret" in table and "firing" in table
        rules = json.loads(run_cli("alerts", "rules", "--config", str(config), cwd=tmp_path).stdout)
        assert [r["name"] for r in rules["rules"]] == ["rotated-secret"]
        assert rules["notifiers"] == [{"name": "oncall", "kind": "webhook"}]
        missing = run_cli(
            "alerts", "show", "nope", "--config", str(config), cwd=tmp_path, check=False
        )
        assert missing.returncode == 1 and "no alert with id nope" in missing.stderr
        api = httpx.get(
            f"{server.url}/api/v1/alerts",
            params={"status": "firing"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert api.status_code == 200 and api.json()["items"][0]["id"] == alert["id"]

        # The operator has a request id from the provider's complaint (its problem
        # body; here, the log line of the refusal) and finds the exact record.
        lines = [json.loads(line) for line in server.stderr().splitlines() if line.startswith("{")]
        refused = [line for line in lines if line.get("event") == "request rejected"]
        assert len(refused) == 3 and all(line["request_id"] for line in refused)
        shown = json.loads(
            run_cli(
                "rejections",
                "show",
                refused[0]["request_id"],
                "--config",
                str(config),
                cwd=tmp_path,
            ).stdout
        )
        assert shown["id"] == refused[0]["rejection_id"]
        assert shown["request_id"] == refused[0]["request_id"]
        assert shown["reason"] == "unauthorized"
