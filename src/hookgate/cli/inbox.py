"""events and rejections: read what the gateway stored and refused."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import click

from hookgate.cli.common import (
    _config,
    _print_json,
    _with_store,
    config_option,
    main,
)
from hookgate.store.base import EventFilter
from hookgate.timeutil import iso, parse_iso, utcnow


@main.group()
def events() -> None:
    """Inspect the inbox."""


@events.command("list")
@config_option
@click.option("--source", default=None)
@click.option("--provider", default=None)
@click.option("--type", "event_type", default=None)
@click.option("--status", default=None)
@click.option("--since", default=None, help="ISO 8601 date-time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="`next` of a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
def events_list(
    config_path: str | None,
    source: str | None,
    provider: str | None,
    event_type: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Newest events first."""
    try:
        since_at = parse_iso(since) if since else None
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date-time", param_hint="--since") from None
    where = EventFilter(
        source=source, provider=provider, event_type=event_type, status=status, since=since_at
    )
    page = asyncio.run(
        _with_store(_config(config_path), lambda s: s.list_events(where, cursor, limit))
    )
    if as_json:
        _print_json({"items": page.items, "next": page.next})
        return
    for item in page.items:
        flags = ",".join(item["flags"])
        line = (
            f"{item['id']}  {item['received_at'][:19]}  {item['source']:<14} "
            f"{item['type']:<36} {item['status']:<11} {flags}"
        )
        document = item.get("document")
        if item["status"] == "quarantined" and isinstance(document, dict):
            # What to look at before `hookgate events reprocess ID` (after an upgrade).
            line += f"  {document.get('violation') or document.get('error') or ''}"
        click.echo(line.rstrip())
    if page.next:
        click.echo(f"more: --cursor {page.next}")


@events.command("show")
@config_option
@click.argument("event_id")
def events_show(config_path: str | None, event_id: str) -> None:
    """One event with its raw body."""
    item = asyncio.run(_with_store(_config(config_path), lambda s: s.get_event(event_id)))
    if item is None:
        raise click.ClickException(f"no event with id {event_id}")
    raw = item.pop("raw_body")
    try:
        item["raw_body"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        item["raw_body_hex"] = raw.hex()
    _print_json(item)


@main.group()
def rejections() -> None:
    """Inspect refused requests."""


@rejections.command("list")
@config_option
@click.option("--source", default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def rejections_list(config_path: str | None, source: str | None, limit: int, as_json: bool) -> None:
    """Newest rejections first."""
    page = asyncio.run(
        _with_store(_config(config_path), lambda s: s.list_rejections(source, None, limit))
    )
    if as_json:
        for item in page.items:
            item["body"] = item["body"].decode("utf-8", "replace")
        _print_json({"items": page.items, "next": page.next})
        return
    for item in page.items:
        click.echo(
            f"{item['id']}  {item['received_at'][:19]}  {item['source']:<14} "
            f"{item['status']}  {item['reason']:<22} {item['detail']}"
        )


@rejections.command("counts")
@config_option
@click.option("--source", default=None)
@click.option("--since", default=None, help="ISO 8601 date-time (default: a day ago).")
@click.option("--until", default=None, help="ISO 8601 date-time (default: now).")
@click.option("--json", "as_json", is_flag=True)
def rejections_counts(
    config_path: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
) -> None:
    """Every refusal per source and reason, recorded in full or only counted."""
    try:
        until_at = parse_iso(until) if until else None
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date-time", param_hint="--until") from None
    try:
        since_at = parse_iso(since) if since else (until_at or utcnow()) - timedelta(days=1)
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date-time", param_hint="--since") from None
    items = asyncio.run(
        _with_store(_config(config_path), lambda s: s.rejection_counts(source, since_at, until_at))
    )
    if as_json:
        _print_json(
            {"since": iso(since_at), "until": iso(until_at) if until_at else None, "items": items}
        )
        return
    click.echo(f"{'source':<14} {'reason':<24} {'total':>9} {'recorded':>9} {'unrecorded':>10}")
    for item in items:
        click.echo(
            f"{item['source']:<14} {item['reason']:<24} {item['total']:>9} "
            f"{item['recorded']:>9} {item['unrecorded']:>10}"
        )
