"""Shared fixtures: a real gateway on a real socket, with a fresh database.

Tests that take the `backend` fixture (through `gateway`, `shared_gateway`, `make_gateway`
or `storage_url`) run on SQLite; a module marked `pytest.mark.backends("sqlite",
"postgresql")` runs them on both. PostgreSQL comes from $HOOKGATE_TEST_PG (default: the
local service, database `test`); each gateway gets a fresh schema, dropped afterwards.
$HOOKGATE_TEST_BACKENDS=sqlite skips PostgreSQL (unreachable PostgreSQL is skipped too,
unless $HOOKGATE_TEST_REQUIRE_PG is set, as CI sets it: then it is a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hookgate.app import create_app
from hookgate.config import Config, parse_config
from hookgate.store import make_store
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


PG_URL = os.environ.get("HOOKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@functools.cache
def pg_available() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def pg_schema_url(schema: str) -> str:
    """PG_URL with `schema` as the search path."""
    joiner = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{joiner}options=-csearch_path%3D{schema}"


def new_pg_schema() -> tuple[str, str]:
    """A fresh, empty schema: (name, URL that uses it)."""
    import psycopg

    schema = f"hg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, pg_schema_url(schema)


def drop_pg_schema(schema: str) -> None:
    """Drop a test schema ($HOOKGATE_TEST_KEEP_SCHEMAS=1 keeps them for a post-mortem)."""
    import psycopg

    if os.environ.get("HOOKGATE_TEST_KEEP_SCHEMAS"):
        return

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run the module's backend-aware tests on these backends"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = list(marker.args) if marker else ["sqlite"]
    allowed = os.environ.get("HOOKGATE_TEST_BACKENDS")
    if allowed:
        names = [n for n in names if n in allowed.split(",")] or ["sqlite"]
    metafunc.parametrize("backend", names, indirect=True, scope="module")


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """The storage backend under test: "sqlite" or "postgresql"."""
    name = str(request.param)
    if name == "postgresql" and not pg_available():
        if os.environ.get("HOOKGATE_TEST_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL not reachable at {PG_URL} (required here)")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    return name


@contextlib.contextmanager
def fresh_storage(backend: str, directory: Path) -> Iterator[str]:
    """A storage URL for an empty database of `backend`, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'hookgate.db'}"
        return
    schema, url = new_pg_schema()
    try:
        yield url
    finally:
        drop_pg_schema(schema)


@pytest.fixture
def storage_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, unmigrated database of the backend under test."""
    with fresh_storage(backend, tmp_path) as url:
        yield url


def query_url(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Query a database of either backend on a connection of our own. Write the SQL with
    `?` placeholders; JSON columns come back as text, as SQLite returns them."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg
    from psycopg.types.string import TextLoader

    with psycopg.connect(url, autocommit=True) as pg:
        pg.adapters.register_loader("json", TextLoader)
        pg.adapters.register_loader("jsonb", TextLoader)
        return pg.execute(sql.replace("%", "%%").replace("?", "%s").encode(), params).fetchall()


def base_config(db: Path, url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The test configuration as a TOML-shaped dict, one source per variant under test.
    The database is the SQLite file `db` unless a storage `url` is given."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536},
        "storage": {"url": url or f"sqlite:///{db}"},
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
            # AMPECO and ZTLment quarantine a signed body that breaks the schema by default;
            # these refuse it with 422 instead.
            {
                "name": "ampeco-strict",
                "provider": "ampeco",
                "secrets": [AMPECO_NEW],
                "on_invalid": "reject",
            },
            {
                "name": "ztlment-strict",
                "provider": "ztlment",
                "secrets": [ZTLMENT_SECRET],
                "on_invalid": "reject",
            },
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

    @property
    def storage_url(self) -> str:
        return self.config.storage.url

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Query the gateway's database directly (a separate connection; `?` params)."""
        return query_url(self.storage_url, sql, *params)

    def count(self, table: str = "inbox", where: str = "1=1", *params: Any) -> int:
        return int(self.rows(f"SELECT count(*) FROM {table} WHERE {where}", *params)[0][0])

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )


def _serve(config: Config) -> Iterator[Running]:
    asyncio.run(make_store(config.storage).migrate())
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
def gateway(backend: str, tmp_path: Path) -> Iterator[Running]:
    """A gateway with every test source configured."""
    with fresh_storage(backend, tmp_path) as url:
        yield from _serve(parse_config(base_config(tmp_path / "hookgate.db", url), env={}))


@pytest.fixture(scope="module")
def shared_gateway(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One gateway for a module's table-driven cases (each case checks only its own rows).

    Starting a gateway per case costs about 0.2 s; cases found by their own body hash,
    dedup key or rejection id can share one.
    """
    directory = tmp_path_factory.mktemp("shared-gateway")
    with fresh_storage(backend, directory) as url:
        yield from _serve(parse_config(base_config(directory / "hookgate.db", url), env={}))


@pytest.fixture
def make_gateway(backend: str, tmp_path: Path) -> Iterator[Any]:
    """Start a gateway from a custom config dict (see base_config). A SQLite URL in the
    dict is replaced by a fresh database of the backend under test (the same one for
    every gateway of the test that names the same file)."""
    stack: list[Iterator[Running]] = []
    databases: dict[str, str] = {}

    with contextlib.ExitStack() as cleanup:

        def start(data: dict[str, Any]) -> Running:
            url = data["storage"]["url"]
            if backend != "sqlite" and url.startswith("sqlite:///"):
                if url not in databases:
                    databases[url] = cleanup.enter_context(fresh_storage(backend, tmp_path))
                data = {**data, "storage": {**data["storage"], "url": databases[url]}}
            gen = _serve(parse_config(data, env={}))
            stack.append(gen)
            return next(gen)

        yield start
        for gen in reversed(stack):
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
