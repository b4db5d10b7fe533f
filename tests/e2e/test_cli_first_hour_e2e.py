"""An operator's first hour: what `send`, `serve`, `check-config` and the read commands do
when something is wrong, and that they say so at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.e2e import free_port, hookgate_cmd, migrate, run_cli, serving, to_toml, write_config
from support.gateway import base_config
from support.polling import until

pytestmark = pytest.mark.e2e


def _refusing(args: list[str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """A command that must end by itself with a non-zero exit."""
    try:
        result = subprocess.run(
            hookgate_cmd(*args),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hookgate {' '.join(args)} kept running: {exc.stderr!r}")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


# -- send --------------------------------------------------------------------------------


def test_send_fails_fast_and_says_why(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    migrate(config)
    with serving(config, port=port):
        # No --url: the configuration's [server] host and port.
        ok = run_cli("send", "easypark", "--config", str(config), cwd=tmp_path)
        assert "-> 200" in ok.stdout and "1 accepted" in ok.stdout

        wrong = _refusing(
            ["send", "easypark", "--config", str(config), "--password", "nope"], tmp_path
        )
        assert "retry" not in wrong.stderr  # one attempt, not EasyPark's hourly retries
        assert "-> 401" in wrong.stdout and "1 refused" in wrong.stdout
        assert "401: the credentials differ" in wrong.stderr

        retried = _refusing(
            [
                "send",
                "easypark",
                "--config",
                str(config),
                "--password",
                "nope",
                "--provider-retries",
                "--retry-interval",
                "0.01",
                "--max-attempts",
                "3",
            ],
            tmp_path,
        )
        assert "401, retry 1/2 in 0.01 s" in retried.stderr
        assert "401, retry 2/2 in 0.01 s" in retried.stderr
        assert "sent 1 (401: 1)\n1 refused in 3 request(s)" in retried.stdout

        nowhere = ["--source", "nope", "--username", "u", "--password", "p"]
        unknown = _refusing(["send", "easypark", "--config", str(config), *nowhere], tmp_path)
        assert "-> 404" in unknown.stdout and "is there a source 'nope'" in unknown.stderr

        # A Zaptec "not authorized" is the gateway's decision, not a refusal.
        denied = run_cli("send", "zaptec", "--config", str(config), cwd=tmp_path)
        assert "1 denied" in denied.stdout

        many = run_cli("send", "easypark", "--count", "25", "--config", str(config), cwd=tmp_path)
        assert "progress: 10 requests (10 accepted)" in many.stderr
        assert "progress: 20 requests (20 accepted)" in many.stderr
        assert "-> 200" not in many.stdout and "sent 25 (200: 25)\n25 accepted" in many.stdout

        quiet = run_cli("send", "easypark", "-q", "--config", str(config), cwd=tmp_path)
        assert quiet.stdout == "sent 1 (200: 1)\n1 accepted in 1 request(s)\n"

    down = _refusing(["send", "easypark", "--config", str(config)], tmp_path)
    assert "-> ERR" in down.stdout and "is `hookgate serve` running?" in down.stderr


# -- where the database is -----------------------------------------------------------------


def test_the_database_is_found_from_any_directory_and_only_migrate_creates_it(
    tmp_path: Path,
) -> None:
    data = base_config(tmp_path / "unused.db")
    data["storage"] = {"url": "sqlite:///data/hookgate.db"}  # relative to the file
    config = tmp_path / "hookgate.toml"
    config.write_text(to_toml(data), encoding="utf-8")
    database = tmp_path / "data" / "hookgate.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    refused = _refusing(["serve", "--config", str(config), "--port", "0"], elsewhere)
    assert f"there is no database at {database}" in refused.stderr
    assert "run `hookgate migrate" in refused.stderr
    listed = _refusing(["events", "list", "--config", "../hookgate.toml"], elsewhere)
    assert "hookgate migrate" in listed.stderr
    assert not database.exists() and not (tmp_path / "data").exists()
    assert list(elsewhere.iterdir()) == []

    run_cli("migrate", "--config", "../hookgate.toml", cwd=elsewhere)
    assert database.exists()
    listed = run_cli("events", "list", "--config", "../hookgate.toml", cwd=elsewhere)
    assert list(elsewhere.iterdir()) == []


def test_init_puts_the_database_next_to_the_file(tmp_path: Path) -> None:
    run_cli("init", "--path", str(tmp_path / "etc" / "init.toml"), cwd=tmp_path)
    assert (tmp_path / "etc" / "hookgate.db").exists()
    assert not (tmp_path / "hookgate.db").exists()


# -- one serving process per SQLite file; the port first -------------------------------------


def test_a_second_serve_on_the_same_file_or_port_is_refused(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    migrate(config)
    other = tmp_path / "other"
    other.mkdir()
    other_config = write_config(other, port=port)
    migrate(other_config)
    with serving(config, port=port) as first:
        same_file = _refusing(["serve", "--config", str(config), "--port", "0"], tmp_path)
        assert f"(pid {first.pid}) is serving {tmp_path / 'hookgate.db'}" in same_file.stderr
        assert "one serving process per database file" in same_file.stderr

        same_port = _refusing(["serve", "--config", str(other_config)], other)
        assert f"cannot listen on 127.0.0.1:{port}: the address is in use" in same_port.stderr
        # Refused before start-up: the other database saw no secret written, nothing ran.
        assert "hookgate started" not in same_port.stderr
        assert first.alive()
    # Once the first has stopped, the file is free again.
    with serving(config) as again:
        assert again.alive()


# -- check-config and variables ------------------------------------------------------------


def _config_with(tmp_path: Path, **zaptec: Any) -> Path:
    data = base_config(tmp_path / "hookgate.db")
    data["admin"]["tokens"] = ["${HG_E2E_ADMIN}"]
    data["sources"] = [s for s in data["sources"] if s["name"] != "unsecured"]
    data["sources"][0].update(zaptec)
    path = tmp_path / "hookgate.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def test_check_config_fails_when_a_source_would_refuse_every_call(tmp_path: Path) -> None:
    config = _config_with(tmp_path, password="${HG_E2E_ZAPTEC}")
    env = {"HG_E2E_ADMIN": "a", "HG_E2E_ZAPTEC": ""}
    checked = run_cli("check-config", "--config", str(config), env=env, check=False)
    assert checked.returncode == 1, checked.stdout
    assert 'sources["zaptec"]: no credentials' in checked.stderr
    assert "NO CREDENTIALS" in checked.stdout

    unset = run_cli("check-config", "--config", str(config), env={"HG_E2E_ADMIN": "a"}, check=False)
    assert unset.returncode == 1
    assert 'sources["zaptec"].password: environment variable HG_E2E_ZAPTEC is not set' in (
        unset.stderr
    )

    unbraced = _config_with(tmp_path, password="$HG_E2E_ZAPTEC")
    warned = run_cli("check-config", "--config", str(unbraced), env={"HG_E2E_ADMIN": "a"})
    assert "$HG_E2E_ZAPTEC is taken literally" in warned.stderr


def test_read_commands_do_not_need_the_secrets_of_other_parts(tmp_path: Path) -> None:
    config = _config_with(tmp_path)
    migrate_env = {"HG_E2E_ADMIN": "a"}
    run_cli("migrate", "--config", str(config), env=migrate_env)
    listed = run_cli("events", "list", "--json", "--config", str(config))
    assert json.loads(listed.stdout)["items"] == []
    served = _refusing(["serve", "--config", str(config), "--port", "0"], tmp_path)
    assert "admin.tokens[0]: environment variable HG_E2E_ADMIN is not set" in served.stderr


# -- show by the provider's id ---------------------------------------------------------------


def _projected(config: Path, command: str, *args: str) -> list[dict[str, Any]]:
    """The view's rows once the in-process worker has projected something into it."""

    def listed() -> list[dict[str, Any]]:
        result = run_cli(command, "list", "--json", "--config", str(config), *args)
        return list(json.loads(result.stdout)["items"])

    return until(listed, f"rows in {command}")


def test_show_takes_the_providers_own_id(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    migrate(config)
    with serving(config, port=port):
        run_cli("send", "easypark", "--config", str(config))
        sent = run_cli(
            "send", "zaptec", "--source", "zaptec-allow", "--json", "--config", str(config)
        )
        session_id = json.loads(sent.stdout.splitlines()[0])["response"]["sessionId"]
        [parking] = _projected(config, "parking")
        sessions = _projected(config, "sessions")
    by_ours = json.loads(run_cli("parking", "show", parking["id"], "--config", str(config)).stdout)
    by_theirs = run_cli("parking", "show", str(parking["parking_id"]), "--config", str(config))
    assert json.loads(by_theirs.stdout) == by_ours
    assert session_id in {s["session_key"] for s in sessions}
    shown = run_cli("sessions", "show", session_id, "--config", str(config))
    assert json.loads(shown.stdout)["session_key"] == session_id
    header = run_cli("parking", "list", "--config", str(config)).stdout.splitlines()[0]
    assert header.split() == ["ID", "SOURCE", "PARKING", "PLATE", "ENDED", "PRICE", "AREA", "FLAGS"]
