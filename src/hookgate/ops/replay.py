"""Checks a replay request passes before the store makes deliveries due again, shared by
the admin API and the command line so both refuse the same mistakes the same way."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hookgate.config import Config, DestinationConfig
from hookgate.domain.errors import Invalid
from hookgate.domain.outbox import DestinationState
from hookgate.domain.queries import ReplayFilter

DELIVERY_STATUSES = ("pending", "failed", "delivered", "dead")


class BadReplay(Invalid):
    """A replay parameter is wrong; `param` names it."""

    code = "bad-parameter"

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(detail)
        self.param = param


def destination_names(config: Config) -> list[str]:
    """The configured destinations, in configuration order."""
    return [destination.name for destination in config.destinations]


def check_replay(config: Config, where: ReplayFilter) -> None:
    """Refuse an empty selection (it would replay everything), an unknown delivery status
    and a destination that is not configured."""
    if not (where.event_ids or where.source or where.since or where.status or where.destination):
        raise BadReplay(
            "event_ids",
            "name events, or select by source, since, status or destination",
        )
    if where.status is not None and where.status not in DELIVERY_STATUSES:
        raise BadReplay("status", f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    if where.destination is not None and where.destination not in destination_names(config):
        raise BadReplay("destination", f"destination {where.destination!r} is not configured")
    if where.source is not None and config.source(where.source) is None:
        raise BadReplay("source", f"source {where.source!r} is not configured")


def _shown_url(url: str | None) -> str | None:
    """The URL without user info or query, where credentials often travel."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def public_destination(
    destination: DestinationConfig, state: DestinationState | None
) -> dict[str, Any]:
    """A destination as operators may see it: no secret, no header values, no URL
    credentials or query, with its disabled state."""
    selection = destination.selection()
    policy = destination.policy()
    return {
        "name": destination.name,
        "kind": destination.kind,
        "url": _shown_url(destination.url),
        "topic": destination.topic,
        "brokers": destination.kafka().broker_list() if destination.kind == "kafka" else [],
        "signed": destination.secret is not None,
        "header_names": sorted(destination.headers),
        "filter": {
            "providers": selection.providers,
            "sources": selection.sources,
            "event_types": selection.event_types,
            "where": selection.where,
        },
        "retry": {
            "max_attempts": policy.max_attempts,
            "initial_backoff_seconds": policy.initial_backoff_seconds,
            "max_backoff_seconds": policy.max_backoff_seconds,
            "max_age_seconds": policy.max_age_seconds,
        },
        "disabled": state is not None,
        "disabled_at": state.disabled_at if state else None,
        "disabled_reason": state.reason if state else None,
    }
