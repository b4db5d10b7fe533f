"""When to try a failed delivery again, or to give up.

Full jitter (a uniform delay between zero and the exponential cap) spreads the retries of
many deliveries that failed together, so a recovering receiver is not hit in waves.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from hookgate.config import RetryPolicy


@dataclass(frozen=True, slots=True)
class Verdict:
    """After a failed attempt: `failed` with the time of the next try, or `dead`."""

    state: Literal["failed", "dead"]
    retry_at: datetime | None
    reason: str | None = None


def backoff_cap(policy: RetryPolicy, attempt: int) -> float:
    """The largest delay after failed attempt number `attempt` (1-based): the initial
    backoff doubled per earlier attempt, capped at `max_backoff_seconds`."""
    exponent = min(max(attempt - 1, 0), 64)
    return float(min(policy.max_backoff_seconds, policy.initial_backoff_seconds * 2.0**exponent))


def backoff(policy: RetryPolicy, attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt `attempt`: uniform in [0, cap)."""
    return rand() * backoff_cap(policy, attempt)


def after_failure(
    policy: RetryPolicy,
    attempt: int,
    created_at: datetime,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> Verdict:
    """Dead once `max_attempts` attempts failed or the delivery is `max_age_seconds` old;
    otherwise retry after a jittered backoff, never later than the age limit (so the last
    try happens at the limit instead of being skipped)."""
    if attempt >= policy.max_attempts:
        return Verdict("dead", None, f"{attempt} attempts failed")
    deadline = created_at + timedelta(seconds=policy.max_age_seconds)
    if now >= deadline:
        return Verdict("dead", None, f"older than {policy.max_age_seconds:g} s")
    retry_at = now + timedelta(seconds=backoff(policy, attempt, rand))
    return Verdict("failed", min(retry_at, deadline))
