"""What one send attempt came to, whatever the transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["delivered", "failed", "gone"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """`delivered`; `failed` (retry); `gone` (410: the destination asked to be disabled).

    `healthy` is False when the destination itself looks down (5xx, 408, 429, timeout,
    connection error): that, not a rejected message, is what the circuit breaker counts.
    """

    kind: Kind
    status_code: int | None = None
    error: str | None = None
    healthy: bool = True


def short(text: str, limit: int = 200) -> str:
    """One line of at most `limit` characters, for the attempt log."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
