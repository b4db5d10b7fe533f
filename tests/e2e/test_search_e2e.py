"""Search and stats against a served gateway: events posted over HTTP are found by their
payload fields and words once the worker has processed and indexed them, and counted."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from hookgate.emulate.easypark import transaction
from support.e2e import migrate, run_cli, serving, write_config
from support.gateway import EASYPARK_PASSWORD, EASYPARK_USER
from support.polling import until

pytestmark = pytest.mark.e2e


def cli_json(config: Path, *args: str) -> dict[str, object]:
    result = run_cli(*args, "--json", "--config", str(config))
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_posted_events_are_found_by_plate_and_word_and_counted(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    migrate(config)
    plates = ["SRC101", "SRC202", "SRC101"]
    with serving(config) as server:
        for n, plate in enumerate(plates):
            document = transaction(7_000_000 + n)
            document["licenseNumber"] = plate
            answer = httpx.post(
                f"{server.url}/hooks/easypark",
                json=document,
                auth=(EASYPARK_USER, EASYPARK_PASSWORD),
            )
            assert answer.status_code < 300, answer.text

        def found() -> list[object]:
            page = cli_json(config, "events", "search", "--where", "licenseNumber=src101")
            items = page["items"]
            assert isinstance(items, list)
            return items if len(items) == 2 else []

        hits = until(found, "both SRC101 parkings searchable")
    assert [hit["document"]["parkingId"] for hit in hits] == [7_000_002, 7_000_000]  # type: ignore[index]
    words = cli_json(config, "events", "search", "--text", "src202", "--source", "easypark")
    assert [hit["document"]["licenseNumber"] for hit in words["items"]] == ["SRC202"]  # type: ignore[index, union-attr]
    counts = cli_json(config, "stats", "events", "--grain", "day", "--by", "source,status")
    assert counts["items"] == [
        {
            "bucket": counts["items"][0]["bucket"],  # type: ignore[index]
            "source": "easypark",
            "event_type": None,
            "status": "processed",
            "count": 3,
        }
    ]
