"""HTTP destinations: the structured-mode CloudEvent, signed per Standard Webhooks.

One `httpx.AsyncClient` serves every destination (pooled connections). Redirects are not
followed: a signed message goes only to the URL the operator configured.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from hookgate import __version__
from hookgate.config import DestinationConfig
from hookgate.delivery.envelope import CONTENT_TYPE
from hookgate.delivery.result import SendResult, short
from hookgate.delivery.signing import signature_headers

# Answers that mean the receiver is overloaded or down, rather than refusing this message.
_UNHEALTHY = frozenset({408, 429})


def classify(status: int, reason: str = "") -> SendResult:
    """2xx delivered; 410 gone; any other answer failed (retried)."""
    if 200 <= status < 300:
        return SendResult("delivered", status)
    text = f"HTTP {status}" + (f" {reason}" if reason else "")
    if status == 410:
        return SendResult("gone", status, short(text))
    healthy = status < 500 and status not in _UNHEALTHY
    return SendResult("failed", status, short(text), healthy=healthy)


class HttpSender:
    """Posts envelopes to HTTP destinations."""

    def __init__(
        self, *, max_connections: int = 100, client: httpx.AsyncClient | None = None
    ) -> None:
        self._client = client or httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"user-agent": f"hookgate/{__version__}"},
            trust_env=False,
        )

    async def send(
        self,
        destination: DestinationConfig,
        message_id: str,
        body: bytes,
        timestamp: int | None = None,
        traceparent: str | None = None,
    ) -> SendResult:
        """One POST of `body`; the whole exchange is bounded by the destination's timeout.

        `timestamp` defaults to the wall clock: receivers check it against their own.
        """
        assert destination.url is not None
        stamp = int(time.time()) if timestamp is None else timestamp
        headers = {**destination.headers, "content-type": CONTENT_TYPE}
        headers.update(signature_headers(destination.secret, message_id, stamp, body))
        if traceparent is not None:
            headers["traceparent"] = traceparent  # the attempt's span (W3C Trace Context)
        limit = destination.timeout_seconds
        try:
            async with asyncio.timeout(limit):
                response = await self._client.post(
                    destination.url, content=body, headers=headers, timeout=limit
                )
        except (TimeoutError, httpx.TimeoutException):
            return SendResult("failed", None, f"timed out after {limit:g} s", healthy=False)
        except httpx.HTTPError as exc:
            return SendResult("failed", None, short(f"{type(exc).__name__}: {exc}"), healthy=False)
        return classify(response.status_code, response.reason_phrase)

    async def close(self) -> None:
        """Close pooled connections."""
        await self._client.aclose()
