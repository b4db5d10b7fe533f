"""AMPECO charging-platform notifications (HMAC-SHA256 in X-Signature, reply 202)."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from hookgate.providers import ampeco_catalog as catalog
from hookgate.providers._hmac import SignedProvider
from hookgate.providers.base import Answer, Call, Parsed, body_hash, decode, json_answer


class _Head(msgspec.Struct):
    notification: str


class Ampeco(SignedProvider):
    """One URL takes every notification type; `notification` names it."""

    name = "ampeco"
    algorithm = "sha256"
    keep_headers: ClassVar[frozenset[str]] = SignedProvider.keep_headers | {
        "x-signature",
        "x-timestamp",
        "x-tenant",
        "x-webhook-id",
        "x-webhook-type",
    }

    def parse(self, source: Any, call: Call) -> Parsed:
        head = decode(call.body, _Head)
        model = catalog.EVENTS.get(head.notification)
        flags: list[str] = []
        if model is None:
            document: Any = decode(call.body, dict[str, Any])
            subject = None
            flags.append("unknown_type")
        else:
            event = decode(call.body, model)
            document = msgspec.to_builtins(event)
            subject = catalog.subject(event)
            if head.notification in catalog.DEPRECATED:
                flags.append("deprecated_type")
        return Parsed(
            event_type=head.notification,
            # AMPECO resends identical bodies; the body hash is the only stable identity.
            dedup_key=body_hash(call.body),
            document=document,
            subject=subject,
            flags=flags,
        )

    def accepted(self, event_id: str) -> Answer:
        return json_answer(202, {})
