"""Waiting for something to become true, with a deadline instead of a fixed sleep.

A fixed sleep is either too short on a loaded machine (a flaky test) or too long
everywhere (a slow one); polling returns as soon as the condition holds and fails, saying
what it waited for and what it last saw, when the deadline passes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

# Generous: a deadline only decides how long a failing test takes to say so.
DEFAULT_TIMEOUT = 30.0
FIRST_INTERVAL = 0.005
MAX_INTERVAL = 0.05


class Timeout(AssertionError):
    """The condition did not hold before the deadline (a test failure, not an error)."""


def _fail(what: str, timeout: float, last: object) -> Timeout:
    return Timeout(f"waited {timeout:g} s for {what}; last saw {last!r}")


def _describe(condition: Callable[..., object], what: str | None) -> str:
    return what or getattr(condition, "__qualname__", repr(condition))


def until(
    condition: Callable[[], T],
    what: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `condition` until it returns a truthy value and return that value.

    Exceptions of the `ignoring` types count as "not yet" (a server still starting).
    The pause between calls starts at 5 ms and grows to 50 ms, so a fast condition
    costs almost nothing and a slow one does not spin on a shared machine.
    """
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    last: object = None
    while True:
        try:
            last = condition()
        except ignoring as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise _fail(_describe(condition, what), timeout, last)
        time.sleep(interval)
        interval = min(interval * 2, MAX_INTERVAL)


async def until_async(
    condition: Callable[[], T | Awaitable[T]],
    what: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """`until` for a running event loop: `condition` may be a coroutine function, and the
    pauses yield to the loop so the code under test keeps running."""
    deadline = time.monotonic() + timeout
    interval = FIRST_INTERVAL
    last: object = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            last = value
        except ignoring as error:
            last = error
        else:
            if value:
                return cast(T, value)
        if time.monotonic() >= deadline:
            raise _fail(_describe(condition, what), timeout, last)
        await asyncio.sleep(interval)
        interval = min(interval * 2, MAX_INTERVAL)
