"""Liveness and readiness: `/livez` answers while the process runs; `/readyz` (and
`/healthz`) answer 503 when the store cannot commit, not only when it cannot be read."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from support.gateway import Running
from support.polling import until

pytestmark = pytest.mark.backends("sqlite", "postgresql")


@pytest.fixture
def probe_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readiness probes a write on every call (not only after 5 s without a commit), and
    gives it 0.5 s."""
    monkeypatch.setattr("hookgate.store.health.FRESH_SECONDS", 0.0)
    monkeypatch.setattr("hookgate.store.sqlstore.PROBE_TIMEOUT_SECONDS", 0.5)


@contextlib.contextmanager
def writes_blocked(gateway: Running) -> Iterator[None]:
    """Another connection holds what the readiness probe must write: SQLite's write lock,
    PostgreSQL's lock on `meta`. Reads still answer."""
    url = gateway.storage_url
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        pg.execute("LOCK TABLE meta IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()


def _status_until(client: httpx.Client, path: str, wanted: int, within: float = 15) -> dict:  # type: ignore[type-arg]
    def answer() -> httpx.Response | None:
        response = client.get(path)
        return response if response.status_code == wanted else None

    return dict(until(answer, timeout=within, what=f"{path} to answer {wanted}").json())


def test_live_ready_and_health_answer_200_when_all_is_well(gateway: Running) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for path in ("/livez", "/readyz", "/healthz"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)
            assert response.json()["status"] == "ok"


def test_readiness_fails_while_the_writer_cannot_commit(
    probe_every_call: None, gateway: Running
) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        with writes_blocked(gateway):
            for path in ("/readyz", "/healthz"):
                body = _status_until(client, path, 503)
                assert body["status"] == "unavailable"
                assert "did not commit a probe within 0.5 s" in body["storage"]
            # The process is alive: an orchestrator must not restart it for this.
            assert client.get("/livez").status_code == 200
        _status_until(client, "/readyz", 200)
