"""Decision results in OCPI AllowedType vocabulary, plus UNKNOWN for unseen tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from hookgate.domain.decisions import Limit

ALLOWED = "ALLOWED"
BLOCKED = "BLOCKED"
EXPIRED = "EXPIRED"
NO_CREDIT = "NO_CREDIT"
NOT_ALLOWED = "NOT_ALLOWED"
UNKNOWN = "UNKNOWN"
RESULTS = (ALLOWED, BLOCKED, EXPIRED, NO_CREDIT, NOT_ALLOWED, UNKNOWN)


@dataclass(slots=True, frozen=True)
class Outcome:
    """A result code, the reasons that led to it, and what an approval holds."""

    result: str
    reasons: list[str] = field(default_factory=list)
    message: str = ""
    session_id: str | None = None
    token: str | None = None
    group_id: str | None = None
    reserved_kwh: Decimal = Decimal(0)
    # What the store re-checks against every instance's sessions when it records this
    # approval (see Store.record_session_start).
    limits: tuple[Limit, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.result == ALLOWED
