"""What readiness knows about writes: a store whose reads still answer may fail every
commit (a full disk, a read-only filesystem, a database that refuses writes)."""

from __future__ import annotations

import time

# A commit this recent proves the store writable; older, readiness commits a probe.
FRESH_SECONDS = 5.0
# How long readiness waits for its probe to commit before calling the writer stuck.
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_KEY = "health_probe"


class WriteHealth:
    """The outcome of the latest commit, updated by the writer (a thread or a task)."""

    def __init__(self) -> None:
        self.ok_at: float | None = None
        self.failed_at: float | None = None
        self.failure: str | None = None

    def committed(self) -> None:
        self.ok_at = time.monotonic()
        self.failure = None

    def failed(self, reason: str) -> None:
        self.failed_at = time.monotonic()
        self.failure = reason

    def needs_probe(self) -> bool:
        """True unless the latest commit succeeded less than FRESH_SECONDS ago."""
        return (
            self.failure is not None
            or self.ok_at is None
            or time.monotonic() - self.ok_at > FRESH_SECONDS
        )
