"""ZTLment payment and approval object states (HMAC-SHA512 in X-Payload-Signature)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from hookgate.providers._hmac import SignedProvider
from hookgate.providers.base import Call, Parsed, decode

STATES = frozenset(
    {
        "PENDING_COMPLIANCE_CHECKS",
        "REJECTED_COMPLIANCE",
        "PENDING_APPROVAL",
        "REJECTED_APPROVAL",
        "PENDING_SIGNING",
        "REJECTED_SIGNING",
        "PENDING_PAYMENT",
        "INITIATED_PAYMENT",
        "PROCESSING_PAYMENT",
        "PROCESSED",
        "FAILED",
        "REVERSED",
        "PROCESSING_IBAN",
    }
)
FINAL_STATES = frozenset(
    {
        "PROCESSED",
        "FAILED",
        "REVERSED",
        "REJECTED_COMPLIANCE",
        "REJECTED_APPROVAL",
        "REJECTED_SIGNING",
    }
)


class ObjectState(msgspec.Struct, kw_only=True):
    """`{"id": 123, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}`."""

    id: int
    type: Literal["PAYMENT_OBJECT", "APPROVAL_OBJECT"]
    state: str

    def __post_init__(self) -> None:
        if not self.state.strip():
            raise ValueError("state must not be empty")


class Ztlment(SignedProvider):
    """Dedup on (type, id, state); unknown future states are stored and flagged."""

    name = "ztlment"
    algorithm = "sha512"
    keep_headers: ClassVar[frozenset[str]] = SignedProvider.keep_headers | {"x-payload-signature"}

    def parse(self, source: Any, call: Call) -> Parsed:
        obj = decode(call.body, ObjectState)
        kind = obj.type.removesuffix("_OBJECT").lower()
        flags = [] if obj.state in STATES else ["unknown_state"]
        return Parsed(
            event_type=f"{kind}.{obj.state.lower()}",
            dedup_key=f"{obj.type}:{obj.id}:{obj.state}",
            document={
                "id": obj.id,
                "type": obj.type,
                "state": obj.state,
                "final": obj.state in FINAL_STATES,
            },
            subject=f"{kind}-object/{obj.id}",
            flags=flags,
        )
