"""ZTLment: walks payment/approval objects through their states, signed HMAC-SHA512."""

from __future__ import annotations

import random
from typing import Any

import httpx

from hookgate.emulate.base import Sent, encode, post, sign

PAYMENT_FLOW = (
    "PENDING_COMPLIANCE_CHECKS",
    "PENDING_APPROVAL",
    "PENDING_SIGNING",
    "PENDING_PAYMENT",
    "INITIATED_PAYMENT",
    "PROCESSING_PAYMENT",
    "PROCESSED",
)
APPROVAL_FLOW = ("PENDING_COMPLIANCE_CHECKS", "PENDING_APPROVAL", "PROCESSED")


def notification(object_id: int, object_type: str, state: str) -> dict[str, Any]:
    """One ZTLment body: the object and the state it reached (no time of its own)."""
    return {"id": object_id, "type": object_type, "state": state}


def states(event: str | None) -> tuple[str, str, tuple[str, ...]]:
    """(object type, label, states) for `payment`, `approval` or one named state."""
    if event in (None, "payment"):
        return "PAYMENT_OBJECT", "payment", PAYMENT_FLOW
    if event == "approval":
        return "APPROVAL_OBJECT", "approval", APPROVAL_FLOW
    return "PAYMENT_OBJECT", "payment", (event.upper(),)


async def run(
    client: httpx.AsyncClient,
    base_url: str,
    source: str,
    *,
    secret: str,
    event: str | None = None,
    count: int = 1,
    duplicate: bool = False,
    encoding: str = "base64",
    first_id: int | None = None,
) -> list[Sent]:
    """For each of `count` objects, one notification per state, in order."""
    url = f"{base_url.rstrip('/')}/hooks/{source}"
    object_type, label, flow = states(event)
    base = first_id if first_id is not None else random.randint(10**6, 10**9)  # noqa: S311
    results = []
    for i in range(count):
        for state in flow:
            body = encode(notification(base + i, object_type, state))
            headers = {
                "Content-Type": "application/json",
                "X-Payload-Signature": sign(body, secret, "sha512", encoding),
            }
            for _ in range(2 if duplicate else 1):
                results.append(
                    await post(client, "ztlment", f"{label} {base + i} {state}", url, body, headers)
                )
    return results
