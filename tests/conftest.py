"""Shared fixtures: a real gateway on a real socket, with a fresh database.

Tests that take the `backend` fixture (through `gateway`, `shared_gateway`, `make_gateway`
or `storage_url`) run on SQLite; a module marked `pytest.mark.backends("sqlite",
"postgresql")` runs them on both. PostgreSQL comes from $HOOKGATE_TEST_PG (default: the
local service, database `test`); each gateway gets a fresh schema, dropped afterwards.
$HOOKGATE_TEST_BACKENDS=sqlite skips PostgreSQL (unreachable PostgreSQL is skipped too,
unless $HOOKGATE_TEST_REQUIRE_PG is set, as CI sets it: then it is a failure).

The helpers behind these fixtures live in `support/`; tests import them from there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from hookgate.config import parse_config
from support.gateway import Running, base_config, serve
from support.kafka import kafka_cluster, kafka_mock  # noqa: F401 (fixtures for every test)
from support.storage import PG_URL, fresh_storage, pg_available

# Property tests draw the same examples on every run, so a red run is reproducible and
# never a matter of luck; HOOKGATE_FUZZ_RANDOM=1 (or bench/fuzz.py) explores new ones.
settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("HOOKGATE_FUZZ_RANDOM") else "fixed")


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


@pytest.fixture
def storage_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, unmigrated database of the backend under test."""
    with fresh_storage(backend, tmp_path) as url:
        yield url


@pytest.fixture
def gateway(backend: str, tmp_path: Path) -> Iterator[Running]:
    """A gateway with every test source configured."""
    with fresh_storage(backend, tmp_path) as url:
        yield from serve(parse_config(base_config(tmp_path / "hookgate.db", url), env={}))


@pytest.fixture(scope="module")
def shared_gateway(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One gateway for a module's table-driven cases (each case checks only its own rows).

    Starting a gateway per case costs about 0.2 s; cases found by their own body hash,
    dedup key or rejection id can share one.
    """
    directory = tmp_path_factory.mktemp("shared-gateway")
    with fresh_storage(backend, directory) as url:
        yield from serve(parse_config(base_config(directory / "hookgate.db", url), env={}))


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
            gen = serve(parse_config(data, env={}))
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
