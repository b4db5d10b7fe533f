"""`hookgate rejections counts`: every refusal, recorded in full or only counted."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hookgate.domain.events import RejectionCount
from hookgate.store.sqlite import SqliteStore
from support.e2e import db_path, migrate, run_cli, write_config

pytestmark = pytest.mark.e2e


def test_counts_show_what_the_sample_left_out(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    migrate(config)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)

    async def seed() -> None:
        store = SqliteStore(str(db_path(tmp_path)))
        await store.open()
        try:
            await store.count_rejections(
                [
                    RejectionCount(
                        minute=minute,
                        source="ampeco",
                        reason="unauthorized",
                        total=500,
                        recorded=20,
                        body_bytes=500_000_000,
                    )
                ]
            )
        finally:
            await store.close()

    asyncio.run(seed())
    text = run_cli("rejections", "counts", "--config", str(config)).stdout
    assert "ampeco" in text and "500" in text and "480" in text, text
    doc = json.loads(run_cli("rejections", "counts", "--json", "--config", str(config)).stdout)
    (item,) = doc["items"]
    assert (item["total"], item["recorded"], item["unrecorded"]) == (500, 20, 480)
    later = (minute + timedelta(minutes=1)).isoformat()
    empty = json.loads(
        run_cli("rejections", "counts", "--json", "--since", later, "--config", str(config)).stdout
    )
    assert empty["items"] == []
    bad = run_cli(
        "rejections", "counts", "--since", "yesterday", "--config", str(config), check=False
    )
    assert bad.returncode != 0 and "--since" in bad.stderr
