"""Time the test decides: a clock to inject where the code under test reads the time,
and ids made "at" a chosen moment, so tests move time instead of waiting for it."""

from __future__ import annotations

from datetime import datetime, timedelta

from hookgate.ids import floor_id, new_id


class ManualClock:
    """A clock that stands still until the test moves it (timezone-aware datetimes)."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("a ManualClock needs a timezone-aware datetime")
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, /, **parts: float) -> datetime:
        """Move forward by `delta` or by `timedelta(**parts)`; the new time."""
        self.now += delta if delta is not None else timedelta(**parts)
        return self.now

    def set(self, moment: datetime) -> datetime:
        """Jump to `moment` (backwards too: a clock that steps back)."""
        self.now = moment
        return self.now


def id_at(moment: datetime) -> str:
    """A fresh id whose time part is `moment`: ids (and so listing order, `since` filters
    and retention) follow the chosen time instead of the wall clock."""
    return floor_id(moment)[:10] + new_id()[10:]
