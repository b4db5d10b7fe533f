"""AMPECO charging-platform notifications (HMAC-SHA256 in X-Signature, reply 202)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from hookgate.providers import ampeco_catalog as catalog
from hookgate.providers._hmac import SignedProvider
from hookgate.providers.base import Answer, Call, Parsed, body_hash, decode, json_answer
from hookgate.store.base import ConsumptionReport
from hookgate.timeutil import parse_iso, utcnow

_KWH = Decimal(1000)


def _instant(text: str | None) -> datetime:
    try:
        return parse_iso(text) if text else utcnow()
    except ValueError:
        return utcnow()


def session_consumption(event: msgspec.Struct) -> ConsumptionReport | None:
    """Energy (Wh, reported as kWh) and money of a session, from the events that carry them."""
    if isinstance(
        event, catalog.SessionStartStopNotification | catalog.SessionStartStopNotificationV2
    ):
        if event.action != "stop":
            return None
        wh = event.energyConsumed
        if wh is None:
            wh = max(event.meterStop - event.meterStart, 0)
        return ConsumptionReport(
            session_key=f"session:{event.sessionId}",
            origin="ampeco",
            token=event.idTag,
            kwh=str(Decimal(str(wh)) / _KWH),
            occurred_at=_instant(event.stoppedAtTimestamp or event.lastUpdatedAt),
        )
    if isinstance(event, catalog.SessionUpdateNotification):
        session = event.session
        amount = session.totalAmount
        if not session.energy and amount is None:
            return None
        return ConsumptionReport(
            session_key=f"session:{session.id}",
            origin="ampeco",
            token=session.idTag,
            kwh=str(Decimal(str(session.energy or 0)) / _KWH),
            money=str(Decimal(str(amount.withTax))) if amount is not None else None,
            currency=session.currency if amount is not None else None,
            occurred_at=_instant(session.stoppedAt or session.startedAt),
        )
    return None


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
        consumption = None
        if model is None:
            document: Any = decode(call.body, dict[str, Any])
            subject = None
            flags.append("unknown_type")
        else:
            event = decode(call.body, model)
            document = msgspec.to_builtins(event)
            subject = catalog.subject(event)
            consumption = session_consumption(event)
            if head.notification in catalog.DEPRECATED:
                flags.append("deprecated_type")
        return Parsed(
            event_type=head.notification,
            # AMPECO resends identical bodies; the body hash is the only stable identity.
            dedup_key=body_hash(call.body),
            document=document,
            subject=subject,
            flags=flags,
            consumption=consumption,
        )

    def accepted(self, event_id: str) -> Answer:
        return json_answer(202, {})
