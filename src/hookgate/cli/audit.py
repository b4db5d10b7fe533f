"""The audit log on the command line: `hookgate audit` lists it, and `audited` records
every change a command makes, with the operator as `cli:<user>` (ADR 0021)."""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from hookgate.cli.common import _config, _print_json, _store_run, _table, config_option, main
from hookgate.domain.errors import HookgateError, StoreError, Unavailable
from hookgate.ids import new_id
from hookgate.store import audit as audit_log
from hookgate.store.audit import AuditFilter, AuditRecord, Outcome
from hookgate.timeutil import parse_iso, utcnow

F = TypeVar("F", bound=Callable[..., Any])


def cli_actor() -> str:
    """Who runs this command, as the audit log names them."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def audited(action: str, target: str | None = None) -> Callable[[F], F]:
    """Record the command's run in the audit log once it ends: `ok`, `refused` (a
    message to the operator) or `failed`. A dry run changes nothing and is not recorded."""

    def wrap(command: F) -> F:
        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            outcome: Outcome = "failed"
            try:
                result = command(*args, **kwargs)
                outcome = "ok"
                return result
            except click.ClickException:
                outcome = "refused"
                raise
            except HookgateError as exc:
                outcome = "failed" if isinstance(exc, Unavailable) else "refused"
                raise
            finally:
                if not kwargs.get("dry_run"):
                    _record(action, target, kwargs, outcome)

        return run  # type: ignore[return-value]

    return wrap


def _record(action: str, target: str | None, kwargs: dict[str, Any], outcome: Outcome) -> None:
    config_path = kwargs.get("config_path")
    detail = {
        k: _plain(v)
        for k, v in kwargs.items()
        if k not in ("config_path", "as_json") and v not in (None, (), [])
    }
    record = AuditRecord(
        id=new_id(),
        at=utcnow(),
        actor=cli_actor(),
        channel="cli",
        action=action,
        target=str(kwargs[target]) if target and kwargs.get(target) is not None else None,
        detail=detail,
        outcome=outcome,
    )
    try:
        _store_run(_config(config_path), lambda store: audit_log.record(store, record))
    except (click.ClickException, StoreError) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        click.echo(f"warning: the audit log did not record {action}: {message}", err=True)


def _instant(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise click.BadParameter(
            "an ISO 8601 date-time with an offset, e.g. 2025-12-04T12:00:00Z", param_hint=flag
        ) from None


@main.command("audit")
@config_option
@click.option("--actor", default=None, help="An admin token's name, or cli:<user>.")
@click.option("--action", default=None, help="e.g. blockToken, replay, tokens.block.")
@click.option("--outcome", type=click.Choice(["ok", "refused", "failed"]), default=None)
@click.option("--since", default=None, help="ISO 8601 date-time.")
@click.option("--until", default=None, help="ISO 8601 date-time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="The cursor printed under the previous page.")
@click.option("--json", "as_json", is_flag=True)
def audit(
    config_path: str | None,
    actor: str | None,
    action: str | None,
    outcome: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Who changed what, when, and how it ended: changes through the admin API and the
    command line, newest first."""
    where = AuditFilter(
        actor=actor,
        action=action,
        outcome=outcome,
        since=_instant(since, "--since"),
        until=_instant(until, "--until"),
    )
    try:
        page = _store_run(_config(config_path), lambda s: audit_log.page(s, where, cursor, limit))
    except ValueError as exc:  # a cursor that is not one of ours
        raise click.BadParameter(str(exc), param_hint="--cursor") from None
    if as_json:
        _print_json({"items": page.items, "next": page.next})
        return
    rows = [
        [
            str(e["at"]),
            e["actor"],
            e["action"],
            e["target"] or "-",
            e["outcome"] + (f" {e['status']}" if e["status"] is not None else ""),
        ]
        for e in page.items
    ]
    more = f"more: hookgate audit --cursor {page.next}" if page.next else None
    _table(
        ["AT", "ACTOR", "ACTION", "TARGET", "OUTCOME"], rows, empty="no audit entries", more=more
    )
