"""sessions, parking, payments, charge-points, deliveries, destinations, replay and export;
`events reprocess` and `rejections rerun`: the admin API's views and actions, run on the
database directly (no server needed)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import click

from hookgate.bootstrap import Graph
from hookgate.cli.audit import audited
from hookgate.cli.common import (
    READS,
    _config,
    _print_json,
    _quiet_logs,
    _run,
    _store_run,
    _table,
    config_option,
    main,
)
from hookgate.cli.inbox import events, rejections
from hookgate.config import Config
from hookgate.domain.anomalies import FLAGS
from hookgate.domain.queries import Page, ReplayFilter, ViewFilter
from hookgate.export import lines_csv, report_json, totals_csv
from hookgate.ops.details import (
    charge_point_detail,
    delivery_detail,
    payment_detail,
    session_detail,
    view_row,
)
from hookgate.ops.replay import (
    DELIVERY_STATUSES,
    BadReplay,
    check_replay,
    destination_names,
    public_destination,
)
from hookgate.reconcile import reconciliation_csv, reconciliation_json
from hookgate.services.rerun import RerunResult, Reruns
from hookgate.store.base import Store
from hookgate.store.fetches import fetch_counts, fetch_list, requeue
from hookgate.timeutil import parse_iso, utcnow

Row = dict[str, Any]


def _instant(value: str | None, option: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date-time", param_hint=option) from None


def _text(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _time(value: Any) -> str:
    return "-" if not value else str(value)[:19]


def _flags(item: dict[str, Any]) -> str:
    """A row's flags (anomalies and the provider's own), comma-separated."""
    return ",".join(item.get("flags") or ()) or "-"


def _print_page(
    page: Page[Any],
    as_json: bool,
    what: str,
    columns: list[tuple[str, Callable[[Any], str]]],
) -> None:
    """A page as a table with a header (or as JSON); says so when there is nothing."""
    if as_json:
        _print_json({"items": page.items, "next": page.next})
        return
    _table(
        [header for header, _ in columns],
        [[cell(item) for _, cell in columns] for item in page.items],
        empty=f"no {what} match",
        more=f"more: --cursor {page.next}" if page.next else None,
    )


def _view_list(
    config_path: str | None,
    table: str,
    equal: dict[str, str | None],
    time_column: str,
    since: str | None,
    until: str | None,
    cursor: str | None,
    limit: int,
    flag: str | None = None,
) -> Page[dict[str, Any]]:
    where = ViewFilter(
        equal={column: value for column, value in equal.items() if value},
        time_column=time_column,
        since=_instant(since, "--since"),
        until=_instant(until, "--until"),
        flag=flag,
    )
    return _store_run(_config(config_path), lambda s: s.list_view(table, where, cursor, limit))


def _show(config_path: str | None, fetch: Callable[[Store], Awaitable[Any]], what: str) -> None:
    item = _store_run(_config(config_path), fetch)
    if item is None:
        raise click.ClickException(f"no {what} with this id")
    _print_json(item)


def _show_view(
    config_path: str | None,
    table: str,
    given: str,
    detail: Callable[[Store, str], Awaitable[Row | None]],
    what: str,
    provider_ids: tuple[str, ...],
) -> None:
    """A row by hookgate's id, or by the provider's own id (`provider_ids` columns): an
    operator holding a Zaptec session id or a parking id need not look up ours first."""

    async def find(store: Store) -> Row | None:
        item = await detail(store, given)
        if item is not None:
            return item
        found: dict[str, Row] = {}
        for column in provider_ids:
            page = await store.list_view(table, ViewFilter(equal={column: given}), None, 10)
            found.update((row["id"], row) for row in page.items)
        if len(found) > 1:
            listed = ", ".join(
                f"{row_id} (source {row['source']})" for row_id, row in found.items()
            )
            raise click.ClickException(
                f"{given} is the id of several {what}s: {listed}; pass hookgate's id"
            )
        return await detail(store, next(iter(found))) if found else None

    item = _store_run(_config(config_path), find)
    if item is None:
        raise click.ClickException(
            f"no {what} with id {given} (hookgate's id or the provider's: "
            f"{', '.join(provider_ids)})"
        )
    _print_json(item)


def _listing(function: Callable[..., None]) -> Callable[..., None]:
    """Options every listing shares."""
    for option in reversed(
        [
            config_option,
            click.option("--since", default=None, help="ISO 8601 date-time."),
            click.option("--until", default=None, help="ISO 8601 date-time."),
            click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True),
            click.option("--cursor", default=None, help="`next` of a previous page."),
            click.option("--json", "as_json", is_flag=True, help="Print the page as JSON."),
        ]
    ):
        function = option(function)
    return function


# -- charging sessions -------------------------------------------------------------------


@main.group()
def sessions() -> None:
    """Charging sessions."""


@sessions.command("list")
@_listing
@click.option("--source", default=None)
@click.option("--status", type=click.Choice(["active", "ended"]), default=None)
@click.option("--charger", "charger_id", default=None)
@click.option("--token", default=None)
@click.option(
    "--flag",
    type=click.Choice(FLAGS),
    default=None,
    help="Only sessions with this anomaly flag (docs/views.md#anomaly-flags).",
)
def sessions_list(
    config_path: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    source: str | None,
    status: str | None,
    charger_id: str | None,
    token: str | None,
    flag: str | None,
) -> None:
    """Newest sessions first; --since/--until select on the start time."""
    equal = {"source": source, "status": status, "charger_id": charger_id, "token": token}
    page = _view_list(
        config_path, "charging_sessions", equal, "started_at", since, until, cursor, limit, flag
    )
    _print_page(
        page,
        as_json,
        "charging sessions",
        [
            ("ID", lambda i: i["id"]),
            ("SOURCE", lambda i: i["source"]),
            ("SESSION", lambda i: _text(i["session_key"])),
            ("STATUS", lambda i: i["status"]),
            ("STARTED", lambda i: _time(i["started_at"])),
            ("CHARGER", lambda i: _text(i["charger_id"])),
            ("TOKEN", lambda i: _text(i["token"])),
            ("KWH", lambda i: _text(i["energy_kwh"])),
            ("COST", lambda i: f"{_text(i['cost'])} {i['currency'] or ''}".rstrip()),
            ("FLAGS", _flags),
        ],
    )


@sessions.command("show")
@config_option
@click.argument("session_id")
def sessions_show(config_path: str | None, session_id: str) -> None:
    """One session with its meter values, by hookgate's id or the provider's session id,
    and its price under the configured tariffs when no provider priced it."""
    rates = _config(config_path).rates()
    _show_view(
        config_path,
        "charging_sessions",
        session_id,
        lambda store, row_id: session_detail(store, row_id, rates),
        "charging session",
        ("session_key", "external_id"),
    )


# -- parking -----------------------------------------------------------------------------


@main.group()
def parking() -> None:
    """Parking transactions."""


@parking.command("list")
@_listing
@click.option("--source", default=None)
@click.option("--plate", "license_number", default=None, help="Licence plate.")
@click.option(
    "--flag",
    type=click.Choice(FLAGS),
    default=None,
    help="Only transactions with this anomaly flag (parked_while_charging).",
)
def parking_list(
    config_path: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    source: str | None,
    license_number: str | None,
    flag: str | None,
) -> None:
    """Newest transactions first; --since/--until select on the end time."""
    equal = {"source": source, "license_number": license_number}
    page = _view_list(
        config_path, "parking_transactions", equal, "ended_at", since, until, cursor, limit, flag
    )
    _print_page(
        page,
        as_json,
        "parking transactions",
        [
            ("ID", lambda i: i["id"]),
            ("SOURCE", lambda i: i["source"]),
            ("PARKING", lambda i: _text(i["parking_id"])),
            ("PLATE", lambda i: i["license_number"]),
            ("ENDED", lambda i: _time(i["ended_at"])),
            ("PRICE", lambda i: f"{i['price']} {i['currency']}"),
            ("AREA", lambda i: _text(i["area_name"])),
            ("FLAGS", _flags),
        ],
    )


@parking.command("show")
@config_option
@click.argument("transaction_id")
def parking_show(config_path: str | None, transaction_id: str) -> None:
    """One parking transaction, by hookgate's id or EasyPark's parkingId."""
    _show_view(
        config_path,
        "parking_transactions",
        transaction_id,
        lambda s, row_id: view_row(s, "parking_transactions", row_id),
        "parking transaction",
        ("parking_id",),
    )


# -- payments ----------------------------------------------------------------------------


@main.group()
def payments() -> None:
    """Payment objects and their state history."""


@payments.command("list")
@_listing
@click.option("--source", default=None)
@click.option("--type", "object_type", default=None)
@click.option("--state", default=None)
def payments_list(
    config_path: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    source: str | None,
    object_type: str | None,
    state: str | None,
) -> None:
    """Newest objects first; --since/--until select on the last update."""
    equal = {"source": source, "object_type": object_type, "state": state}
    page = _view_list(
        config_path, "payment_objects", equal, "updated_at", since, until, cursor, limit
    )
    _print_page(
        page,
        as_json,
        "payment objects",
        [
            ("ID", lambda i: i["id"]),
            ("SOURCE", lambda i: i["source"]),
            ("TYPE", lambda i: i["object_type"]),
            ("OBJECT", lambda i: i["object_id"]),
            ("STATE", lambda i: i["state"]),
            ("FINAL", lambda i: "final" if i["final"] else "-"),
        ],
    )


@payments.command("show")
@config_option
@click.argument("payment_id")
def payments_show(config_path: str | None, payment_id: str) -> None:
    """One payment object with every state reported for it, by hookgate's id or the
    provider's object id (a ZTLment payment or approval id)."""
    _show_view(
        config_path, "payment_objects", payment_id, payment_detail, "payment object", ("object_id",)
    )


