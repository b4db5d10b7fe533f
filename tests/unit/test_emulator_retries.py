"""The EasyPark emulator retries like EasyPark: every 4xx/5xx except 409, until accepted."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hookgate.domain.errors import StoreError
from hookgate.emulate import easypark
from support.gateway import EASYPARK_PASSWORD, EASYPARK_USER, Running


@pytest.fixture
def flaky(gateway: Running) -> Running:
    """The gateway's store fails the first two ingests (the gateway answers 503)."""
    store = gateway.app.gateway.ingress.store
    real = store.ingest
    calls = {"n": 0}

    async def ingest(event: Any, consumption: Any = None) -> Any:
        calls["n"] += 1
        if calls["n"] <= 2:
            raise StoreError("disk unavailable")
        return await real(event, consumption)

    store.ingest = ingest
    return gateway


async def test_retries_until_accepted_then_stops_on_409(flaky: Running) -> None:
    async with httpx.AsyncClient() as client:
        sent = await easypark.run(
            client,
            flaky.url,
            "easypark",
            username=EASYPARK_USER,
            password=EASYPARK_PASSWORD,
            duplicate=True,
            retry_interval=0.01,
            first_id=4242,
        )
    assert [(s.status, s.attempts) for s in sent] == [(200, 3), (409, 1)]
    assert flaky.count("inbox", "dedup_key = 'parking:4242'") == 1


async def test_gives_up_after_max_attempts(gateway: Running) -> None:
    async with httpx.AsyncClient() as client:
        sent = await easypark.run(
            client,
            gateway.url,
            "easypark",
            username=EASYPARK_USER,
            password="wrong",
            retry_interval=0.01,
            max_attempts=3,
        )
    assert [(s.status, s.attempts) for s in sent] == [(401, 3)]
    assert gateway.count("inbox") == 0
    assert gateway.count("rejections") == 3
