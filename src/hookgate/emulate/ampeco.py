"""AMPECO: signed notifications (X-Signature HMAC-SHA256), every documented type."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import httpx

from hookgate.emulate.ampeco_samples import NAMES, sample, session_sequence
from hookgate.emulate.base import Sent, encode, post, sign


def bodies(event: str | None, count: int, seq_start: int) -> list[dict[str, Any]]:
    """What to send: a full session lifecycle by default, `all` types, or one named type."""
    out: list[dict[str, Any]] = []
    for i in range(count):
        seq = seq_start + i
        if event is None or event == "session":
            out.extend(
                session_sequence(
                    session_id=100000 + seq,
                    charge_point_id=10 + seq % 50,
                    evse_id=1 + seq % 2,
                    id_tag=f"TAG{seq:06d}",
                    seq=seq,
                )
            )
        elif event == "all":
            out.extend(sample(name, seq) for name in NAMES)
        else:
            out.append(sample(event, seq))
    return out


async def run(
    client: httpx.AsyncClient,
    base_url: str,
    source: str,
    *,
    secret: str,
    event: str | None = None,
    count: int = 1,
    duplicate: bool = False,
    encoding: str = "hex",
    seq_start: int | None = None,
) -> list[Sent]:
    """Post each notification signed like AMPECO; with `duplicate`, each twice."""
    start = seq_start if seq_start is not None else random.randint(0, 10**9)  # noqa: S311
    url = f"{base_url.rstrip('/')}/hooks/{source}"
    results = []
    for document in bodies(event, count, start):
        body = encode(document)
        headers = {
            "Content-Type": "application/json",
            "X-Signature": sign(body, secret, "sha256", encoding),
            "X-Timestamp": datetime.now(UTC).isoformat(),
            "X-Tenant": "emulator",
        }
        for _ in range(2 if duplicate else 1):
            results.append(
                await post(client, "ampeco", str(document["notification"]), url, body, headers)
            )
    return results
