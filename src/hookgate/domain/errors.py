"""The errors hookgate raises across its layers.

Storage failures, refusals and clashes are told apart by what a caller should do about
them, so each edge (HTTP, CLI) maps them in one place.
"""

from __future__ import annotations


class StoreError(Exception):
    """Storage could not do the work; the request must be answered 503, never 2xx."""


class Abandoned(StoreError):
    """A claimed write was given up because another path answered first."""


class AlreadyExists(StoreError):
    """A create found the key taken (the unique key decided, not a prior read)."""


class SchemaOutdated(StoreError):
    """The database lacks migrations this version needs."""


class LimitReached(StoreError):
    """An approval would break a limit once every instance's sessions are counted: the
    caller refreshes its view and decides again."""


class Overloaded(StoreError):
    """The writer queue is full for this kind of write: refused at once, nothing queued.
    The caller answers 503 with `Retry-After: retry_after` (or, pulling from Kafka, waits
    that long and reads again)."""

    def __init__(self, depth: int, limit: int, retry_after: int) -> None:
        super().__init__(f"{depth} writes queued (limit {limit} for this kind of write)")
        self.depth = depth
        self.limit = limit
        self.retry_after = retry_after
