"""What a search over stored events asks for and what it finds (store/search.py runs it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from hookgate.domain.errors import Invalid

__all__ = ["EventHit", "EventPage", "EventSearch", "FieldMatch", "InvalidQuery"]


class InvalidQuery(Invalid):
    """A search or aggregate the caller must correct (a 400, or a CLI message)."""

    code = "bad-query"


class FieldMatch(msgspec.Struct, frozen=True):
    """`name = value` on the parsed document: `name` is a field's own name at any depth
    (`licenseNumber`) or its dotted path (`session.chargePointId`); names and values
    compare without regard to case, a number equals its decimal text (`17`, `"17"`)."""

    name: str
    value: str


class EventSearch(msgspec.Struct, kw_only=True):
    """What to find: every word of `text` (a trailing `*` makes a word a prefix) and
    every field match, within the inbox filters; None and empty mean any."""

    text: str | None = None
    fields: list[FieldMatch] = []
    source: str | None = None
    provider: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class EventHit(msgspec.Struct, kw_only=True):
    """An event found, without its raw body (`body_size` says how large it is)."""

    id: str
    source: str
    provider: str
    event_type: str
    received_at: datetime
    dedup_key: str
    subject: str | None
    status: str
    flags: list[str]
    document: Any
    body_size: int


class EventPage(msgspec.Struct):
    """Events newest first, and the cursor of the next page if there is one."""

    items: list[EventHit]
    next: str | None
