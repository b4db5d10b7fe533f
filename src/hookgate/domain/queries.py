"""What a listing asks for (filters) and what it gets back (a page and its cursor)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class EventFilter(msgspec.Struct, kw_only=True):
    """Filters of the inbox listing; None means any."""

    source: str | None = None
    provider: str | None = None
    event_type: str | None = None
    status: str | None = None
    since: datetime | None = None


class DecisionFilter(msgspec.Struct, kw_only=True):
    """Filters of the decision audit; None means any."""

    source: str | None = None
    token: str | None = None
    result: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class ViewFilter(msgspec.Struct, kw_only=True):
    """A listing of a view: equality filters on columns, a time range on `time_column`,
    and rows whose `flags` hold `flag`."""

    equal: dict[str, Any] = {}
    time_column: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    flag: str | None = None


class ReplayFilter(msgspec.Struct, kw_only=True):
    """What to deliver again: explicit events, or a source/time/status selection."""

    event_ids: list[str] = []
    source: str | None = None
    since: datetime | None = None
    status: str | None = None  # delivery status: failed | dead | delivered | pending
    destination: str | None = None


class Page(msgspec.Struct, Generic[T]):
    """A page of items, newest first; `next` is the cursor of the following page, or null
    on the last one. `Page[Event]` says what a listing holds; the admin API answers
    this struct as it is (its OpenAPI schema is generated from it)."""

    items: list[T]
    next: str | None
