"""UTC timestamps in one text form that sorts correctly in every backend."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """`2025-12-04T12:02:37.123456Z`: fixed width, so text order is time order."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is several times cheaper than strftime; "+00:00" becomes "Z".
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_iso(text: str) -> datetime:
    """Read an ISO 8601 instant; a naive value is taken as UTC. ValueError also for an
    instant that exists only in its own offset (`9999-12-31T23:59:59-23:59` is past the
    last instant a datetime holds in UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of the range of UTC instants") from None