# -- charge points -----------------------------------------------------------------------


@main.group("charge-points")
def charge_points() -> None:
    """Charge points and their EVSEs."""


@charge_points.command("list")
@_listing
@click.option("--source", default=None)
@click.option("--status", default=None)
@click.option("--network-status", default=None)
def charge_points_list(
    config_path: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    source: str | None,
    status: str | None,
    network_status: str | None,
) -> None:
    """Newest charge points first; --since/--until select on the last update."""
    equal = {"source": source, "status": status, "network_status": network_status}
    page = _view_list(
        config_path, "charge_points", equal, "updated_at", since, until, cursor, limit
    )
    _print_page(
        page,
        as_json,
        "charge points",
        [
            ("ID", lambda i: i["id"]),
            ("SOURCE", lambda i: i["source"]),
            ("CHARGE POINT", lambda i: i["charge_point_id"]),
            ("STATUS", lambda i: _text(i["status"])),
            ("NETWORK", lambda i: _text(i["network_status"])),
            ("NAME", lambda i: _text(i["name"])),
        ],
    )


@charge_points.command("show")
@config_option
@click.argument("charge_point_id")
def charge_points_show(config_path: str | None, charge_point_id: str) -> None:
    """One charge point with its EVSEs, by hookgate's id or the provider's."""
    _show_view(
        config_path,
        "charge_points",
        charge_point_id,
        charge_point_detail,
        "charge point",
        ("charge_point_id",),
    )


