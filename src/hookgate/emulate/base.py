"""Shared parts of the provider emulators: a record per request, signing, posting."""

from __future__ import annotations

import base64
import hashlib
import hmac
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import msgspec


@dataclass
class Sent:
    """One logical delivery as the provider saw it (after its own retries)."""

    provider: str
    label: str
    status: int | None
    response: Any = None
    error: str | None = None
    attempts: int = 1
    body: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Accepted as the provider would count it (2xx, or 409 for a known duplicate)."""
        return self.status is not None and (200 <= self.status < 300 or self.status == 409)


class Observer(Protocol):
    """Told about every request as it happens, so a caller can show progress."""

    def sent(self, sent: Sent) -> None:
        """A response (or transport error) arrived."""

    def retrying(self, sent: Sent, attempt: int, max_attempts: int, delay: float) -> None:
        """`sent` was refused; attempt `attempt + 1` follows after `delay` seconds."""


# Set by `hookgate send` around a run; the emulators report through it without every
# scenario passing a callback down to each request.
OBSERVER: ContextVar[Observer | None] = ContextVar("hookgate_emulate_observer", default=None)


def observe(sent: Sent) -> Sent:
    """Report `sent` to the observer of this run, if any."""
    observer = OBSERVER.get()
    if observer is not None:
        observer.sent(sent)
    return sent


def encode(document: Any) -> bytes:
    """Compact JSON, as providers send it."""
    return msgspec.json.encode(document)


def sign(body: bytes, secret: str, algorithm: str, encoding: str) -> str:
    """HMAC over the exact body bytes, hex or base64."""
    digest = hmac.new(secret.encode("utf-8"), body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def response_json(response: httpx.Response) -> Any:
    """The JSON answer, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text


async def post(
    client: httpx.AsyncClient,
    provider: str,
    label: str,
    url: str,
    body: bytes,
    headers: dict[str, str],
) -> Sent:
    """One POST; transport errors become a Sent with `error`."""
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return observe(Sent(provider, label, None, error=f"{type(exc).__name__}: {exc}", body=body))
    return observe(Sent(provider, label, response.status_code, response_json(response), body=body))
