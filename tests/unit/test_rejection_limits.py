"""What an unauthenticated caller can make the edge write: a sample of full records, counts
for the rest, a size cap on the log, replay copies only where a re-run could pass."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import structlog

from hookgate.config import StorageConfig, parse_config
from hookgate.domain.events import Rejection, RejectionCount
from hookgate.ids import new_id
from hookgate.ingress.pipeline import Pipeline
from hookgate.ingress.rejections import RejectionLimiter
from hookgate.metrics import Metrics
from hookgate.providers.base import unauthorized
from hookgate.store import Store, make_store
from support.gateway import AMPECO_NEW, base_config
from support.polling import until

pytestmark = pytest.mark.backends("sqlite", "postgresql")

BODY = b'{"pad": "' + b"x" * 60_000 + b'"}'


def _config(tmp_path: Path, **storage: Any) -> dict[str, Any]:
    data = base_config(tmp_path / "hookgate.db")
    data["storage"] = {**data["storage"], "rejection_sample_per_minute": 3, **storage}
    data["logging"] = {"level": "warning", "rejection_lines_per_minute": 2}
    return data


def _counts(gateway: Any, source: str, reason: str, total: int) -> dict[str, Any]:
    """The admin API's counts of one source and reason, once `total` refusals are in
    (the counts are written every few seconds)."""
    with gateway.admin() as admin:

        def counted() -> dict[str, Any] | None:
            answer = admin.get("/api/v1/rejection-counts", params={"source": source})
            assert answer.status_code == 200, answer.text
            found = [i for i in answer.json()["items"] if i["reason"] == reason]
            return found[0] if found and found[0]["total"] >= total else None

        return until(counted, timeout=15, what=f"{total} {reason} refusals counted")


def test_a_flood_of_refused_bodies_records_a_sample_and_counts_the_rest(
    make_gateway: Any, tmp_path: Path
) -> None:
    gateway = make_gateway(_config(tmp_path))
    headers = {"Content-Type": "application/json", "X-Signature": "deadbeef"}
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for _ in range(12):
            assert client.post("/hooks/ampeco", content=BODY, headers=headers).status_code == 401

    rows = gateway.rows("SELECT body, replay, body_size FROM rejections")
    assert len(rows) == 3
    for body, replay, size in rows:
        assert len(bytes(body)) == 4096 and size == len(BODY)
        # "deadbeef" is no SHA-256 digest: no secret can ever match it, so nothing to re-run.
        assert replay is None
    counted = _counts(gateway, "ampeco", "unauthorized", 12)
    assert (counted["total"], counted["recorded"], counted["unrecorded"]) == (12, 3, 9)
    assert counted["body_bytes"] == 12 * len(BODY)
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'hookgate_rejections_unrecorded_total{reason="unauthorized",source="ampeco"} 9.0' in (
        metrics
    )


def test_a_well_formed_signature_keeps_a_replay_copy(make_gateway: Any, tmp_path: Path) -> None:
    gateway = make_gateway(_config(tmp_path))
    body = b'{"notification": "x"}'
    wrong = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for signature in (wrong, "deadbeef"):
            headers = {"Content-Type": "application/json", "X-Signature": signature}
            assert client.post("/hooks/ampeco", content=body, headers=headers).status_code == 401
    rows = gateway.rows("SELECT headers, replay FROM rejections ORDER BY id")
    assert [r[1] is not None for r in rows] == [True, False]
    assert AMPECO_NEW.encode() not in bytes(rows[0][1])


def test_unknown_source_names_share_one_sample_and_are_cut(
    make_gateway: Any, tmp_path: Path
) -> None:
    gateway = make_gateway(_config(tmp_path))
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for i in range(8):
            name = f"{i}" + "n" * 65_000
            assert client.post(f"/hooks/{name}", content=b"{}").status_code == 404
    rows = gateway.rows("SELECT source, detail, path, stored_bytes FROM rejections")
    assert len(rows) == 3
    for source, detail, path, stored in rows:
        assert len(source) < 100 and len(detail) < 200 and len(path) < 600
        assert stored < 2_000
    counted = _counts(gateway, "-", "unknown-source", 8)
    assert (counted["total"], counted["recorded"]) == (8, 3)


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[Store]:
    s = make_store(StorageConfig(url=storage_url, auto_migrate=True))
    await s.open()
    yield s
    await s.close()


def _rejection(body: bytes, replay: bytes | None = None) -> Rejection:
    return Rejection(
        id=new_id(),
        received_at=datetime.now(UTC),
        source="ampeco",
        provider="ampeco",
        method="POST",
        path="/hooks/ampeco",
        status=401,
        reason="unauthorized",
        detail="the X-Signature signature does not match the body",
        headers={},
        remote=None,
        body_sha256="00",
        body_size=len(body),
        body=body,
        replay=replay,
    )


async def test_the_log_is_trimmed_to_its_size_cap_oldest_first(store: Store) -> None:
    ids = []
    for _ in range(10):
        rejection = _rejection(b"b" * 1000, b"r" * 1000)
        ids.append(rejection.id)
        await store.record_rejection(rejection)
    assert await store.trim_rejections(100_000) == 0
    # Each record costs its body, replay copy, detail and path: a bit over 2,000 bytes.
    assert await store.trim_rejections(7_000) == 7
    left = (await store.list_rejections(None, None, 50)).items
    assert [item.id for item in left] == ids[-3:][::-1]


async def test_counts_add_up_per_minute_source_and_reason(store: Store) -> None:
    minute = datetime(2026, 12, 4, 5, 0, tzinfo=UTC)

    def count(at: datetime, source: str, total: int, recorded: int) -> RejectionCount:
        return RejectionCount(
            minute=at,
            source=source,
            reason="unauthorized",
            total=total,
            recorded=recorded,
            body_bytes=total * 10,
        )

    await store.count_rejections([count(minute, "ampeco", 5, 2), count(minute, "-", 1, 1)])
    await store.count_rejections([count(minute, "ampeco", 7, 0)])
    await store.count_rejections([count(minute + timedelta(minutes=1), "ampeco", 1, 1)])
    items = await store.rejection_counts(None, minute, None)
    assert [(i["source"], i["total"], i["recorded"], i["unrecorded"]) for i in items] == [
        ("ampeco", 13, 3, 10),
        ("-", 1, 1, 0),
    ]
    assert items[0]["first_minute"].startswith("2026-12-04T05:00:00")
    assert items[0]["last_minute"].startswith("2026-12-04T05:01:00")
    only = await store.rejection_counts("ampeco", minute, minute + timedelta(minutes=1))
    assert [(i["total"], i["body_bytes"]) for i in only] == [(12, 120)]
    assert (await store.prune(minute + timedelta(minutes=1)))["rejection_counts"] == 2


def test_the_limiter_samples_and_sums_up_the_unlogged_lines() -> None:
    now = [600.0]
    limiter = RejectionLimiter(sample=2, lines=1, clock=lambda: now[0])
    verdicts = [limiter.admit("ampeco", "unauthorized", 100) for _ in range(4)]
    assert [(v.record, v.log) for v in verdicts] == [
        (True, True),
        (True, False),
        (False, False),
        (False, False),
    ]
    counts, summaries = limiter.drain()
    assert [(c.total, c.recorded, c.body_bytes) for c in counts] == [(4, 2, 400)]
    assert summaries == []  # the minute is not over
    now[0] += 60
    assert limiter.admit("ampeco", "unauthorized", 1).record  # a new minute, a new sample
    counts, summaries = limiter.drain()
    assert [(c.total, c.minute.minute) for c in counts] == [(1, 11)]
    assert [(s.count, s.minute.minute) for s in summaries] == [(3, 10)]
    limiter.drain(final=True)
    assert not limiter.pending


async def test_suppressed_log_lines_end_in_one_summary(store: Store, tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path), env={})
    pipeline = Pipeline(config, store, cast(Any, None), Metrics())
    source = config.source("easypark")
    refused = unauthorized("HTTP Basic credentials are missing or wrong")
    with structlog.testing.capture_logs() as logs:
        for _ in range(6):
            await pipeline.reject(
                source,
                None,
                "easypark",
                refused,
                method="POST",
                path="/hooks/easypark",
                headers={},
                remote=None,
                body=b"{}",
            )
        # On shutdown the counts are stored and every pending summary is logged.
        await pipeline.close()
    lines = [e for e in logs if e["event"] == "request rejected"]
    summary = [e for e in logs if e["event"] == "rejections suppressed"]
    assert len(lines) == 2
    assert [(s["source"], s["reason"], s["suppressed"]) for s in summary] == [
        ("easypark", "unauthorized", 4)
    ]
    assert summary[0]["detail"] == "4 more rejections suppressed"
    assert len((await store.list_rejections(None, None, 50)).items) == 3
    since = datetime.now(UTC) - timedelta(hours=1)
    (counted,) = await store.rejection_counts("easypark", since, None)
    assert (counted["total"], counted["recorded"]) == (6, 3)
