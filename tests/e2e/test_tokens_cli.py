"""`hookgate tokens ...` and `hookgate decide` against a config file and its SQLite
database, with and without a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.e2e import db_path, migrate, query, run_cli, serving, write_config
from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER
from support.polling import until

pytestmark = pytest.mark.e2e

AUTHORIZATION = {
    "groups": [{"id": "fleet"}],
    "tokens": [{"uid": "cfg1", "group_id": "fleet"}],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, authorization=AUTHORIZATION)
    migrate(path)
    return path


def cli(config: Path, *args: str, ok: bool = True) -> tuple[str, str]:
    """stdout and stderr of one command; `ok` says whether it must succeed or fail (1)."""
    result = run_cli(*args, "--config", str(config), check=False)
    expected = 0 if ok else 1
    assert result.returncode == expected, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout, result.stderr


def decide(config: Path, token: str, charger: str = "CH-1") -> dict[str, Any]:
    out, _ = cli(
        config, "decide", "--source", "zaptec", "--charger", charger, "--token", token, "--json"
    )
    decision: dict[str, Any] = json.loads(out)
    return decision


def test_token_lifecycle_and_decide(config: Path, tmp_path: Path) -> None:
    out, _ = cli(
        config,
        "tokens",
        "add",
        "tag-1",
        "--group",
        "fleet",
        "--label",
        "Anna",
        "--kwh-per-day",
        "10",
        "--source",
        "zaptec",
        "--charger",
        "CH-1",
    )
    assert "added token TAG-1" in out

    out, _ = cli(config, "tokens", "list", "--json")
    listed = {item["uid"]: item for item in json.loads(out)["items"]}
    assert set(listed) == {"CFG1", "TAG-1"}
    assert listed["CFG1"]["managed_by"] == "config" and listed["TAG-1"]["managed_by"] == "api"
    out, _ = cli(config, "tokens", "list", "--status", "valid", "--group", "fleet")
    assert "TAG-1" in out and "Anna" in out and "2 token(s)" in out

    out, _ = cli(config, "tokens", "show", "Tag-1", "--json")
    shown = json.loads(out)
    assert shown["token"]["scope"]["chargers"] == ["CH-1"]
    [budget] = shown["budgets"]
    assert (budget["period"], budget["limit"], budget["used"], budget["remaining"]) == (
        "day",
        "10",
        "0",
        "10",
    )

    allowed = decide(config, "tag-1")
    assert allowed["result"] == "ALLOWED" and allowed["answer"]["status"] == 200
    assert allowed["reserved_kwh"] == "1.0" and allowed["recorded"] is False
    elsewhere = decide(config, "tag-1", charger="CH-2")
    assert elsewhere["result"] == "NOT_ALLOWED"
    assert "outside the allowed chargers" in elsewhere["reasons"][0]
    out, _ = cli(config, "decide", "--source", "zaptec", "--charger", "X", "--token", "nobody")
    assert "result   UNKNOWN" in out and "403" in out and "nothing recorded" in out

    assert "blocked token TAG-1" in cli(config, "tokens", "block", "tag-1")[0]
    blocked = decide(config, "TAG-1")
    assert blocked["result"] == "BLOCKED"
    assert blocked["answer"] == {
        "status": 403,
        "body": {
            "authorized": False,
            "reason": "BLOCKED",
            "message": "This charge token is blocked.",
        },
    }
    assert "unblocked token TAG-1" in cli(config, "tokens", "unblock", "tag-1")[0]
    assert decide(config, "tag-1")["result"] == "ALLOWED"

    # the file's token: readable and decided, but not changeable here
    assert decide(config, "cfg1")["result"] == "ALLOWED"
    _, err = cli(config, "tokens", "block", "cfg1", ok=False)
    assert "managed by the configuration file" in err and "edit the file" in err
    _, err = cli(config, "tokens", "add", "CFG1", ok=False)
    assert "managed by the configuration file" in err

    # clear errors for what cannot be done
    _, err = cli(config, "tokens", "add", "tag-1", ok=False)
    assert "exists" in err and "--replace" in err
    _, err = cli(config, "tokens", "add", "tag-2", "--group", "nope", ok=False)
    assert "no group nope" in err
    _, err = cli(config, "decide", "--source", "ampeco", "--charger", "C", "--token", "T", ok=False)
    assert "only zaptec sources" in err and "zaptec-basic" in err
    _, err = cli(config, "decide", "--source", "nope", "--charger", "C", "--token", "T", ok=False)
    assert "there is no source 'nope'" in err

    out, _ = cli(config, "tokens", "remove", "tag-1")
    assert "removed token TAG-1 and 1 budget(s)" in out
    _, err = cli(config, "tokens", "show", "tag-1", ok=False)
    assert "there is no token TAG-1" in err

    # decide recorded nothing and held nothing
    db = db_path(tmp_path)
    assert query(db, "SELECT count(*) FROM decisions")[0][0] == 0
    assert query(db, "SELECT count(*) FROM authorized_sessions")[0][0] == 0


BAD_CSV = """\
uid,status,kwh_per_day,sources,notes
ok-1,valid,10,zaptec,first
ok-1,valid,,,duplicate
cfg1,blocked,,,config token
bad-2,paused,-5,,two bad cells
,valid,,,no uid
"""

GOOD_CSV = """\
Notes;Label;UID;kwh_per_week;Status;Group_ID
first;Anna;imp-1;50;valid;fleet
second;"Berg; Bo";imp-2;;blocked;
"""


def test_import_dry_run_reports_every_bad_row_and_writes_nothing(
    config: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV, encoding="utf-8")
    for flags in (["--dry-run"], []):
        out, err = cli(config, "tokens", "import", str(bad), *flags, ok=False)
        lines = [line for line in out.splitlines() if line.startswith("line ")]
        assert lines == [
            "line 3: uid: OK-1 is already on line 2",
            "line 4: uid: token CFG1 is managed by the configuration file "
            "([[authorization.tokens]]): change it there, or drop this row",
            "line 5: status: 'paused' is not one of valid, blocked",
            "line 5: kwh_per_day: '-5' is negative",
            "line 6: uid: is empty: every row needs a uid",
        ]
        assert "4 bad row(s)" in out and "nothing written" in err
    assert query(db_path(tmp_path), "SELECT count(*) FROM auth_entities")[0][0] == 0

    good = tmp_path / "good.csv"
    good.write_text(GOOD_CSV, encoding="utf-8")
    out, _ = cli(config, "tokens", "import", str(good), "--dry-run")
    assert "2 new token(s)" in out and "1 budget(s) set" in out and "dry run" in out
    assert query(db_path(tmp_path), "SELECT count(*) FROM auth_entities")[0][0] == 0

    out, _ = cli(config, "tokens", "import", str(good))
    assert "imported" in out
    out, _ = cli(config, "tokens", "list", "--json")
    items = {item["uid"]: item for item in json.loads(out)["items"]}
    assert items["IMP-1"]["group_id"] == "fleet" and items["IMP-1"]["label"] == "Anna"
    assert items["IMP-2"]["status"] == "blocked" and items["IMP-2"]["label"] == "Berg; Bo"
    shown = json.loads(cli(config, "tokens", "show", "imp-1", "--json")[0])
    assert [(b["id"], b["limit"]) for b in shown["budgets"]] == [("token-IMP-1-kwh-week", "50")]


def test_a_token_added_by_the_cli_is_in_force_on_a_running_server(config: Path) -> None:
    with serving(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        grant = client.post(
            "/hooks/zaptec/oauth/token",
            data={"grant_type": "password", "username": ZAPTEC_USER, "password": ZAPTEC_PASSWORD},
        )
        headers = {"Authorization": f"Bearer {grant.json()['access_token']}"}

        def start() -> httpx.Response:
            return client.post(
                "/hooks/zaptec/session-start",
                json={"ChargerId": "CH-1", "TokenId": "live-1"},
                headers=headers,
            )

        def poll(status: int) -> httpx.Response:
            """The first answer with `status`: the server follows the change log."""
            return until(
                lambda: (response := start()).status_code == status and response,
                f"a start answered {status}",
            )

        first = start()
        assert first.status_code == 403 and first.json()["reason"] == "UNKNOWN"

        cli(config, "tokens", "add", "live-1")
        assert poll(200).status_code == 200

        cli(config, "tokens", "block", "LIVE-1")
        blocked = poll(403)
        assert blocked.status_code == 403 and blocked.json()["reason"] == "BLOCKED"
