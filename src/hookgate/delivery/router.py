"""Which destinations an event goes to.

Runs inside the processing transaction for every event, so it is pure and cheap: filters
are compiled once, and the envelope is built only for destinations with `where`
conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from hookgate.config import DestinationConfig
from hookgate.delivery.envelope import cloudevent
from hookgate.domain.events import StoredEvent
from hookgate.providers.base import Provider

_MISSING = object()


@dataclass(frozen=True, slots=True)
class _TypePattern:
    text: str
    prefix: bool

    def matches(self, value: str) -> bool:
        return value.startswith(self.text) if self.prefix else value == self.text


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    providers: frozenset[str]
    sources: frozenset[str]
    types: tuple[_TypePattern, ...]
    where: tuple[tuple[tuple[str, ...], tuple[Any, ...]], ...]


def _compile(destination: DestinationConfig) -> _Rule:
    selection = destination.selection()
    types = tuple(
        _TypePattern(t[:-1], True) if t.endswith("*") else _TypePattern(t, False)
        for t in selection.event_types
    )
    where = tuple(
        (
            tuple(path.split(".")),
            tuple(expected) if isinstance(expected, list) else (expected,),
        )
        for path, expected in selection.where.items()
    )
    return _Rule(
        name=destination.name,
        providers=frozenset(selection.providers),
        sources=frozenset(selection.sources),
        types=types,
        where=where,
    )


def lookup(document: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path through dicts, structs and lists (numeric parts index
    lists); a sentinel when the path does not exist."""
    value = document
    for part in path:
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.lstrip("-").isascii() and part.lstrip("-").isdigit():
            index = int(part)
            value = value[index] if -len(value) <= index < len(value) else _MISSING
        elif isinstance(value, msgspec.Struct):
            value = getattr(value, part, _MISSING)
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def same(actual: Any, expected: Any) -> bool:
    """Equality that treats `"12.50"`, `12.5` and `Decimal("12.5")` as the same amount,
    since providers send amounts as text or numbers and TOML has no decimals."""
    if actual is _MISSING:
        return False
    if actual == expected and type(actual) is not bool and type(expected) is not bool:
        return True
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, str) and isinstance(expected, str):
        return False
    left, right = _number(actual), _number(expected)
    return left is not None and right is not None and left == right


class Router:
    """The destinations of an event, in configuration order."""

    def __init__(
        self, destinations: list[DestinationConfig], providers: dict[str, Provider[Any]]
    ) -> None:
        self._rules = [_compile(d) for d in destinations]
        self._providers = providers

    def destinations_for(self, event: StoredEvent) -> list[str]:
        """Names of the destinations whose every filter part matches `event`."""
        names: list[str] = []
        provider = self._providers.get(event.provider)
        ce_type: str | None = None
        envelope: dict[str, Any] | None = None
        for rule in self._rules:
            if rule.providers and event.provider not in rule.providers:
                continue
            if rule.sources and event.source not in rule.sources:
                continue
            if rule.types:
                if ce_type is None:
                    ce_type = (
                        provider.cloudevent_type(event.event_type)
                        if provider is not None
                        else event.event_type
                    )
                if not any(p.matches(ce_type) or p.matches(event.event_type) for p in rule.types):
                    continue
            if rule.where:
                if provider is None:
                    continue
                if envelope is None:
                    envelope = cloudevent(event, provider)
                if not all(
                    any(same(lookup(envelope, path), value) for value in values)
                    for path, values in rule.where
                ):
                    continue
            names.append(rule.name)
        return names
