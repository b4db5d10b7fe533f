"""events search and stats: find stored events by text and payload fields, and the
counts the console charts (hookgate/queries.py does the parsing and the defaults)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from hookgate import queries
from hookgate.cli.common import _config, _print_json, _table, _with_store, config_option, main
from hookgate.cli.inbox import EVENT_STATUSES, events
from hookgate.domain.errors import BadCursor
from hookgate.store import Store
from hookgate.timeutil import iso

T = TypeVar("T")
GRAINS = ["minute", "hour", "day", "month"]


def _ask(config_path: str | None, work: Callable[[Store], Awaitable[T]]) -> T:
    try:
        return asyncio.run(_with_store(_config(config_path), work))
    except queries.InvalidQuery as exc:
        raise click.UsageError(str(exc)) from None
    except BadCursor:
        raise click.BadParameter(
            "is not the `next` of a previous page of this search", param_hint="--cursor"
        ) from None


def _when(value: Any) -> str:
    return iso(value)[:19].replace("T", " ") if value is not None else "-"


since_option = click.option(
    "--since", default=None, help="ISO 8601 date-time (default: a window fitting the grain)."
)
until_option = click.option("--until", default=None, help="ISO 8601 date-time (default: now).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _grain_option(
    default: str | None, choices: list[str] = GRAINS
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    return click.option(
        "--grain",
        type=click.Choice(choices),
        default=default,
        show_default=default is not None,
        help="Bucket size" + ("" if default else " (default: totals over the window)") + ".",
    )


@events.command("search")
@config_option
@click.option("--text", default=None, help="Words of the body or document; `word*` a prefix.")
@click.option(
    "--where",
    "fields",
    multiple=True,
    metavar="FIELD=VALUE",
    help="A payload field at any depth (or dotted path) equals VALUE; repeat to combine.",
)
@click.option("--source", default=None)
@click.option("--provider", default=None)
@click.option("--type", "event_type", default=None)
@click.option("--status", type=click.Choice(EVENT_STATUSES), default=None)
@since_option
@until_option
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="`next` of a previous page.")
@json_option
def events_search(
    config_path: str | None,
    text: str | None,
    fields: tuple[str, ...],
    source: str | None,
    provider: str | None,
    event_type: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Events matching text and payload fields, newest first. Text and fields find an
    event once processing has taken it (received and quarantined ones: use the filters)."""
    page = _ask(
        config_path,
        lambda s: queries.search_events(
            s,
            text=text,
            where=fields,
            source=source,
            provider=provider,
            event_type=event_type,
            status=status,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        ),
    )
    if as_json:
        _print_json(page)
        return
    _table(
        ["ID", "RECEIVED", "SOURCE", "TYPE", "STATUS", "SUBJECT"],
        [
            [
                hit.id,
                _when(hit.received_at),
                hit.source,
                hit.event_type,
                hit.status,
                hit.subject or "-",
            ]
            for hit in page.items
        ],
        empty="no events match",
        more=f"more: --cursor {page.next}" if page.next else None,
    )


@main.group()
def stats() -> None:
    """Counts and sums over what the gateway stored (what the console charts)."""


def _show(items: Any, as_json: bool, headers: list[str], row: Callable[[Any], list[str]]) -> None:
    if as_json:
        _print_json({"items": msgspec.to_builtins(items)})
        return
    _table(headers, [row(item) for item in items], empty="nothing in this window")


