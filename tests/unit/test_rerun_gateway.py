"""A refused call re-run through the admin API after the configuration was fixed: the
gateway kept the body and its signature (never credentials) and verifies them again."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any

import httpx

from support.gateway import ADMIN_TOKEN, AMPECO_OLD, EASYPARK_PASSWORD, EASYPARK_USER, base_config
from support.polling import until

ROTATED = "ampeco-token-after-rotation"
BODY = b'{"notification":"cdr.received","id":"cdr-4711","createdAt":"2025-12-04T13:12:00Z"}'


def _admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def _config(db: Path, secrets: list[str]) -> dict[str, Any]:
    data = base_config(db)
    for source in data["sources"]:
        if source["name"] == "ampeco":
            source["secrets"] = secrets
    return data


def test_a_call_refused_for_a_missing_secret_is_stored_once_rerun(
    tmp_path: Path, make_gateway: Any
) -> None:
    db = tmp_path / "hookgate.db"
    before = make_gateway(_config(db, [AMPECO_OLD]))
    signature = hmac.new(ROTATED.encode(), BODY, hashlib.sha256).hexdigest()
    refused = httpx.post(
        f"{before.url}/hooks/ampeco",
        content=BODY,
        headers={"Content-Type": "application/json", "X-Signature": signature},
    )
    assert refused.status_code == 401
    parking = httpx.post(
        f"{before.url}/hooks/easypark",
        content=b"{}",
        headers={"Content-Type": "application/json"},
        auth=(EASYPARK_USER, EASYPARK_PASSWORD + "-wrong"),
    )
    assert parking.status_code == 401
    with _admin(before.url) as admin:
        items = admin.get("/api/v1/rejections").json()["items"]
        by_source = {item["source"]: item["id"] for item in items}
        # Still refused with the old configuration: the signature is checked again.
        still = admin.post(f"/api/v1/rejections/{by_source['ampeco']}/rerun")
        assert still.status_code == 422, still.text
        # Basic credentials are never kept, so that call cannot be re-run.
        basic = admin.post(f"/api/v1/rejections/{by_source['easypark']}/rerun")
        assert basic.status_code == 409
        assert basic.json()["type"].endswith("no-replay-copy")

    after = make_gateway(_config(db, [AMPECO_OLD, ROTATED]))
    with _admin(after.url) as admin:
        rerun = admin.post(f"/api/v1/rejections/{by_source['ampeco']}/rerun")
        assert rerun.status_code == 200, rerun.text
        event_id = rerun.json()["event_id"]
        until(
            lambda: admin.get(f"/api/v1/events/{event_id}").json()["status"] == "processed",
            what="the re-run event to be processed",
        )
        event = admin.get(f"/api/v1/events/{event_id}").json()
        assert event["raw_body"] == BODY.decode()
        again = admin.post(f"/api/v1/rejections/{by_source['ampeco']}/rerun")
        assert again.status_code == 409