# -- deliveries and destinations ---------------------------------------------------------


@main.group()
def deliveries() -> None:
    """Deliveries of events to destinations."""


@deliveries.command("list")
@_listing
@click.option("--event", "event_id", default=None)
@click.option("--destination", default=None)
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), default=None)
def deliveries_list(
    config_path: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
    event_id: str | None,
    destination: str | None,
    status: str | None,
) -> None:
    """Newest deliveries first; --since/--until select on the creation time."""
    equal = {"event_id": event_id, "destination": destination, "status": status}
    where = ViewFilter(
        equal={column: value for column, value in equal.items() if value},
        since=_instant(since, "--since"),
        until=_instant(until, "--until"),
    )
    page = _store_run(_config(config_path), lambda s: s.list_deliveries(where, cursor, limit))
    _print_page(
        page,
        as_json,
        "deliveries",
        [
            ("ID", lambda i: i.id),
            ("EVENT", lambda i: i.event_id),
            ("DESTINATION", lambda i: i.destination),
            ("STATUS", lambda i: i.status),
            ("ATTEMPTS", lambda i: str(i.attempts)),
            ("LAST", lambda i: _text(i.last_status_code)),
            ("ERROR", lambda i: i.last_error or ""),
        ],
    )


@deliveries.command("show")
@config_option
@click.argument("delivery_id")
def deliveries_show(config_path: str | None, delivery_id: str) -> None:
    """One delivery with its attempts."""
    _show(config_path, lambda s: delivery_detail(s, delivery_id), "delivery")


