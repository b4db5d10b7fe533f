"""The errors hookgate raises on purpose, under one root.

They are told apart by what the caller can do about them, not by where they arose:
`Unavailable` (try again later), `NotFound`, `Conflict` (the state of things forbids it),
`Invalid` (fix the input). Each edge maps these kinds once: the HTTP edge to a problem
answer (`ingress/problems.py`), the command line to a message (`cli/common.py`).
"""

from __future__ import annotations


class HookgateError(Exception):
    """The root. `detail` is the sentence a person reads; `code` names the case for a
    program (the problem type at the HTTP edge), by default the class's own."""

    code = "error"

    def __init__(self, detail: str = "", *, code: str | None = None, **extra: object) -> None:
        super().__init__(detail)
        self.detail = detail
        # Members a program may act on beside the detail (the offending `field`, counts),
        # carried into the problem answer.
        self.extra = extra
        if code is not None:
            self.code = code


class Unavailable(HookgateError):
    """The work cannot be done now and nothing was changed; the same request may succeed
    later, after `retry_after` seconds when the error knows how long."""

    code = "unavailable"
    retry_after: int | None = None


class NotFound(HookgateError):
    """What the request names does not exist."""

    code = "not-found"


class Conflict(HookgateError):
    """The request is understood, but the current state of things forbids it."""

    code = "conflict"


class Invalid(HookgateError, ValueError):
    """The input is wrong; the detail says what to fix (also a ValueError, as the input
    checks of the standard library raise)."""

    code = "invalid"


class Unprocessable(Invalid):
    """The input is well-formed, but what it says cannot be taken (a body that still
    fails its provider's checks)."""

    code = "still-invalid"


class BadCursor(Invalid):
    """The paging cursor was not issued by this gateway."""

    code = "bad-cursor"


class StoreError(Unavailable):
    """Storage could not do the work: the request is answered 503, never 2xx."""

    code = "storage-unavailable"


class SchemaOutdated(StoreError):
    """The database lacks migrations this version needs."""


class Overloaded(StoreError):
    """The writer queue is full for this kind of write: refused at once, nothing queued.
    The caller answers 503 with `Retry-After: retry_after` (or, pulling from Kafka, waits
    that long and reads again)."""

    code = "overloaded"
    retry_after: int

    def __init__(self, depth: int, limit: int, retry_after: int) -> None:
        super().__init__(f"{depth} writes queued (limit {limit} for this kind of write)")
        self.depth = depth
        self.limit = limit
        self.retry_after = retry_after


class AlreadyExists(Conflict):
    """A create found the key taken (the unique key decided, not a prior read)."""

    code = "already-exists"


class LimitReached(Conflict):
    """An approval would break a limit once every instance's sessions are counted: the
    caller refreshes its view and decides again."""

    code = "limit-reached"


class Abandoned(Conflict):
    """A claimed write was given up because another path answered first."""

    code = "abandoned"
