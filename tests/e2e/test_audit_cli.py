"""Changes made on the command line are in the audit log, named `cli:<user>`, and
`hookgate audit` lists them with those made through the admin API."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.e2e import migrate, run_cli, serving, write_config
from support.gateway import ADMIN_TOKEN

pytestmark = pytest.mark.e2e


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    migrate(path)
    return path


def cli(config: Path, *args: str, ok: bool = True) -> str:
    result = run_cli(*args, "--config", str(config), check=False)
    assert result.returncode == (0 if ok else 1), f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def audit(config: Path, *args: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(cli(config, "audit", "--json", *args))["items"]
    return entries


def test_cli_changes_are_audited_and_listed(config: Path) -> None:
    cli(config, "tokens", "add", "tag-7", "--label", "Van 7")
    cli(config, "tokens", "block", "tag-7")
    cli(config, "tokens", "block", "no-such-tag", ok=False)
    assert cli(config, "replay", "--source", "ampeco", "--dry-run").strip() == "would queue 0"
    cli(config, "tokens", "list")  # a read: not audited

    entries = audit(config)
    actor = f"cli:{getpass.getuser()}"
    assert [(e["actor"], e["action"], e["target"], e["outcome"]) for e in entries] == [
        (actor, "tokens.block", "no-such-tag", "refused"),
        (actor, "tokens.block", "tag-7", "ok"),
        (actor, "tokens.add", "tag-7", "ok"),
    ]
    assert entries[-1]["detail"]["label"] == "Van 7"
    assert all(e["channel"] == "cli" for e in entries)
    assert [e["action"] for e in audit(config, "--outcome", "refused")] == ["tokens.block"]

    first = json.loads(cli(config, "audit", "--json", "--limit", "2"))
    assert len(first["items"]) == 2 and first["next"]
    table = cli(config, "audit", "--limit", "1")
    assert "tokens.block" in table and f"more: hookgate audit --cursor {first['next'][:4]}" in table


def test_api_and_cli_share_the_audit_log(config: Path) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with serving(config) as server:
        response = httpx.post(
            f"{server.url}/api/v1/groups", json={"id": "night-shift"}, headers=headers
        )
        assert response.status_code == 201
        cli(config, "groups", "block", "night-shift")
        listed = httpx.get(f"{server.url}/api/v1/audit", headers=headers).json()["items"]
    assert [(e["channel"], e["action"]) for e in listed] == [
        ("cli", "groups.block"),
        ("api", "createGroup"),
    ]
    assert listed[1]["actor"] == "admin"
