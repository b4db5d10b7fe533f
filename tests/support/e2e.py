"""Helpers for the end-to-end tests: TOML config files and real `hookgate serve` processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.gateway import base_config
from support.polling import Timeout, until
from support.storage import query_url

LOOPBACK = "127.0.0.1"


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hookgate_cmd(*args: str) -> list[str]:
    """Run the installed CLI through this interpreter."""
    return [sys.executable, "-m", "hookgate", *args]


def wait_healthy(url: str, timeout: float = 15) -> None:
    """Until `url` answers its health check."""
    until(
        lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200,
        timeout=timeout,
        what=f"{url} to become healthy",
        ignoring=(httpx.HTTPError,),
    )


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        hookgate_cmd(*args),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"hookgate {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# -- TOML ---------------------------------------------------------------------------------


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + inner + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(data: dict[str, Any]) -> str:
    """A TOML document for a config dict: scalars first, then [tables] and [[arrays]]."""
    lines: list[str] = []
    for key, value in data.items():
        if not isinstance(value, dict) and not _is_table_array(value):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"\n[{_toml_key(key)}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        elif _is_table_array(value):
            for item in value:
                lines.append(f"\n[[{_toml_key(key)}]]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items())
    return "\n".join(lines) + "\n"


def write_config(
    directory: Path, *, port: int | None = None, url: str | None = None, **overrides: Any
) -> Path:
    """base_config() for a database in `directory` (or at storage `url`), written as
    `directory/hookgate.toml`."""
    data = base_config(directory / "hookgate.db", url, **overrides)
    data["server"] = {**data["server"], "port": port if port is not None else free_port()}
    path = directory / "hookgate.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def migrate(config: Path) -> None:
    run_cli("migrate", "--config", str(config))


def db_path(directory: Path) -> Path:
    return directory / "hookgate.db"


def query(db: Path | str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the gateway's database (a SQLite file or a storage URL) on a connection of our
    own; `?` placeholders."""
    return query_url(db if isinstance(db, str) else f"sqlite:///{db}", sql, *params)


# -- hookgate serve -----------------------------------------------------------------------


class Server:
    """One `hookgate serve` subprocess on 127.0.0.1; output goes to files, not pipes."""

    def __init__(self, config: Path, *, cwd: Path | None = None, port: int | None = None) -> None:
        self.config = config
        self.cwd = cwd or config.parent
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._n = 0
        self.err_path = self.cwd / "serve-0.stderr"

    def start(self, timeout: float = 20) -> Server:
        self._n += 1
        stamp = f"{self.port}-{self._n}"
        self.err_path = self.cwd / f"serve-{stamp}.stderr"
        out_path = self.cwd / f"serve-{stamp}.stdout"
        with open(out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                hookgate_cmd(
                    "serve",
                    "--config",
                    str(self.config),
                    "--host",
                    LOOPBACK,
                    "--port",
                    str(self.port),
                ),
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ},
            )
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"hookgate serve exited with {proc.returncode} before it became "
                    f"healthy:\n{self.stderr()}"
                )
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200

        try:
            until(healthy, timeout=timeout, what="hookgate serve", ignoring=(httpx.HTTPError,))
        except Timeout:
            self.kill()
            raise AssertionError(
                f"hookgate serve not healthy in {timeout}s:\n{self.stderr()}"
            ) from None
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        try:
            return self.err_path.read_text(encoding="utf-8", errors="replace")[-6000:]
        except OSError:
            return ""

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL and reap (no-op when already gone)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, wait, then SIGKILL if it lingers; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


@contextmanager
def serving(config: Path, *, cwd: Path | None = None, port: int | None = None) -> Iterator[Server]:
    """A started server, always stopped (then killed if needed) on the way out."""
    server = Server(config, cwd=cwd, port=port)
    try:
        yield server.start()
    finally:
        server.stop()
        server.kill()


# -- hookgate send output ------------------------------------------------------------------

_LINE = re.compile(r"^(?P<provider>\S+)\s+(?P<label>.*?)\s+-> (?P<status>\d{3}|ERR)  (?P<rest>.*)$")
_SUMMARY = re.compile(r"^sent (?P<n>\d+) \((?P<counts>[^)]*)\)$")


def send_lines(stdout: str) -> list[tuple[str, str, str]]:
    """(provider, label, status) for every request line `hookgate send` printed."""
    found = []
    for line in stdout.splitlines():
        match = _LINE.match(line)
        if match:
            found.append((match["provider"], match["label"], match["status"]))
    return found


def send_summary(output: str) -> tuple[int, dict[str, int]]:
    """The `sent N (200: a, 409: b)` line."""
    for line in output.splitlines():
        match = _SUMMARY.match(line.strip())
        if match:
            counts = {}
            for part in filter(None, (p.strip() for p in match["counts"].split(","))):
                status, _, n = part.partition(": ")
                counts[status] = int(n)
            return int(match["n"]), counts
    raise AssertionError(f"no summary line in:\n{output}")
