"""groups, chargers and budgets: the charging rules besides tokens, managed in the store
through the rules service the admin API uses, so both keep the same invariants. Running
servers apply changes within a refresh interval."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import click

from hookgate.authorization.service import Entity
from hookgate.bootstrap import Graph
from hookgate.cli.audit import audited
from hookgate.cli.common import _config, _print_json, _run, _table, config_option, main
from hookgate.config import find_config
from hookgate.domain.errors import Conflict, HookgateError
from hookgate.domain.rules import budget_id, normalise_uid
from hookgate.services.rules import BUDGETS, GROUPS, RULES, Kind, ManagedByConfig, validate


def refusal(
    exc: HookgateError, config_path: str | None, spec: Kind, key: str
) -> click.ClickException:
    """A service's refusal as a message saying what to fix here."""
    if isinstance(exc, ManagedByConfig):
        return click.ClickException(
            f"{exc.spec.noun} {exc.key} is managed by the configuration file "
            f"{find_config(config_path)} ({exc.spec.config_table}): edit the file there and "
            "restart hookgate"
        )
    if exc.code == "already-exists":
        return click.ClickException(f"{spec.noun} {key} exists: pass --replace to overwrite it")
    if exc.code == "not-found":
        return click.ClickException(
            f"there is no {spec.noun} {key}: `hookgate {spec.path} list` shows them"
        )
    return click.ClickException(exc.detail)


def _listed(config_path: str | None, spec: Kind, keep: Callable[[Entity], bool]) -> list[Any]:
    """Every entity of a kind in key order: the stored ones and those of the file that no
    server has written to the store yet."""

    async def work(graph: Graph) -> list[Any]:
        listed = await graph.rules.everything(spec)
        return [item.document() for item in listed if keep(item.entity)]

    return _run(_config(config_path), work)


def _save(config_path: str | None, spec: Kind, doc: dict[str, Any], replace: bool) -> str:
    config = _config(config_path)
    try:
        entity = validate(spec, doc)
    except HookgateError as exc:
        raise click.ClickException(exc.detail) from None
    key = spec.key_of(entity)

    async def work(graph: Graph) -> bool:
        try:
            return await graph.rules.save(spec, entity, replace=replace)
        except HookgateError as exc:
            raise refusal(exc, config_path, spec, key) from None

    replaced = _run(config, work)
    return f"{'replaced' if replaced else 'added'} {spec.noun} {key}"


def _remove(config_path: str | None, spec: Kind, key: str) -> str:
    async def work(graph: Graph) -> int:
        try:
            return await graph.rules.remove(spec, key)
        except HookgateError as exc:
            raise refusal(exc, config_path, spec, key) from None

    budgets = _run(_config(config_path), work)
    return f"removed {spec.noun} {key}" + (f" and {budgets} budget(s)" if budgets else "")


def _scope(
    sources: tuple[str, ...], installations: tuple[str, ...], chargers: tuple[str, ...]
) -> dict[str, list[str]]:
    return {
        "sources": list(sources),
        "installations": list(installations),
        "chargers": list(chargers),
    }


# -- groups ------------------------------------------------------------------------------


@main.group()
def groups() -> None:
    """Groups of tokens sharing a scope, budgets and a concurrency limit.

    Groups listed in the configuration file are read-only here: edit the file instead.
    """


@groups.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def groups_list(config_path: str | None, as_json: bool) -> None:
    """Every group in id order."""
    items = _listed(config_path, GROUPS, lambda _: True)
    if as_json:
        _print_json({"items": items})
        return
    _table(
        ["ID", "STATUS", "MAX SESSIONS", "MANAGED", "LABEL"],
        [
            [
                g["id"],
                g["status"],
                "-" if g.get("max_sessions") is None else str(g["max_sessions"]),
                g["managed_by"],
                g.get("label") or "",
            ]
            for g in items
        ],
        empty="no groups (add one with `hookgate groups add ID`)",
    )


