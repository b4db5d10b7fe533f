"""Shared fixtures: a real gateway on a real socket, with a fresh SQLite database."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hookgate.app import create_app
from hookgate.config import Config, parse_config
from hookgate.store.sqlite import SqliteStore
from kafka_mock import kafka_cluster, kafka_mock  # noqa: F401 (fixtures for every test)

ADMIN_TOKEN = "admin-token-for-tests"
ZAPTEC_USER = "zaptec"
ZAPTEC_PASSWORD = "zap:pass:word"  # a ':' inside the password must survive Basic auth
AMPECO_OLD = "ampeco-old-api-token"
AMPECO_NEW = "ampeco-new-api-token"
EASYPARK_USER = "easypark"
EASYPARK_PASSWORD = "park:ing-secret"
EASYPARK_KEY = "ep-api-key-123"
ZTLMENT_SECRET = "ztlment-webhook-secret"


def base_config(db: Path, **overrides: Any) -> dict[str, Any]:
    """The test configuration as a TOML-shaped dict, one source per variant under test."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536},
        "storage": {"url": f"sqlite:///{db}"},
        "admin": {"tokens": [ADMIN_TOKEN]},
        "logging": {"level": "warning"},
        "sources": [
            {
                "name": "zaptec",
                "provider": "zaptec",
                "auth": "oauth",
                "username": ZAPTEC_USER,
                "password": ZAPTEC_PASSWORD,
            },
            {
                "name": "zaptec-allow",
                "provider": "zaptec",
                "auth": "oauth",
                "username": ZAPTEC_USER,
                "password": ZAPTEC_PASSWORD,
                "unknown_token": "allow",
            },
            {
                "name": "zaptec-basic",
                "provider": "zaptec",
                "auth": "basic",
                "username": ZAPTEC_USER,
                "password": ZAPTEC_PASSWORD,
                "unknown_token": "allow",
            },
            {"name": "ampeco", "provider": "ampeco", "secrets": [AMPECO_OLD, AMPECO_NEW]},
            {
                "name": "easypark",
                "provider": "easypark",
                "auth": "basic",
                "username": EASYPARK_USER,
                "password": EASYPARK_PASSWORD,
            },
            {
                "name": "easypark-key",
                "provider": "easypark",
                "auth": "api_key",
                "api_key_header": "X-Partner-Key",
                "api_keys": [EASYPARK_KEY],
            },
            {
                "name": "easypark-q",
                "provider": "easypark",
                "auth": "basic",
                "username": EASYPARK_USER,
                "password": EASYPARK_PASSWORD,
                "on_invalid": "quarantine",
            },
            {"name": "ztlment", "provider": "ztlment", "secrets": [ZTLMENT_SECRET]},
            {"name": "unsecured", "provider": "ampeco", "secrets": []},
        ],
    }
    for key, value in overrides.items():
        data[key] = value
    return data


@dataclass
class Running:
    """A gateway serving on 127.0.0.1 in a background thread."""

    url: str
    config: Config
    db: Path
    app: Any

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Query the gateway's database directly (a separate connection)."""
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def count(self, table: str = "inbox", where: str = "1=1", *params: Any) -> int:
        return int(self.rows(f"SELECT count(*) FROM {table} WHERE {where}", *params)[0][0])

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )


def _serve(config: Config) -> Iterator[Running]:
    asyncio.run(SqliteStore(config.storage.url.removeprefix("sqlite:///")).migrate())
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_config=None,
            access_log=False,
            loop="asyncio",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test gateway did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Running(
            f"http://127.0.0.1:{port}",
            config,
            Path(config.storage.url.removeprefix("sqlite:///")),
            app,
        )
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Running]:
    """A gateway with every test source configured."""
    yield from _serve(parse_config(base_config(tmp_path / "hookgate.db"), env={}))


@pytest.fixture(scope="module")
def shared_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One gateway for a module's table-driven cases (each case checks only its own rows).

    Starting a gateway per case costs about 0.2 s; cases found by their own body hash,
    dedup key or rejection id can share one.
    """
    db = tmp_path_factory.mktemp("shared-gateway") / "hookgate.db"
    yield from _serve(parse_config(base_config(db), env={}))


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Any]:
    """Start a gateway from a custom config dict (see base_config)."""
    stack: list[Iterator[Running]] = []

    def start(data: dict[str, Any]) -> Running:
        gen = _serve(parse_config(data, env={}))
        stack.append(gen)
        return next(gen)

    yield start
    for gen in stack:
        for _ in gen:
            pass


@pytest.fixture
def client(gateway: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hookgate_cmd(*args: str) -> list[str]:
    """Run the installed CLI through this interpreter."""
    return [sys.executable, "-m", "hookgate", *args]


def wait_healthy(url: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


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
