"""Budgets end to end: the Zaptec emulator (and an AMPECO stop) against `hookgate serve`,
until the energy budget of a token runs out and the next start is refused NO_CREDIT."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hookgate.emulate.base import Sent
from hookgate.emulate.zaptec import ZaptecEmulator
from support.e2e import migrate, serving, write_config
from support.gateway import ADMIN_TOKEN, AMPECO_OLD, ZAPTEC_PASSWORD, ZAPTEC_USER
from support.polling import until

pytestmark = pytest.mark.e2e


def zone_at_midday() -> str:
    """A time zone where it is now between 12:00 and 13:00, so a day budget cannot roll over
    while the test runs, at whatever hour it runs. The roll-over at midnight itself is
    tested with an injected clock (tests/unit/test_budget_midnight.py)."""
    offset = 12 - datetime.now(UTC).hour  # -11..+12 hours, each an Etc/GMT zone
    return f"Etc/GMT{-offset:+d}"  # POSIX signs: Etc/GMT-3 is three hours ahead of UTC


def budget_config(tmp_path: Path, token: str) -> Path:
    """`[authorization]` in the TOML: one token with a 10 kWh day budget, 1 kWh reserve."""
    return write_config(
        tmp_path,
        authorization={
            "timezone": zone_at_midday(),
            "session_reserve_kwh": 1.0,
            "tokens": [{"uid": token, "label": "e2e driver"}],
            "budgets": [
                {
                    "id": "e2e-day",
                    "subject": "token",
                    "subject_id": token,
                    "metric": "kwh",
                    "period": "day",
                    "limit": 10,
                }
            ],
        },
    )


def decisions(url: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/api/v1/decisions",
        params=params,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def cycles(url: str, token: str, energies: list[float]) -> list[list[Sent]]:
    """One plug-in per energy, one after another (start, and end when approved)."""
    async with httpx.AsyncClient(timeout=10) as client:
        emulator = ZaptecEmulator(
            client, url, "zaptec", username=ZAPTEC_USER, password=ZAPTEC_PASSWORD
        )
        return [await emulator.session(token=token, energy_kwh=kwh) for kwh in energies]


def test_zaptec_cycles_until_the_day_budget_runs_out(tmp_path: Path) -> None:
    config = budget_config(tmp_path, "E2E-TAG")
    migrate(config)
    with serving(config) as server:
        runs = asyncio.run(cycles(server.url, "e2e-tag", [4, 4, 4, 4]))
        # used 0, 4, 8 before starts 1-3 (8 + 1 <= 10); 12 before the 4th.
        for n, sent in enumerate(runs[:3], start=1):
            start, end = sent
            assert start.status == 200, (n, start.response, server.stderr())
            assert start.response["sessionId"]
            assert end.status == 200, (n, end.response)
        refused = runs[3]
        assert len(refused) == 1, "a refused start has no end"
        assert refused[0].status == 403
        assert refused[0].response["authorized"] is False
        assert refused[0].response["reason"] == "NO_CREDIT"

        audit = decisions(server.url, token="e2e-tag", result="NO_CREDIT")
        assert len(audit) == 1
        assert audit[0]["token"] == "E2E-TAG"
        assert audit[0]["session_id"] is None
        assert not audit[0]["fallback"]
        assert any(
            "token E2E-TAG day energy budget: 12 kWh used + 0 kWh reserved of 10 kWh" in r
            for r in audit[0]["reasons"]
        ), audit[0]["reasons"]
        approved = decisions(server.url, token="E2E-TAG", result="ALLOWED")
        assert len(approved) == 3
        assert {d["session_id"] for d in approved} == {s[0].response["sessionId"] for s in runs[:3]}


def ampeco_stop(token: str, wh: int, session_id: int) -> bytes:
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "notification": "session.start.stop.notification",
            "sessionId": session_id,
            "chargePointId": 117,
            "evseId": 1,
            "userId": 5321,
            "idTag": token,
            "action": "stop",
            "startedAtTimestamp": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "stoppedAtTimestamp": stamp,
            "lastUpdatedAt": stamp,
            "meterStart": 3_250_000,
            "meterStop": 3_250_000 + wh,
            "energyConsumed": wh,
            "reason": "EVDisconnected",
        }
    ).encode()


def test_ampeco_energy_in_wh_counts_against_the_same_token_budget(tmp_path: Path) -> None:
    config = budget_config(tmp_path, "AMP-TAG")
    migrate(config)
    with serving(config) as server:
        # 4 kWh charged at a Zaptec charger...
        [first] = asyncio.run(cycles(server.url, "AMP-TAG", [4]))
        assert [s.status for s in first] == [200, 200]

        # ... and 5.5 kWh (5500 Wh) at an AMPECO one: 9.5 kWh, no room for 1 kWh more.
        body = ampeco_stop("AMP-TAG", 5500, 910_001)
        answer = httpx.post(
            f"{server.url}/hooks/ampeco",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Signature": hmac.new(AMPECO_OLD.encode(), body, hashlib.sha256).hexdigest(),
                "X-Timestamp": datetime.now(UTC).isoformat(),
            },
            timeout=10,
        )
        assert answer.status_code == 202, answer.text

        # The engine follows the store's change log (within a second); until then a
        # start may still pass: those plug-ins end with 0 kWh and change nothing.
        def refused() -> Sent | None:
            [sent] = asyncio.run(cycles(server.url, "AMP-TAG", [0]))
            return sent[0] if sent[0].status != 200 else None

        start = until(refused, what="the AMPECO energy to reach the budget")
        assert start.status == 403
        assert start.response["reason"] == "NO_CREDIT"

        [audit] = decisions(server.url, token="AMP-TAG", result="NO_CREDIT")
        assert any(
            "token AMP-TAG day energy budget: 9.5 kWh used" in r for r in audit["reasons"]
        ), audit["reasons"]