@groups.command("add")
@config_option
@click.argument("group_id")
@click.option("--label", default=None)
@click.option("--max-sessions", type=click.IntRange(0), default=None)
@click.option("--source", "sources", multiple=True, help="Allowed zaptec source (repeatable).")
@click.option("--installation", "installations", multiple=True, help="Allowed installation.")
@click.option("--charger", "chargers", multiple=True, help="Allowed charger id (repeatable).")
@click.option("--blocked", is_flag=True, help="Add the group blocked.")
@click.option("--replace", is_flag=True, help="Replace a group that exists.")
@audited("groups.add", "group_id")
def groups_add(
    config_path: str | None,
    group_id: str,
    label: str | None,
    max_sessions: int | None,
    sources: tuple[str, ...],
    installations: tuple[str, ...],
    chargers: tuple[str, ...],
    blocked: bool,
    replace: bool,
) -> None:
    """Add the group GROUP_ID (tokens join it with `hookgate tokens add --group`)."""
    doc = {
        "id": group_id,
        "label": label,
        "status": "blocked" if blocked else "valid",
        "scope": _scope(sources, installations, chargers),
        "max_sessions": max_sessions,
    }
    click.echo(_save(config_path, GROUPS, doc, replace))


@groups.command("remove")
@config_option
@click.argument("group_id")
@audited("groups.remove", "group_id")
def groups_remove(config_path: str | None, group_id: str) -> None:
    """Delete a group and its budgets (refused while tokens or charger rules use it)."""
    click.echo(_remove(config_path, GROUPS, group_id))


def _group_status(config_path: str | None, group_id: str, status: str) -> None:
    async def work(graph: Graph) -> None:
        try:
            await graph.rules.set_status(GROUPS, group_id, status)
        except Conflict as exc:
            raise refusal(exc, config_path, GROUPS, group_id) from None
        except HookgateError as exc:
            if exc.code == "not-found":
                raise click.ClickException(f"there is no group {group_id}") from None
            raise click.ClickException(exc.detail) from None

    _run(_config(config_path), work)
    click.echo(f"{'blocked' if status == 'blocked' else 'unblocked'} group {group_id}")


@groups.command("block")
@config_option
@click.argument("group_id")
@audited("groups.block", "group_id")
def groups_block(config_path: str | None, group_id: str) -> None:
    """Refuse every start with a token of this group."""
    _group_status(config_path, group_id, "blocked")


@groups.command("unblock")
@config_option
@click.argument("group_id")
@audited("groups.unblock", "group_id")
def groups_unblock(config_path: str | None, group_id: str) -> None:
    """Let a blocked group's tokens charge again."""
    _group_status(config_path, group_id, "valid")


# -- charger rules -----------------------------------------------------------------------


@main.group()
def chargers() -> None:
    """Charger rules: `open` chargers anyone may use, `reserved` ones for one group.

    Rules listed in the configuration file are read-only here: edit the file instead.
    """


@chargers.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def chargers_list(config_path: str | None, as_json: bool) -> None:
    """Every charger rule in charger id order."""
    items = _listed(config_path, RULES, lambda _: True)
    if as_json:
        _print_json({"items": items})
        return
    _table(
        ["CHARGER", "MODE", "GROUP", "MANAGED"],
        [[r["charger_id"], r["mode"], r.get("group_id") or "-", r["managed_by"]] for r in items],
        empty="no charger rules (add one with `hookgate chargers add CHARGER_ID --mode open`)",
    )


@chargers.command("add")
@config_option
@click.argument("charger_id")
@click.option("--mode", type=click.Choice(["open", "reserved"]), required=True)
@click.option("--group", "group_id", default=None, help="The group a reserved charger is for.")
@click.option("--replace", is_flag=True, help="Replace the rule of a charger that has one.")
@audited("chargers.add", "charger_id")
def chargers_add(
    config_path: str | None, charger_id: str, mode: str, group_id: str | None, replace: bool
) -> None:
    """Add the rule of charger CHARGER_ID."""
    doc = {"charger_id": charger_id, "mode": mode, "group_id": group_id}
    click.echo(_save(config_path, RULES, doc, replace))