@stats.command("events")
@config_option
@_grain_option("hour", ["minute", "hour", "day"])
@click.option(
    "--by",
    default="source,event_type,status",
    show_default=True,
    help="Comma-separated dimensions to split by (source, event_type, status); '' for none.",
)
@click.option("--source", default=None)
@click.option("--type", "event_type", default=None)
@click.option("--status", type=click.Choice(EVENT_STATUSES), default=None)
@since_option
@until_option
@json_option
def stats_events(
    config_path: str | None,
    grain: str,
    by: str,
    source: str | None,
    event_type: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Events received per minute, hour or day by source, type and status."""
    dims = [d.strip() for d in by.split(",") if d.strip()]
    items = _ask(
        config_path,
        lambda s: queries.event_counts(
            s,
            grain=grain,
            since=since,
            until=until,
            by=dims,
            source=source,
            event_type=event_type,
            status=status,
        ),
    )
    _show(
        items,
        as_json,
        ["BUCKET", "SOURCE", "TYPE", "STATUS", "EVENTS"],
        lambda c: [
            _when(c.bucket),
            c.source or "*",
            c.event_type or "*",
            c.status or "*",
            str(c.count),
        ],
    )


@stats.command("rejections")
@config_option
@_grain_option(None)
@click.option("--source", default=None)
@since_option
@until_option
@json_option
def stats_rejections(
    config_path: str | None,
    grain: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Refusals per source and reason: all of them, and those recorded in full."""
    items = _ask(
        config_path,
        lambda s: queries.rejections(s, grain=grain, since=since, until=until, source=source),
    )
    _show(
        items,
        as_json,
        ["BUCKET", "SOURCE", "REASON", "TOTAL", "RECORDED"],
        lambda r: [_when(r.bucket), r.source, r.reason, str(r.total), str(r.recorded)],
    )


@stats.command("deliveries")
@config_option
@_grain_option(None)
@click.option("--destination", default=None)
@since_option
@until_option
@json_option
def stats_deliveries(
    config_path: str | None,
    grain: str | None,
    destination: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Deliveries per destination and outcome (pending, failed, delivered, dead)."""
    items = _ask(
        config_path,
        lambda s: queries.deliveries(
            s, grain=grain, since=since, until=until, destination=destination
        ),
    )
    _show(
        items,
        as_json,
        ["BUCKET", "DESTINATION", "STATUS", "DELIVERIES"],
        lambda d: [_when(d.bucket), d.destination, d.status, str(d.count)],
    )


@stats.command("backlog")
@config_option
@json_option
def stats_backlog(config_path: str | None, as_json: bool) -> None:
    """What waits for processing and delivery, and for how long the oldest has."""
    found = _ask(config_path, queries.backlog)
    if as_json:
        _print_json(found)
        return

    def age(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds:.0f} s"

    click.echo(f"events received, not yet processed  {found.received}")
    click.echo(f"oldest of them waiting              {age(found.oldest_received_age_seconds)}")
    click.echo(f"events failed in processing         {found.failed}")
    click.echo(f"events quarantined                  {found.quarantined}")
    click.echo(f"deliveries waiting for an attempt   {found.deliveries_waiting}")
    click.echo(f"longest overdue                     {age(found.oldest_due_age_seconds)}")
    click.echo(f"deliveries dead                     {found.deliveries_dead}")
    click.echo(f"events waiting to be searchable     {found.search_waiting}")


@stats.command("decisions")
@config_option
@_grain_option(None)
@click.option("--source", default=None)
@since_option
@until_option
@json_option
def stats_decisions(
    config_path: str | None,
    grain: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Charging decisions per source and result (and how many were the fallback's)."""
    items = _ask(
        config_path,
        lambda s: queries.decisions(s, grain=grain, since=since, until=until, source=source),
    )
    _show(
        items,
        as_json,
        ["BUCKET", "SOURCE", "RESULT", "DECISIONS", "FALLBACK"],
        lambda d: [_when(d.bucket), d.source, d.result, str(d.count), str(d.fallback)],
    )


@stats.command("energy")
@config_option
@click.option("--token", default=None)
@click.option("--group", "group_id", default=None)
@since_option
@until_option
@json_option
def stats_energy(
    config_path: str | None,
    token: str | None,
    group_id: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """kWh per day, token and group (default: the last 30 days)."""
    items = _ask(
        config_path,
        lambda s: queries.energy(s, since=since, until=until, token=token, group_id=group_id),
    )
    _show(
        items,
        as_json,
        ["DAY", "TOKEN", "GROUP", "KWH", "SESSIONS"],
        lambda e: [
            _when(e.day)[:10],
            e.token or "-",
            e.group_id or "-",
            e.kwh,
            str(e.sessions),
        ],
    )


@stats.command("costs")
@config_option
@click.option("--vehicle", "license_number", default=None, help="A licence plate.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@since_option
@until_option
@json_option
def stats_costs(
    config_path: str | None,
    license_number: str | None,
    limit: int,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Parking costs per month and vehicle, costliest first (default: the last year)."""
    items = _ask(
        config_path,
        lambda s: queries.vehicle_costs(
            s, since=since, until=until, license_number=license_number, limit=limit
        ),
    )
    _show(
        items,
        as_json,
        ["MONTH", "VEHICLE", "TOTAL", "CURRENCY", "PARKINGS"],
        lambda v: [_when(v.month)[:7], v.license_number, v.total, v.currency, str(v.parkings)],
    )
