"""How much of a flood of refused calls the gateway writes down.

Anyone can make the edge refuse a call, so what a refusal costs must not grow with what
the caller sends. Per source (every unknown source name shares one, "-") and reason and
per minute, the first `sample` refusals are recorded in full and the first `lines` are
logged; every refusal is counted. The counts go to storage in one small write every few
seconds (`rejection_counts`), and a "rejections suppressed" line sums up the unlogged
ones once their minute is over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hookgate.domain.events import RejectionCount

Key = tuple[int, str, str]  # (minute since the epoch, source key, reason)

UNKNOWN_SOURCE = "-"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, marked when cut (attacker-sized values)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


@dataclass(slots=True)
class _Bucket:
    recorded: int = 0
    logged: int = 0
    suppressed_lines: int = 0
    # Not yet written to storage.
    total: int = 0
    kept: int = 0
    body_bytes: int = 0


@dataclass(slots=True, frozen=True)
class Verdict:
    """What to do with one refusal: record it in full, log a line for it."""

    record: bool
    log: bool


@dataclass(slots=True, frozen=True)
class Suppressed:
    """Refusals of one finished minute that got no log line of their own."""

    minute: datetime
    source: str
    reason: str
    count: int


class RejectionLimiter:
    """Per-minute sampling of refusals for the record and the log; counts everything."""

    __slots__ = ("_buckets", "_clock", "lines", "sample")

    def __init__(self, sample: int, lines: int, clock: Callable[[], float] = time.time) -> None:
        self.sample = sample
        self.lines = lines
        self._clock = clock
        self._buckets: dict[Key, _Bucket] = {}

    def admit(self, source: str, reason: str, body_size: int) -> Verdict:
        """Count one refusal and say whether it is recorded and logged."""
        key = (int(self._clock() // 60), source, reason)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket()
        record = bucket.recorded < self.sample
        log = bucket.logged < self.lines
        bucket.recorded += record
        bucket.logged += log
        bucket.suppressed_lines += not log
        bucket.total += 1
        bucket.kept += record
        bucket.body_bytes += body_size
        return Verdict(record, log)

    @property
    def pending(self) -> bool:
        """Counts or summaries are waiting for `drain`."""
        return bool(self._buckets)

    def drain(self, *, final: bool = False) -> tuple[list[RejectionCount], list[Suppressed]]:
        """The counts not yet stored, and the summaries of minutes that are over (of every
        minute with `final`, on shutdown). Finished minutes are forgotten."""
        now_minute = int(self._clock() // 60)
        counts: list[RejectionCount] = []
        summaries: list[Suppressed] = []
        for key in list(self._buckets):
            minute, source, reason = key
            bucket = self._buckets[key]
            at = datetime.fromtimestamp(minute * 60, UTC)
            if bucket.total:
                counts.append(
                    RejectionCount(
                        minute=at,
                        source=source,
                        reason=reason,
                        total=bucket.total,
                        recorded=bucket.kept,
                        body_bytes=bucket.body_bytes,
                    )
                )
                bucket.total = bucket.kept = bucket.body_bytes = 0
            if minute < now_minute or final:
                if bucket.suppressed_lines:
                    summaries.append(Suppressed(at, source, reason, bucket.suppressed_lines))
                del self._buckets[key]
        return counts, summaries