@chargers.command("remove")
@config_option
@click.argument("charger_id")
@audited("chargers.remove", "charger_id")
def chargers_remove(config_path: str | None, charger_id: str) -> None:
    """Delete the rule of a charger (its tokens' own rules apply again)."""
    click.echo(_remove(config_path, RULES, charger_id))


# -- budgets -----------------------------------------------------------------------------


@main.group()
def budgets() -> None:
    """Energy (kWh) or money budgets of a token or group per day, week or month.

    Budgets listed in the configuration file are read-only here: edit the file instead.
    """


@budgets.command("list")
@config_option
@click.option("--subject", type=click.Choice(["token", "group"]), default=None)
@click.option("--subject-id", default=None, help="A token uid or group id.")
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def budgets_list(
    config_path: str | None, subject: str | None, subject_id: str | None, as_json: bool
) -> None:
    """Every budget in id order."""

    def keep(entity: Any) -> bool:
        owner = entity.subject_id
        wanted = (
            normalise_uid(subject_id) if subject_id and entity.subject == "token" else subject_id
        )
        return (subject is None or entity.subject == subject) and (
            subject_id is None or owner == wanted
        )

    items = _listed(config_path, BUDGETS, keep)
    if as_json:
        _print_json({"items": items})
        return
    _table(
        ["ID", "SUBJECT", "PER", "LIMIT", "MANAGED"],
        [
            [
                b["id"],
                f"{b['subject']} {b['subject_id']}",
                b["period"],
                f"{b['limit']} {'kWh' if b['metric'] == 'kwh' else b.get('currency') or ''}",
                b["managed_by"],
            ]
            for b in items
        ],
        empty="no budgets match" if subject or subject_id else "no budgets",
    )


def _amount(ctx: click.Context, param: click.Parameter, value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number", ctx, param) from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter("must be a number of at least 0", ctx, param)
    return amount


@budgets.command("add")
@config_option
@click.option("--subject", type=click.Choice(["token", "group"]), required=True)
@click.option("--subject-id", required=True, help="The token uid or group id it limits.")
@click.option("--period", type=click.Choice(["day", "week", "month"]), required=True)
@click.option("--limit", "limit", callback=_amount, required=True, help="kWh, or money.")
@click.option("--metric", type=click.Choice(["kwh", "money"]), default="kwh", show_default=True)
@click.option("--currency", default=None, help="ISO 4217 code of a money budget, e.g. SEK.")
@click.option("--id", "given_id", default=None, help="Default: SUBJECT-ID-METRIC-PERIOD.")
@click.option("--replace", is_flag=True, help="Replace a budget that exists.")
@audited("budgets.add", "subject_id")
def budgets_add(
    config_path: str | None,
    subject: str,
    subject_id: str,
    period: str,
    limit: Decimal,
    metric: str,
    currency: str | None,
    given_id: str | None,
    replace: bool,
) -> None:
    """Add a budget that limits one token or group per period."""
    owner = normalise_uid(subject_id) if subject == "token" else subject_id
    doc = {
        "id": given_id or budget_id(subject, owner, metric, period),
        "subject": subject,
        "subject_id": owner,
        "metric": metric,
        "period": period,
        "limit": str(limit),
        "currency": currency.upper() if currency else None,
    }
    click.echo(_save(config_path, BUDGETS, doc, replace))


@budgets.command("remove")
@config_option
@click.argument("budget_id_", metavar="BUDGET_ID")
@audited("budgets.remove", "budget_id_")
def budgets_remove(config_path: str | None, budget_id_: str) -> None:
    """Delete a budget."""
    click.echo(_remove(config_path, BUDGETS, budget_id_))
