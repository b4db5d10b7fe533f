"""Throttling of failed credentials, per source and client address, in memory.

Only failing attempts are ever refused: a call is checked first (in constant time) and a
valid credential passes whatever the count, so nobody can deny a provider's calls (Zaptec
charging authorizations above all) by failing on purpose from its address. Past the limit,
the failures get 429 with `Retry-After` (RFC 6585) instead of 401/400. The table is per
process and bounded: when it is full, the entry counted longest ago is forgotten.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class FailureThrottle:
    """Counts failures per (source, address) in fixed windows of `window` seconds."""

    __slots__ = ("_clock", "_entries", "capacity", "limit", "window")

    def __init__(
        self,
        limit: int,
        window: float,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._clock = clock
        # (source, address) -> [window start, failures]; insertion order = window start.
        self._entries: dict[tuple[str, str], list[float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def failed(self, source: str, address: str | None) -> int | None:
        """Count one failed credential; the seconds to announce in `Retry-After` when the
        address is over the limit for this source, else None."""
        if self.limit <= 0:
            return None
        key = (source, address or "-")
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.window:
            if entry is not None:
                del self._entries[key]
            elif len(self._entries) >= self.capacity:
                del self._entries[next(iter(self._entries))]
            entry = self._entries[key] = [now, 0.0]
        entry[1] += 1
        if entry[1] <= self.limit:
            return None
        return max(1, math.ceil(entry[0] + self.window - now))
