"""The decider contract, the on_error fallback and the answer claim."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol

from hookgate.authorization.outcome import ALLOWED, NOT_ALLOWED, Outcome
from hookgate.config import ZaptecSource
from hookgate.domain.rules import Token
from hookgate.providers.base import StartRequest


class Decider(Protocol):
    """Anything that can decide a session start."""

    async def decide(self, source: ZaptecSource, request: StartRequest) -> Outcome:
        """The decision for one start; may raise, the caller applies the fallback."""

    def release(self, source: str, outcome: Outcome) -> None:
        """Give back what an approval holds when it was not recorded."""

    def known_for_offline(self, request: StartRequest, now: datetime) -> object | None:
        """A token allowed by `on_error = allow_known`, if any."""

    def group_of(self, token: str | None) -> str | None:
        """The group of a token, for consumption that arrives without one."""

    def token_of(self, token: str | None) -> Token | None:
        """A known token (its vehicle and driver: whose session a reimbursement prices)."""

    async def refresh(self) -> int:
        """Bring in changes committed since the last look (returns how many)."""

    def nudge(self) -> None:
        """Refresh soon without waiting."""


def fallback(source: ZaptecSource, why: str, known: object | None = None) -> Outcome:
    """The `on_error` answer when no decision could be reached or recorded in time."""
    if source.on_error == "allow" or (source.on_error == "allow_known" and known is not None):
        detail = " (token whitelisted for offline use)" if source.on_error == "allow_known" else ""
        return Outcome(ALLOWED, [f"fallback on_error={source.on_error}{detail}: {why}"])
    return Outcome(
        NOT_ALLOWED,
        [f"fallback on_error={source.on_error}: {why}"],
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
