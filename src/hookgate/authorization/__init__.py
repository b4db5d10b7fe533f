"""Charging authorization: decide whether a Zaptec session start may charge."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from hookgate.config import ZaptecSource
from hookgate.providers.base import StartRequest

ALLOWED = "ALLOWED"
UNKNOWN = "UNKNOWN"


@dataclass(slots=True, frozen=True)
class Outcome:
    """A result code (OCPI AllowedType vocabulary) and the reasons that led to it."""

    result: str
    reasons: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.result == ALLOWED


class Decider(Protocol):
    """Anything that can decide a session start."""

    async def decide(self, source: ZaptecSource, request: StartRequest) -> Outcome:
        """The decision for one start; may raise, the caller applies the fallback."""


class SourcePolicy:
    """Decides by the source's `unknown_token` policy: hookgate knows no tokens yet."""

    async def decide(self, source: ZaptecSource, request: StartRequest) -> Outcome:
        token = request.token or "(none)"
        if source.unknown_token == "allow":
            return Outcome(
                ALLOWED, [f"token {token} is unknown; source policy unknown_token=allow"]
            )
        return Outcome(
            UNKNOWN,
            [f"token {token} is unknown; source policy unknown_token=deny"],
            "This charge token is not known to the operator.",
        )


def fallback(source: ZaptecSource, why: str) -> Outcome:
    """The `on_error` answer when no decision could be reached or recorded in time."""
    if source.on_error == "allow":
        return Outcome(ALLOWED, [f"fallback on_error=allow: {why}"])
    return Outcome(
        "NOT_ALLOWED",
        [f"fallback on_error=deny: {why}"],
        "Charging cannot be authorized right now; please try again.",
    )


class Claim:
    """Who answers a start: the durable write, or the deadline fallback, never both."""

    WRITER = 1
    FALLBACK = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner = 0

    def take(self, who: int) -> bool:
        """True for the first taker only."""
        with self._lock:
            if self._owner == 0:
                self._owner = who
            return self._owner == who
