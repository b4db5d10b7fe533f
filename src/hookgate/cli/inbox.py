"""events and rejections: read what the gateway stored and refused."""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta

import click
import msgspec

from hookgate.cli.common import (
    _config,
    _print_json,
    _table,
    _with_store,
    config_option,
    main,
)
from hookgate.domain.events import StoredRejectionDetail
from hookgate.domain.queries import EventFilter
from hookgate.store import Store, alerting
from hookgate.timeutil import iso, parse_iso, utcnow

# What an inbox event can be: stored and waiting, done, failed in processing, held back.
EVENT_STATUSES = ["received", "processed", "failed", "quarantined"]


def _body_text(raw: bytes, key: str) -> dict[str, str]:
    try:
        return {key: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_hex": raw.hex()}


@main.group()
def events() -> None:
    """Inspect the inbox."""


@events.command("list")
@config_option
@click.option("--source", default=None)
@click.option("--provider", default=None)
@click.option("--type", "event_type", default=None)
@click.option("--status", type=click.Choice(EVENT_STATUSES), default=None)
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
    rows = []
    for item in page.items:
        document = item.document
        note = ""
        if item.status == "quarantined" and isinstance(document, dict):
            # What to look at before `hookgate events reprocess ID` (after an upgrade).
            note = str(document.get("violation") or document.get("error") or "")
        rows.append(
            [
                item.id,
                item.received_at[:19],
                item.source,
                item.type,
                item.status,
                ",".join(item.flags) or "-",
                note,
            ]
        )
    _table(
        ["ID", "RECEIVED", "SOURCE", "TYPE", "STATUS", "FLAGS", "NOTE"],
        rows,
        empty="no events match"
        if cursor or any((source, provider, event_type, status, since))
        else "no events yet",
        more=f"more: --cursor {page.next}" if page.next else None,
    )


@events.command("show")
@config_option
@click.argument("event_id")
def events_show(config_path: str | None, event_id: str) -> None:
    """One event with its raw body."""
    item = asyncio.run(_with_store(_config(config_path), lambda s: s.get_event(event_id)))
    if item is None:
        raise click.ClickException(f"no event with id {event_id}")
    fields = msgspec.structs.asdict(item)
    fields.update(_body_text(fields.pop("raw_body"), "raw_body"))
    _print_json(fields)


async def _find_rejection(store: Store, key: str) -> StoredRejectionDetail | None:
    item = await store.get_rejection(key)
    if item is not None:
        return item
    found = await store.sql_read(functools.partial(alerting.rejections_by_request, request_id=key))
    if not found:
        return None
    # A proxy's request id may repeat across retries: the newest refusal is shown.
    return await store.get_rejection(found[0]["id"])


@main.group()
def rejections() -> None:
    """Inspect refused requests."""


@rejections.command("list")
@config_option
@click.option("--source", default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="`next` of a previous page.")
@click.option("--json", "as_json", is_flag=True)
def rejections_list(
    config_path: str | None, source: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """Newest rejections first."""
    page = asyncio.run(
        _with_store(_config(config_path), lambda s: s.list_rejections(source, cursor, limit))
    )
    if as_json:
        items = [
            {**msgspec.structs.asdict(item), "body": item.body.decode("utf-8", "replace")}
            for item in page.items
        ]
        _print_json({"items": items, "next": page.next})
        return
    _table(
        ["ID", "RECEIVED", "SOURCE", "STATUS", "REASON", "DETAIL"],
        [
            [
                item.id,
                item.received_at[:19],
                item.source or "-",
                str(item.status),
                item.reason,
                item.detail or "",
            ]
            for item in page.items
        ],
        empty="no rejections match" if source or cursor else "no rejections yet",
        more=f"more: --cursor {page.next}" if page.next else None,
    )


@rejections.command("show")
@config_option
@click.argument("rejection_id")
def rejections_show(config_path: str | None, rejection_id: str) -> None:
    """One refused request, by its rejection id or by the request id its problem answer
    showed (`request_id`, also the `X-Request-Id` header): why, its masked headers, the
    body kept, and whether a copy to verify again (`hookgate rejections rerun`) was kept."""
    item = asyncio.run(
        _with_store(_config(config_path), lambda s: _find_rejection(s, rejection_id))
    )
    if item is None:
        raise click.ClickException(
            f"no rejection with id or request id {rejection_id}: `hookgate rejections list` "
            "shows them (only the per-minute sample of refusals is recorded in full)"
        )
    fields = msgspec.structs.asdict(item)
    fields.update(_body_text(fields.pop("body"), "body"))
    fields["rerunnable"] = fields.pop("replay") is not None
    _print_json(fields)


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
