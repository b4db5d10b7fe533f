"""Admission to the writer queue: a bound in writes, with a reserve for the decision path.

Both backends count every write from the moment it is queued until its caller is told
the outcome on its event loop (after COMMIT, or the failure): a loop too busy to resume
its callers keeps them counted, so the bound covers the coroutines waiting there as well
as the writes waiting for the writer. Plain ingest is refused once that count reaches
`limit - reserve`; Zaptec session starts and ends may still use the reserve, up to
`limit`; everything else
(processing, delivery, audit of a fallback answer, the rejection log) is never refused
and only counted. A refusal raises `Overloaded` with a Retry-After derived from the depth
and the measured drain rate. See docs/adr/0015-load-shedding-with-priorities.md.
"""

from __future__ import annotations

import math
import threading
import time
from enum import IntEnum

from hookgate.domain.errors import Overloaded

# Retry-After is at least 1 s (HTTP's resolution) and at most this many.
MAX_RETRY_AFTER = 30
_WINDOW = 0.25


class Lane(IntEnum):
    """What a write is, for admission and for its place in the next batch."""

    INTERNAL = 0  # never refused (workers, admin, rejection log)
    INGEST = 1  # refused beyond `limit - reserve`
    DECISION = 2  # Zaptec start/end: taken first, refused only beyond `limit`
    AUDIT = 3  # a fallback answer already given: taken first, never refused

    @property
    def urgent(self) -> bool:
        """Taken into the next batch ahead of everything else."""
        return self >= Lane.DECISION


class WriteQueue:
    """The depth of a writer queue and how fast it drains; thread-safe (SQLite's writer
    is a thread, PostgreSQL's writers are tasks)."""

    __slots__ = ("_done", "_lock", "_rate", "_since", "depth", "limit", "reserve")

    def __init__(self, limit: int = 0, reserve: int = 0) -> None:
        # 0: unbounded (nothing is refused; the depth is still counted).
        self.limit = limit
        self.reserve = min(reserve, limit)
        self.depth = 0
        self._lock = threading.Lock()
        self._rate = 0.0  # writes committed per second, smoothed
        self._since = 0.0  # start of the current measuring window (monotonic)
        self._done = 0  # writes finished in it

    def _ceiling(self, lane: Lane) -> int | None:
        if self.limit <= 0 or lane in (Lane.INTERNAL, Lane.AUDIT):
            return None
        return self.limit - self.reserve if lane == Lane.INGEST else self.limit

    def check(self, lane: Lane) -> None:
        """Raise `Overloaded` if a write of `lane` would be refused now (nothing queued)."""
        ceiling = self._ceiling(lane)
        if ceiling is not None and self.depth >= ceiling:
            raise Overloaded(self.depth, ceiling, self.retry_after())

    def enter(self, lane: Lane) -> None:
        """Count a write about to be queued, or raise `Overloaded` for it."""
        ceiling = self._ceiling(lane)
        with self._lock:
            if ceiling is not None and self.depth >= ceiling:
                depth = self.depth
            else:
                self.depth += 1
                return
        raise Overloaded(depth, ceiling, self.retry_after())

    def leave(self, count: int) -> None:
        """`count` writes are done (committed or failed). The drain rate is measured over
        windows of at least `_WINDOW` seconds, whichever writer finished them."""
        now = time.monotonic()
        with self._lock:
            self.depth -= count
            self._done += count
            if self._since == 0.0:
                self._since = now
                self._done = 0
                return
            elapsed = now - self._since
            if elapsed >= _WINDOW:
                rate = self._done / elapsed
                self._rate = rate if self._rate == 0 else 0.5 * self._rate + 0.5 * rate
                self._since, self._done = now, 0

    @property
    def drain_rate(self) -> float:
        """Writes committed per second while busy (0 before the first batch)."""
        return self._rate

    def retry_after(self) -> int:
        """Seconds until the queue has drained at the measured rate: at least 1."""
        if self._rate <= 0:
            return 1
        return max(1, min(MAX_RETRY_AFTER, math.ceil(self.depth / self._rate)))