@main.group()
def destinations() -> None:
    """Configured destinations and whether they are disabled."""


@destinations.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def destinations_list(config_path: str | None, as_json: bool) -> None:
    """Every configured destination (no secrets) and its state."""
    config = _config(config_path)
    states = _store_run(config, lambda s: s.destination_states())
    items = [public_destination(d, states.get(d.name)) for d in config.destinations]
    if as_json:
        _print_json({"items": items})
        return
    _table(
        ["NAME", "KIND", "STATE", "TARGET"],
        [
            [
                item["name"],
                item["kind"],
                f"disabled: {item['disabled_reason']}" if item["disabled"] else "enabled",
                item["url"] or f"{item['topic']} @ {','.join(item['brokers'])}",
            ]
            for item in items
        ],
        empty="no destinations are configured ([[destinations]] in the configuration)",
    )


def _named_destination(config: Config, name: str) -> None:
    if name not in destination_names(config):
        raise click.ClickException(f"no destination named {name!r} is configured")


@destinations.command("enable")
@config_option
@click.argument("name")
@audited("destinations.enable", "name")
def destinations_enable(config_path: str | None, name: str) -> None:
    """Deliver to NAME again (after a 410 Gone or an operator's disable)."""
    config = _config(config_path)
    _named_destination(config, name)
    _store_run(config, lambda s: s.set_destination_disabled(name, None))
    click.echo(f"enabled {name}")


@destinations.command("disable")
@config_option
@click.argument("name")
@click.option("--reason", default="disabled by an operator", show_default=True)
@audited("destinations.disable", "name")
def destinations_disable(config_path: str | None, name: str, reason: str) -> None:
    """Stop delivering to NAME; its deliveries wait until it is enabled."""
    config = _config(config_path)
    _named_destination(config, name)
    _store_run(config, lambda s: s.set_destination_disabled(name, reason))
    click.echo(f"disabled {name}: {reason}")


# -- actions -----------------------------------------------------------------------------


@main.command()
@config_option
@click.argument("event_ids", nargs=-1)
@click.option("--destination", default=None, help="Only (or newly) to this destination.")
@click.option("--source", default=None, help="Deliveries of this source's events.")
@click.option("--since", default=None, help="Deliveries created since (ISO 8601).")
@click.option("--status", type=click.Choice(DELIVERY_STATUSES), default=None)
@click.option("--dry-run", is_flag=True, help="Queue nothing; say how many would be queued.")
@audited("replay")
def replay(
    config_path: str | None,
    event_ids: tuple[str, ...],
    destination: str | None,
    source: str | None,
    since: str | None,
    status: str | None,
    dry_run: bool,
) -> None:
    """Deliver again now, with a fresh retry budget: the named events, or the deliveries
    selected by --source/--since/--status (failed processing is queued again too)."""
    config = _config(config_path)
    where = ReplayFilter(
        event_ids=list(event_ids),
        source=source,
        since=_instant(since, "--since"),
        status=status,
        destination=destination,
    )
    try:
        check_replay(config, where)  # before opening storage: a mistake needs no database
    except BadReplay as exc:
        hint = "EVENT_ID" if exc.param == "event_ids" else f"--{exc.param}"
        raise click.BadParameter(exc.detail, param_hint=hint) from None
    queued = _run(config, lambda graph: graph.operations.replay(where, dry_run=dry_run))
    click.echo(f"would queue {queued}" if dry_run else f"queued {queued}")


