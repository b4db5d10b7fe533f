"""A circuit breaker per destination, in each worker process.

After `failures` consecutive failures the destination is left alone for a cooldown; then
one trial delivery decides: success closes the circuit, failure opens it again for twice
as long (up to `max_cooldown`). A destination that is down costs one request per cooldown
instead of one per due delivery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]
STATE_VALUES: dict[State, int] = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    """Closed → open → half-open (one trial) → closed or open again, on `clock` seconds."""

    def __init__(
        self,
        failures: int,
        cooldown: float,
        *,
        max_cooldown: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.base_cooldown = cooldown
        self.max_cooldown = max(max_cooldown, cooldown)
        self._clock = clock
        self._state: State = "closed"
        self._failures = 0
        self._cooldown = cooldown
        self._opened_at = 0.0
        self._trial = False

    @property
    def state(self) -> State:
        """The current state; an open circuit whose cooldown has passed is half-open."""
        if self._state == "open" and self._clock() >= self._opened_at + self._cooldown:
            self._state = "half_open"
            self._trial = False
        return self._state

    @property
    def cooldown(self) -> float:
        """Seconds the circuit stays open after its next (or latest) opening."""
        return self._cooldown

    def reopens_at(self) -> float | None:
        """When an open circuit becomes half-open (clock seconds), else None."""
        if self.state != "open":
            return None
        return self._opened_at + self._cooldown

    def allow(self) -> bool:
        """May one more request go out now? Half-open lets exactly one trial through."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def record_success(self) -> None:
        """The destination answered: close and forget past failures."""
        self._state = "closed"
        self._failures = 0
        self._cooldown = self.base_cooldown
        self._trial = False

    def record_failure(self) -> None:
        """The destination is unreachable or failing: count, and open when due."""
        state = self.state
        if state == "half_open":
            self._cooldown = min(self._cooldown * 2, self.max_cooldown)
            self._open()
            return
        if state == "open":
            return
        self._failures += 1
        if self._failures >= self.threshold:
            self._open()

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._trial = False
        self._failures = 0
