"""Session start under a deadline: a slow decision or a storage failure falls back to on_error."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookgate.authorization.outcome import Outcome
from hookgate.domain.errors import StoreError
from support.gateway import ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config
from support.polling import until

BASIC = "Basic " + base64.b64encode(f"{ZAPTEC_USER}:{ZAPTEC_PASSWORD}".encode()).decode()


def zaptec_sources(on_error: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "site",
            "provider": "zaptec",
            "auth": "basic",
            "username": ZAPTEC_USER,
            "password": ZAPTEC_PASSWORD,
            "unknown_token": "allow",
            "on_error": on_error,
            "decision_deadline_ms": 100,
        }
    ]


class SlowDecider:
    """A decision that never comes: any answer the gateway gives is its deadline's."""

    async def decide(self, source: Any, request: Any) -> Outcome:
        await asyncio.Event().wait()
        return Outcome("ALLOWED", ["slow"])


def start(running: Running) -> httpx.Response:
    return httpx.post(
        f"{running.url}/hooks/site/session-start",
        json={"ChargerId": "CH-1", "TokenId": "TAG-1"},
        headers={"Authorization": BASIC},
        timeout=10,
    )


@pytest.mark.parametrize(("on_error", "status"), [("deny", 403), ("allow", 200)])
def test_blown_deadline_answers_by_on_error_and_is_audited(
    make_gateway: Any, tmp_path: Path, on_error: str, status: int
) -> None:
    running = make_gateway(base_config(tmp_path / "d.db", sources=zaptec_sources(on_error)))
    running.app.gateway.ingress.sessions.decider = SlowDecider()
    response = start(running)
    assert response.status_code == status
    if status == 403:
        assert response.json()["authorized"] is False
    else:
        assert "sessionId" in response.json()
    until(lambda: running.count("decisions", "fallback = 1") == 1, what="the fallback audit")
    # The slow decision was abandoned: only the fallback is audited, with its reason.
    rows = running.rows("SELECT result, reasons, fallback FROM decisions")
    assert len(rows) == 1 and "deadline exceeded" in rows[0][1]
    assert running.count("inbox", "event_type = 'session.start'") == 1
    if status == 200:
        sid = response.json()["sessionId"]
        assert running.count("authorized_sessions", "session_id = ? AND status = 'active'", sid)


def test_storage_failure_on_start_answers_by_on_error(make_gateway: Any, tmp_path: Path) -> None:
    running = make_gateway(base_config(tmp_path / "f.db", sources=zaptec_sources("deny")))
    store = running.app.gateway.ingress.store

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full")

    store.record_session_start = broken
    store.record_fallback = broken
    response = start(running)
    assert response.status_code == 403
    body = response.json()
    assert body == {
        "authorized": False,
        "reason": "NOT_ALLOWED",
        "message": "Charging cannot be authorized right now; please try again.",
    }
