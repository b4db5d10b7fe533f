"""tokens (charge-token management) and decide (a dry-run charging decision)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import click
import msgspec

from hookgate.authorization.csv_import import (
    ImportReport,
    parse_instant,
    parse_kwh,
    read_csv,
)
from hookgate.authorization.outcome import Outcome
from hookgate.authorization.service import AuthorizationService
from hookgate.bootstrap import Graph
from hookgate.cli.audit import audited
from hookgate.cli.common import (
    READS,
    _config,
    _print_json,
    _quiet_logs,
    _run,
    config_option,
    main,
)
from hookgate.cli.rules import refusal
from hookgate.config import (
    ZaptecSource,
    find_config,
    source_key,
)
from hookgate.domain.errors import HookgateError
from hookgate.domain.rules import Budget, Token, normalise_uid
from hookgate.providers import deciding_sources
from hookgate.providers.base import StartRequest
from hookgate.services.rules import TOKENS, document, kwh_budgets, validate


async def _token(graph: Graph, uid: str) -> tuple[str, Token]:
    """A token (also one only the configuration file lists so far) and who manages it, or
    a CLI error saying what to do."""
    try:
        listed = await graph.rules.get(TOKENS, uid)
    except HookgateError:
        raise click.ClickException(
            f"there is no token {uid}: `hookgate tokens list` shows the known tokens"
        ) from None
    assert isinstance(listed.entity, Token)
    return listed.managed_by, listed.entity


async def _live_engine(graph: Graph) -> AuthorizationService:
    """The engine as a server on this configuration would hold it, loaded read-only."""
    _quiet_logs(graph.config)
    return await graph.load_engine()


def _instant_option(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _token_line(doc: dict[str, Any]) -> str:
    until = doc.get("valid_until") or "-"
    return (
        f"{doc['uid']:<22} {doc['status']:<8} {doc['type']:<11} {doc.get('group_id') or '-':<14} "
        f"{doc['whitelist']:<15} {until:<25} {doc['managed_by']:<7} {doc.get('label') or ''}"
    )


def _kwh_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_kwh(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@main.group()
def tokens() -> None:
    """Manage charge tokens in the store (running servers apply changes within a second).

    Tokens listed in the configuration file are read-only here: edit the file instead.
    """


@tokens.command("add")
@config_option
@click.argument("uid")
@click.option(
    "--type",
    "token_type",
    type=click.Choice(["RFID", "APP_USER", "AD_HOC_USER", "OTHER"], case_sensitive=False),
    default="RFID",
    show_default=True,
)
@click.option("--group", "group_id", default=None, help="Group id (must exist).")
@click.option("--label", default=None)
@click.option("--driver", default=None)
@click.option("--vehicle", default=None)
@click.option("--cost-centre", "cost_centre", default=None)
@click.option(
    "--whitelist",
    type=click.Choice(["ALWAYS", "ALLOWED", "ALLOWED_OFFLINE", "NEVER"], case_sensitive=False),
    default="ALLOWED",
    show_default=True,
)
@click.option("--valid-from", default=None, help="ISO 8601 with offset, e.g. 2026-01-01T00:00Z.")
@click.option("--valid-until", default=None, help="ISO 8601 with offset.")
@click.option("--source", "sources", multiple=True, help="Allowed zaptec source (repeatable).")
@click.option("--installation", "installations", multiple=True, help="Allowed installation.")
@click.option("--charger", "chargers", multiple=True, help="Allowed charger id (repeatable).")
@click.option("--kwh-per-day", callback=_kwh_option, default=None, help="kWh budget per day.")
@click.option("--kwh-per-week", callback=_kwh_option, default=None, help="kWh budget per week.")
@click.option("--kwh-per-month", callback=_kwh_option, default=None, help="kWh budget per month.")
@click.option("--max-sessions", type=click.IntRange(0), default=None)
@click.option("--blocked", is_flag=True, help="Add the token blocked.")
@click.option("--replace", is_flag=True, help="Replace a token that exists (and its kWh budgets).")
@audited("tokens.add", "uid")
def tokens_add(
    config_path: str | None,
    uid: str,
    token_type: str,
    group_id: str | None,
    label: str | None,
    driver: str | None,
    vehicle: str | None,
    cost_centre: str | None,
    whitelist: str,
    valid_from: str | None,
    valid_until: str | None,
    sources: tuple[str, ...],
    installations: tuple[str, ...],
    chargers: tuple[str, ...],
    kwh_per_day: Decimal | None,
    kwh_per_week: Decimal | None,
    kwh_per_month: Decimal | None,
    max_sessions: int | None,
    blocked: bool,
    replace: bool,
) -> None:
    """Add the charge token UID (its uid is case-insensitive and stored upper-case)."""
    config = _config(config_path)
    doc = {
        "uid": uid,
        "type": token_type.upper(),
        "group_id": group_id,
        "label": label,
        "driver": driver,
        "vehicle": vehicle,
        "cost_centre": cost_centre,
        "whitelist": whitelist.upper(),
        "status": "blocked" if blocked else "valid",
        "valid_from": _instant_option(valid_from, "--valid-from"),
        "valid_until": _instant_option(valid_until, "--valid-until"),
        "scope": {
            "sources": list(sources),
            "installations": list(installations),
            "chargers": list(chargers),
        },
        "max_sessions": max_sessions,
    }
    try:
        token = validate(TOKENS, doc)
    except HookgateError as exc:
        raise click.ClickException(exc.detail) from None
    assert isinstance(token, Token)
    limits = {"day": kwh_per_day, "week": kwh_per_week, "month": kwh_per_month}
    budgets = kwh_budgets(token.uid, limits)

    async def work(graph: Graph) -> list[str]:
        try:
            return await graph.rules.save_token(token, limits, replace=replace)
        except HookgateError as exc:
            if exc.code == "already-exists":
                raise click.ClickException(
                    f"token {token.uid} exists: pass --replace to overwrite it, or use "
                    "`hookgate tokens block|unblock|remove`"
                ) from None
            raise refusal(exc, config_path, TOKENS, token.uid) from None

    stale = _run(config, work)
    verb = "replaced" if replace else "added"
    extra = "".join(f", {b.period} budget {b.limit} kWh" for b in budgets)
    click.echo(f"{verb} token {token.uid} ({token.status}{extra})")
    if stale:
        click.echo(f"removed budgets {', '.join(stale)}")


@tokens.command("list")
@config_option
@click.option("--group", "group_id", default=None, help="Only tokens of this group.")
@click.option("--status", type=click.Choice(["valid", "blocked"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
@click.option("--cursor", default=None, help="Start after this uid (`more:` of a page).")
@click.option("--all", "show_all", is_flag=True, help="Every token, without pages.")
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...], "next"} as JSON.')
def tokens_list(
    config_path: str | None,
    group_id: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
    show_all: bool,
    as_json: bool,
) -> None:
    """Tokens in uid order (with those the configuration file lists), a page at a time."""
    config = _config(config_path)
    after = normalise_uid(cursor) if cursor else None

    async def work(graph: Graph) -> list[dict[str, Any]]:
        return [
            listed.document()
            for listed in await graph.rules.everything(TOKENS, after)
            if isinstance(listed.entity, Token)
            and not (group_id and listed.entity.group_id != group_id)
            and not (status and listed.entity.status != status)
        ]

    items = _run(config, work)
    shown = items if show_all else items[:limit]
    left = len(items) - len(shown)
    following = shown[-1]["uid"] if left else None
    if as_json:
        _print_json({"items": shown, "next": following})
        return
    if not shown:
        click.echo("no tokens match" if group_id or status or cursor else "no tokens")
        return
    click.echo(
        f"{'UID':<22} {'STATUS':<8} {'TYPE':<11} {'GROUP':<14} {'WHITELIST':<15} "
        f"{'VALID UNTIL':<25} {'MANAGED':<7} LABEL"
    )
    for doc in shown:
        click.echo(_token_line(doc))
    if left:
        click.echo(f"{len(shown)} token(s) shown, {left} more: --cursor {following} (or --all)")
    else:
        click.echo(f"{len(shown)} token(s)")


@tokens.command("show")
@config_option
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True)
def tokens_show(config_path: str | None, uid: str, as_json: bool) -> None:
    """One token with the budgets that limit it and their current usage."""
    config = _config(config_path)
    key = normalise_uid(uid)

    async def work(graph: Graph) -> dict[str, Any]:
        managed_by, token = await _token(graph, key)
        service = await _live_engine(graph)
        now = service.clock()
        budgets = []
        owners = [("token", token.uid)] + ([("group", token.group_id)] if token.group_id else [])
        for subject, subject_id in owners:
            for owned in await graph.rules.budgets_of(subject, subject_id):
                assert isinstance(owned.entity, Budget)
                budgets.append({**owned.document(), **graph.rules.usage(owned.entity)})
        count, held = service.engine.reserved(("token", token.uid), now)
        return {
            "token": document(token, managed_by),
            "budgets": budgets,
            "active_sessions": count,
            "reserved_kwh": str(held),
        }

    shown = _run(config, work)
    if as_json:
        _print_json(shown)
        return
    for name, value in shown["token"].items():
        if name == "scope":
            text = ", ".join(f"{k}: {' '.join(v)}" for k, v in value.items() if v) or "everywhere"
        elif isinstance(value, dict):
            text = msgspec.json.encode(value).decode()
        else:
            text = "-" if value is None else str(value)
        click.echo(f"{name + ':':<14}{text}")
    click.echo(
        f"{'sessions:':<14}{shown['active_sessions']} active, {shown['reserved_kwh']} kWh held"
    )
    if not shown["budgets"]:
        click.echo(f"{'budgets:':<14}none")
    for b in shown["budgets"]:
        unit = "kWh" if b["metric"] == "kwh" else b["currency"]
        click.echo(
            f"{'budget:':<14}{b['id']} ({b['subject']} {b['subject_id']}, per {b['period']}): "
            f"{b['used']} used + {b['reserved_kwh']} kWh reserved of {b['limit']} {unit}, "
            f"{b['remaining']} left [{b['managed_by']}]"
        )


def _set_status(config_path: str | None, uid: str, status: str) -> None:
    config = _config(config_path)
    key = normalise_uid(uid)

    async def work(graph: Graph) -> bool:
        await _token(graph, key)
        try:
            _, changed = await graph.rules.set_status(TOKENS, key, status)
        except HookgateError as exc:
            raise refusal(exc, config_path, TOKENS, key) from None
        return changed

    changed = _run(config, work)
    word = "blocked" if status == "blocked" else "unblocked"
    click.echo(f"{word} token {key}" if changed else f"token {key} was already {status}")


@tokens.command("block")
@config_option
@click.argument("uid")
@audited("tokens.block", "uid")
def tokens_block(config_path: str | None, uid: str) -> None:
    """Refuse every start with this token (BLOCKED)."""
    _set_status(config_path, uid, "blocked")


@tokens.command("unblock")
@config_option
@click.argument("uid")
@audited("tokens.unblock", "uid")
def tokens_unblock(config_path: str | None, uid: str) -> None:
    """Let a blocked token charge again."""
    _set_status(config_path, uid, "valid")


@tokens.command("remove")
@config_option
@click.argument("uid")
@audited("tokens.remove", "uid")
def tokens_remove(config_path: str | None, uid: str) -> None:
    """Delete a token and its budgets (it becomes UNKNOWN)."""
    config = _config(config_path)
    key = normalise_uid(uid)

    async def work(graph: Graph) -> int:
        await _token(graph, key)
        try:
            return await graph.rules.remove(TOKENS, key)
        except HookgateError as exc:
            raise refusal(exc, config_path, TOKENS, key) from None

    removed = _run(config, work)
    click.echo(f"removed token {key} and {removed} budget(s)")


@tokens.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
@audited("tokens.import", "file")
def tokens_import(config_path: str | None, file: str, dry_run: bool) -> None:
    """Create or update tokens from a CSV FILE (header row; see docs/authorization.md).

    Nothing is written unless every row is good; bad rows are listed as
    `line N: column: message`.
    """
    config = _config(config_path)
    try:
        with open(file, "rb") as handle:
            text = handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file} is not UTF-8 (byte {exc.start}): save it as 'CSV UTF-8'"
        ) from None
    parsed = read_csv(text, known_sources=deciding_sources(config))

    async def work(graph: Graph) -> ImportReport:
        return await graph.rules.import_tokens(parsed, dry_run=dry_run)

    report = _run(config, work)
    errors = sorted(parsed.errors + report.errors, key=lambda e: e.line)
    for error in errors:
        click.echo(str(error))
    bad = len({e.line for e in errors})
    click.echo(
        f"{parsed.rows} row(s): {report.created} new token(s), {report.updated} updated, "
        f"{report.budgets_set} budget(s) set, {report.budgets_removed} removed; "
        f"{bad} bad row(s)"
    )
    if errors:
        raise click.ClickException(
            f"{bad} bad row(s): nothing written; fix them and run again"
            + ("" if dry_run else f" (check with `hookgate tokens import {file} --dry-run`)")
        )
    click.echo("dry run: nothing written" if dry_run else "imported")


@main.command()
@config_option
@click.option("--source", "source_name", required=True, help="Zaptec source name.")
@click.option("--charger", required=True, help="Charger id.")
@click.option("--token", required=True, help="Charge token uid.")
@click.option("--installation", default=None, help="Installation id.")
@click.option("--user", "user_id", default=None, help="Zaptec user id.")
@click.option("--at", "at", default=None, help="Decide at this ISO 8601 instant (default: now).")
@click.option("--json", "as_json", is_flag=True)
def decide(
    config_path: str | None,
    source_name: str,
    charger: str,
    token: str,
    installation: str | None,
    user_id: str | None,
    at: str | None,
    as_json: bool,
) -> None:
    """What a session start would get now, and why; records nothing, reserves nothing."""
    config = _config(config_path, *READS, source_key(source_name))
    source = config.source(source_name)
    names = ", ".join(deciding_sources(config)) or "none"
    if source is None:
        raise click.ClickException(
            f"there is no source {source_name!r} in {find_config(config_path)} "
            f"(zaptec sources: {names})"
        )
    if not isinstance(source, ZaptecSource):
        raise click.ClickException(
            f"source {source_name!r} has provider {source.provider}; only zaptec sources ask "
            f"for decisions (zaptec sources: {names})"
        )
    moment = _instant_option(at, "--at")

    async def work(graph: Graph) -> Outcome:
        service = await _live_engine(graph)
        request = StartRequest(charger, token, user_id, installation)
        return service.engine.decide(source, request, moment or service.clock(), reserve=False)

    outcome = _run(config, work)
    body: dict[str, Any]
    if outcome.allowed:
        status, body = 200, {"sessionId": "<new uuid>"}
    else:
        status = source.deny_status
        body = {
            "authorized": False,
            "reason": outcome.result,
            "message": outcome.message or "Charging is not authorized.",
        }
    if as_json:
        _print_json(
            {
                "result": outcome.result,
                "reasons": outcome.reasons,
                "message": outcome.message,
                "group_id": outcome.group_id,
                "reserved_kwh": str(outcome.reserved_kwh),
                "answer": {"status": status, "body": body},
                "recorded": False,
            }
        )
        return
    click.echo(f"result   {outcome.result}")
    for index, reason in enumerate(outcome.reasons):
        click.echo(f"{'reasons' if index == 0 else '':<8} {reason}")
    click.echo(f"answer   {status} {msgspec.json.encode(body).decode()}")
    if outcome.allowed and outcome.reserved_kwh:
        click.echo(f"reserve  {outcome.reserved_kwh} kWh would be held until the session ends")
    click.echo("(nothing recorded)")
