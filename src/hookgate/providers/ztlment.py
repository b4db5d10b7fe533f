"""ZTLment payment and approval object states (HMAC-SHA512 in X-Payload-Signature)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import Fact, ObjectStateFact
from hookgate.providers._hmac import SignedProvider
from hookgate.providers.base import Call, Parsed, decode, json_block

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

# The normal progression (a higher rank comes later). PROCESSING_IBAN, listed only by older
# pages, sits with PROCESSING_PAYMENT; a processed payment can still be REVERSED.
RANKS: dict[str, int] = {
    "PENDING_COMPLIANCE_CHECKS": 1,
    "PENDING_APPROVAL": 2,
    "PENDING_SIGNING": 3,
    "PENDING_PAYMENT": 4,
    "INITIATED_PAYMENT": 5,
    "PROCESSING_PAYMENT": 6,
    "PROCESSING_IBAN": 6,
    "PROCESSED": 7,
    "FAILED": 7,
    "REJECTED_COMPLIANCE": 7,
    "REJECTED_APPROVAL": 7,
    "REJECTED_SIGNING": 7,
    "REVERSED": 8,
}


class ObjectState(msgspec.Struct, kw_only=True):
    """`{"id": 123, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}`."""

    id: int
    type: Literal["PAYMENT_OBJECT", "APPROVAL_OBJECT"]
    state: str

    def __post_init__(self) -> None:
        if not self.state.strip():
            raise ValueError("state must not be empty")


class _LooseState(msgspec.Struct):
    """The identifying members of a body the schema refused, whatever their types."""

    id: Any = None
    type: Any = None
    state: Any = None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    return text if text.strip() else None


class Ztlment(SignedProvider):
    """Dedup on (type, id, state); unknown future states are stored and flagged."""

    name = "ztlment"
    algorithm = "sha512"
    keep_headers: ClassVar[frozenset[str]] = SignedProvider.keep_headers | {"x-payload-signature"}
    secret_issuer = "the secret ZTLment returns when the webhook is created"
    resend = "ZTLment has to send the state change again"
    init_placeholder = "ztlment-webhook-secret"

    @staticmethod
    def webhook(url: str) -> dict[str, object]:
        """The body of ZTLment's Create Payment Webhook (`POST /v1/webhooks`)."""
        return {
            "url": f"{url}/hooks/ztlment",
            "object_type": ["PAYMENT_OBJECT", "APPROVAL_OBJECT"],
        }

    @classmethod
    def starter(cls, secret: str) -> str:
        return (
            '[[sources]]\nname = "ztlment"\nprovider = "ztlment"\n'
            "# PLACEHOLDER: the secret ZTLment returns when the webhook is created.\n"
            f'secrets = ["{secret}"]\n'
        )

    @classmethod
    def portal(cls, url: str, secret: str, config_name: str) -> str:
        body = json_block(cls.webhook(url), "       ")
        return f"""\
ZTLment: Create Payment Webhook (POST /v1/webhooks of the ZTLment API, with your
   ZTLment API credentials), body:
{body}
   Put the secret in ZTLment's answer into {config_name}, sources "ztlment",
   secrets = ["<the secret>"] (replacing the REPLACE-ME-... value). Restart hookgate."""

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

    def drift_identity(self, call: Call) -> tuple[str, str, str | None]:
        """(type, id, state) is the dedup key whenever the body still names all three,
        even with a new object type or an id sent as text: resends of one drifted state
        stay one event, and a reprocess keeps the key of a valid parse."""
        try:
            loose = msgspec.json.decode(call.body, type=_LooseState)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return super().drift_identity(call)
        kind_name, object_id, state = _scalar(loose.type), _scalar(loose.id), _scalar(loose.state)
        if kind_name is None or object_id is None or state is None:
            return super().drift_identity(call)
        kind = kind_name.removesuffix("_OBJECT").lower()
        return (
            f"{kind}.{state.lower()}",
            f"{kind_name}:{object_id}:{state}",
            f"{kind}-object/{object_id}",
        )

    def facts(self, event: StoredEvent) -> list[Fact]:
        """The state an object reached, with its place in the progression."""
        doc = event.document
        if event.status == "quarantined" or not isinstance(doc, dict) or "state" not in doc:
            return []
        state = str(doc["state"])
        return [
            ObjectStateFact(
                object_type=str(doc["type"]).removesuffix("_OBJECT").lower(),
                object_id=str(doc["id"]),
                state=state,
                final=state in FINAL_STATES,
                known=state in STATES,
                rank=RANKS.get(state),
            )
        ]
