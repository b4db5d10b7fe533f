"""AMPECO: signed notifications (X-Signature HMAC-SHA256), every documented type."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from hookgate.emulate.ampeco_samples import NAMES, sample, session_minutes, session_sequence
from hookgate.emulate.base import Sent, encode, post, sign

# The types that report one charging session; they are dated so that the session ends now.
SESSION_TYPES = frozenset(
    {
        "session.start.stop.notification",
        "SessionStartStopNotification",
        "SessionMeterValuesNotification",
        "SessionUpdateNotification",
        "cdr.received",
    }
)
# Consecutive sessions end a few minutes apart, over the last day at most.
_SPACING_MINUTES = 7
_SPREAD_MINUTES = 24 * 60


def _anchor(name: str, seq: int, index: int, at: datetime) -> datetime:
    """When the ``index``-th body of a run happens: a session started so that its CDR
    comes just before ``at``; anything else at ``at``, both a little earlier per index."""
    back = timedelta(minutes=1 + index * _SPACING_MINUTES % _SPREAD_MINUTES)
    if name in SESSION_TYPES or name == "session":
        back += timedelta(minutes=session_minutes(seq))
    return at - back


def bodies(
    event: str | None, count: int, seq_start: int, at: datetime | None = None
) -> list[dict[str, Any]]:
    """What to send, dated around ``at`` (default: now): a full session lifecycle by
    default, `all` types, or one named type."""
    moment = at or datetime.now(UTC)
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
                    start=_anchor("session", seq, i, moment),
                )
            )
        elif event == "all":
            out.extend(sample(name, seq, _anchor(name, seq, i, moment)) for name in NAMES)
        else:
            out.append(sample(event, seq, _anchor(event, seq, i, moment)))
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
    at: datetime | None = None,
) -> list[Sent]:
    """Post each notification signed like AMPECO, dated around `at` (default: now); with
    `duplicate`, each twice."""
    start = seq_start if seq_start is not None else random.randint(0, 10**9)  # noqa: S311
    url = f"{base_url.rstrip('/')}/hooks/{source}"
    results = []
    for document in bodies(event, count, start, at):
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
