"""The CloudEvents 1.0 envelope every destination receives (JSON event format).

`id` is the event id, so a redelivery carries the same id and receivers can deduplicate;
`type` and `data` come from the provider, which alone knows its payloads.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hookgate.domain.events import StoredEvent
from hookgate.providers.base import Provider
from hookgate.timeutil import iso

SPECVERSION = "1.0"
SOURCE_PREFIX = "/hookgate/sources/"
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"

# Decimals as strings: amounts and energy must not pass through binary floats.
_encoder = msgspec.json.Encoder(decimal_format="string")


def cloudevent(event: StoredEvent, provider: Provider[Any]) -> dict[str, Any]:
    """The structured-mode envelope of a stored event (`subject` omitted when unknown, as
    CloudEvents has no null attributes)."""
    envelope: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event.id,
        "source": SOURCE_PREFIX + event.source,
        "type": provider.cloudevent_type(event.event_type),
        "time": iso(event.received_at),
        "datacontenttype": "application/json",
    }
    if event.subject is not None:
        envelope["subject"] = event.subject
    if event.trace_context is not None:
        # CloudEvents distributed-tracing extension: the trace of the event's creation
        # (the provider's request), the same on every attempt, so the signed body is too.
        envelope["traceparent"] = event.trace_context
    envelope["data"] = provider.cloudevent_data(event)
    return envelope


def encode(envelope: dict[str, Any]) -> bytes:
    """The envelope as compact JSON bytes: what is signed is exactly what is sent."""
    return _encoder.encode(envelope)
