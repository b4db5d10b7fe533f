"""The standalone CLI refuses what it cannot serve, and says how to fix it."""

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


def _serve_fails(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`hookgate serve` that must exit by itself; a server that keeps running is a failure."""
    try:
        result = subprocess.run(
            hookgate_cmd("serve", "--config", str(config), "--port", str(free_port())),
            capture_output=True,
            text=True,
            timeout=20,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # subprocess.run killed it
        pytest.fail(f"hookgate serve kept running instead of refusing: {exc.stderr!r}")
    assert result.returncode != 0, result.stdout + result.stderr
    return result


@pytest.mark.backends("sqlite", "postgresql")
def test_serve_refuses_an_unmigrated_database(tmp_path: Path, storage_url: str) -> None:
    config = write_config(tmp_path, url=storage_url)

    result = _serve_fails(config, tmp_path)

    assert "hookgate migrate" in result.stderr, result.stderr
    assert f"--config {config}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr

    # Following the advice works.
    migrate(config)
    with serving(config) as server:
        assert server.alive()


def _with_bad_key(tmp_path: Path, where: str) -> tuple[Path, str]:
    data: dict[str, Any] = base_config(tmp_path / "hookgate.db")
    if where == "server":
        data["server"]["prot"] = 8000
        return _write(tmp_path, data), "prot"
    if where == "source":
        ampeco = next(s for s in data["sources"] if s["name"] == "ampeco")
        ampeco["secret"] = ampeco.pop("secrets")
        return _write(tmp_path, data), "secret"
    data["storage"]["auto_migrat"] = True
    return _write(tmp_path, data), "auto_migrat"


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "hookgate.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("where", ["server", "source", "storage"])
def test_a_bad_key_is_named_by_check_config_and_serve(tmp_path: Path, where: str) -> None:
    config, key = _with_bad_key(tmp_path, where)
    section = {"server": "server", "source": 'sources["ampeco"]', "storage": "storage"}[where]

    checked = run_cli("check-config", "--config", str(config), cwd=tmp_path, check=False)
    assert checked.returncode != 0, checked.stdout
    assert key in checked.stderr and section in checked.stderr, checked.stderr
    assert f"{config}:" in checked.stderr  # with the line of the key
    assert "valid" not in checked.stdout

    served = _serve_fails(config, tmp_path)
    assert key in served.stderr and section in served.stderr, served.stderr
    assert "Traceback" not in served.stderr


@pytest.mark.backends("sqlite", "postgresql")
def test_prune_clears_old_bodies_and_says_what_it_did(tmp_path: Path, storage_url: str) -> None:
    config = write_config(tmp_path, url=storage_url)
    migrate(config)
    with serving(config) as server:
        run_cli("send", "easypark", "--url", server.url, "--config", str(config), cwd=tmp_path)

        def processed() -> bool:  # by the in-process worker
            listed = run_cli(
                "events", "list", "--json", "--status", "processed", "--config", str(config)
            )
            return bool(json.loads(listed.stdout)["items"])

        until(processed, "the event processed")
    args = ("prune", "--config", str(config), "--json")
    untouched = json.loads(run_cli(*args, "--older-than", "1d").stdout)
    assert untouched["inbox_bodies"] == 0
    planned = json.loads(run_cli(*args, "--older-than", "0d", "--dry-run").stdout)
    assert planned["dry_run"] and planned["inbox_bodies"] == 1
    done = json.loads(run_cli(*args, "--older-than", "0h").stdout)
    assert done["inbox_bodies"] == 1
    listed = json.loads(run_cli("events", "list", "--json", "--config", str(config)).stdout)
    shown = run_cli("events", "show", listed["items"][0]["id"], "--config", str(config))
    assert json.loads(shown.stdout)["raw_body"] == ""

    bad = run_cli("prune", "--config", str(config), "--older-than", "90x", check=False)
    assert bad.returncode == 2 and "90d" in bad.stderr