@main.command("export")
@config_option
@click.option("--month", required=True, help="YYYY-MM, in [authorization] timezone.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option("--totals", is_flag=True, help="CSV: the totals per vehicle instead of lines.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
def export_costs(
    config_path: str | None, month: str, fmt: str, totals: bool, output: str | None
) -> None:
    """Fleet costs of a month: one line per parking transaction and charging session."""
    config = _config(config_path)
    try:
        report = _run(config, lambda graph: graph.operations.export(month))
    except BadReplay as exc:
        raise click.BadParameter(exc.detail, param_hint="--month") from None
    if fmt == "json":
        text = report_json(report).decode() + "\n"
    else:
        text = totals_csv(report) if totals else lines_csv(report)
    if output is None:
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    click.echo(f"{len(report.lines)} lines written to {output}", err=True)


@main.command("reconcile")
@config_option
@click.option("--month", required=True, help="YYYY-MM, in [authorization] timezone.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv")
@click.option(
    "--part",
    type=click.Choice(["lines", "totals", "exceptions"]),
    default="lines",
    help="CSV: the lines, the totals per vehicle/driver/cost centre/legal entity, or the "
    "sessions no decision authorized and decisions with no session.",
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None)
def reconcile_month(
    config_path: str | None, month: str, fmt: str, part: str, output: str | None
) -> None:
    """Monthly reconciliation: parking and charging together, flagged lines and credits
    apart, totals excl./incl. VAT per currency, and the exceptions to look at."""
    config = _config(config_path)
    try:
        result = _run(config, lambda graph: graph.operations.reconcile(month))
    except BadReplay as exc:
        raise click.BadParameter(exc.detail, param_hint="--month") from None
    if fmt == "json":
        text = reconciliation_json(result).decode() + "\n"
    else:
        text = reconciliation_csv(result, part)
    if output is None:
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8", newline="") as file:
        file.write(text)
    click.echo(f"{len(result.lines)} lines written to {output}", err=True)


@main.group()
def fetches() -> None:
    """Objects read from a provider's API after a thin notification (fetch on notify)."""


@fetches.command("list")
@config_option
@click.option("--status", type=click.Choice(["pending", "done", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50)
@click.option("--json", "as_json", is_flag=True)
def fetches_list(config_path: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """The newest fetches, with their attempts and last error; counts per status."""
    config = _config(config_path)

    async def read(store: Store) -> tuple[dict[str, int], list[dict[str, Any]]]:
        return await fetch_counts(store), await fetch_list(store, status, limit)

    counts, rows = _store_run(config, read)
    if as_json:
        _print_json({"counts": counts, "items": rows})
        return
    click.echo(", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "no fetches")
    for row in rows:
        click.echo(
            f"{row['status']:<8} {row['source']} {row['kind']} {row['ref_id']} "
            f"attempts={row['attempts']} {row['last_error'] or ''}".rstrip()
        )


@fetches.command("requeue")
@config_option
@click.option("--source", default=None, help="Only this source's failed fetches.")
@audited("fetches.requeue", "source")
def fetches_requeue(config_path: str | None, source: str | None) -> None:
    """Try the failed fetches again from their first attempt (after fixing the API URL or
    token, or once the objects exist)."""
    config = _config(config_path)
    count = _store_run(config, lambda store: requeue(store, source, utcnow()))
    click.echo(f"requeued {count}")


def _rerun(
    config_path: str | None,
    run: Callable[[Reruns], Awaitable[RerunResult]],
    as_json: bool,
) -> None:
    config = _config(config_path, *READS, "sources")

    async def work(graph: Graph) -> RerunResult:
        # As `serve` holds them: the same token-signing key, the engine for token groups.
        _quiet_logs(config)
        await graph.load_signing_key()
        await graph.load_engine()
        return await run(graph.reruns)

    result = _run(config, work)
    if as_json:
        _print_json(result)
    else:
        click.echo(f"{result.status} {result.event_id}: {result.detail}")


@events.command("reprocess")
@config_option
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True)
@audited("events.reprocess", "event_id")
def events_reprocess(config_path: str | None, event_id: str, as_json: bool) -> None:
    """Parse a quarantined event again with the current code and configuration; queue it
    for processing when it is valid now."""
    _rerun(config_path, lambda reruns: reruns.reprocess(event_id), as_json)


@rejections.command("rerun")
@config_option
@click.argument("rejection_id")
@click.option("--json", "as_json", is_flag=True)
@audited("rejections.rerun", "rejection_id")
def rejections_rerun(config_path: str | None, rejection_id: str, as_json: bool) -> None:
    """Verify a rejected call again with the current configuration and store it when it
    passes (only calls signed over the body keep a copy to verify)."""
    _rerun(config_path, lambda reruns: reruns.rerun(rejection_id), as_json)
