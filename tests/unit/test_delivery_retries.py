"""The retry schedule (full jitter, dead after attempts or age) and the circuit breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hookgate.config import RetryPolicy
from hookgate.delivery.breaker import CircuitBreaker
from hookgate.delivery.policy import after_failure, backoff, backoff_cap

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(
    max_attempts=6, initial_backoff_seconds=5, max_backoff_seconds=60, max_age_seconds=3600
)


def test_cap_doubles_from_the_initial_backoff_up_to_the_maximum() -> None:
    assert [backoff_cap(POLICY, n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    assert backoff_cap(POLICY, 10_000) == 60


def test_full_jitter_spans_zero_to_the_cap() -> None:
    assert backoff(POLICY, 3, rand=lambda: 0.0) == 0.0
    assert backoff(POLICY, 3, rand=lambda: 0.5) == 10.0
    assert backoff(POLICY, 3, rand=lambda: 0.999) < 20.0


@given(
    attempt=st.integers(1, 40),
    r=st.floats(0, 1, exclude_max=True),
    age=st.floats(0, 4000),
)
def test_retry_is_never_past_the_cap_or_the_age_limit(attempt: int, r: float, age: float) -> None:
    now = T0 + timedelta(seconds=age)
    verdict = after_failure(POLICY, attempt, T0, now, rand=lambda: r)
    if attempt >= POLICY.max_attempts or age >= POLICY.max_age_seconds:
        assert verdict.state == "dead" and verdict.retry_at is None
        return
    assert verdict.state == "failed" and verdict.retry_at is not None
    assert now <= verdict.retry_at <= now + timedelta(seconds=backoff_cap(POLICY, attempt))
    assert verdict.retry_at <= T0 + timedelta(seconds=POLICY.max_age_seconds)


def test_dead_after_max_attempts() -> None:
    assert after_failure(POLICY, 5, T0, T0, rand=lambda: 0.5).state == "failed"
    dead = after_failure(POLICY, 6, T0, T0, rand=lambda: 0.5)
    assert (dead.state, dead.reason) == ("dead", "6 attempts failed")


def test_the_last_retry_is_moved_to_the_age_limit_then_dead() -> None:
    near = T0 + timedelta(seconds=3590)
    verdict = after_failure(POLICY, 5, T0, near, rand=lambda: 0.99)
    assert verdict.retry_at == T0 + timedelta(seconds=3600)
    assert after_failure(POLICY, 5, T0, T0 + timedelta(seconds=3600)).state == "dead"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = Clock()
    breaker = CircuitBreaker(3, 30, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.reopens_at() == 1030.0


def test_half_open_lets_one_trial_through_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 30, clock=clock)
    breaker.record_failure()
    clock.now += 29.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow()
    assert not breaker.allow()  # only one trial at a time
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.allow() and breaker.allow()


def test_failed_trials_double_the_cooldown_up_to_the_cap() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10, max_cooldown=35, clock=clock)
    breaker.record_failure()
    cooldowns = []
    for _ in range(4):
        clock.now = breaker.reopens_at() or clock.now
        assert breaker.allow()
        breaker.record_failure()
        cooldowns.append(breaker.cooldown)
    assert cooldowns == [20, 35, 35, 35]
    clock.now = breaker.reopens_at() or clock.now
    assert breaker.allow()
    breaker.record_success()
    assert breaker.cooldown == 10  # back to the configured cooldown once closed


def test_failures_reported_while_open_do_not_extend_it() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10, clock=clock)
    breaker.record_failure()
    clock.now += 5
    breaker.record_failure()  # a request that was already in flight
    assert breaker.reopens_at() == 1010.0
