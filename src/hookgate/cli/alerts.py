"""alerts: the alert history (what fired, when, whether it is over) and the rules in force."""

from __future__ import annotations

import asyncio
import functools

import click
import msgspec

from hookgate.cli.common import _config, _print_json, _table, _with_store, config_option, main
from hookgate.store import alerting


@main.group()
def alerts() -> None:
    """Alerts: what fired and when, and the rules that watch the gateway."""


@alerts.command("list")
@config_option
@click.option("--status", type=click.Choice(["firing", "resolved"]), default=None)
@click.option("--rule", default=None, help="Only this rule's alerts.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--before", default=None, help="Only alerts older than this alert id (paging).")
@click.option("--json", "as_json", is_flag=True, help="Print the alerts as JSON.")
def alerts_list(
    config_path: str | None,
    status: str | None,
    rule: str | None,
    limit: int,
    before: str | None,
    as_json: bool,
) -> None:
    """Newest alerts first: firing ones and the history of resolved ones."""
    rows = asyncio.run(
        _with_store(
            _config(config_path),
            lambda s: s.sql_read(
                functools.partial(
                    alerting.list_alerts, status=status, rule=rule, before=before, limit=limit
                )
            ),
        )
    )
    items = [row.public() for row in rows]
    if as_json:
        _print_json({"items": items, "next": items[-1]["id"] if len(items) == limit else None})
        return
    _table(
        ["ID", "FIRED", "STATUS", "SEVERITY", "RULE", "SUBJECT", "SUMMARY"],
        [
            [
                item["id"],
                item["fired_at"][:19],
                item["status"]
                if item["status"] == "firing"
                else f"resolved {item['resolved_at'][:19]}",
                item["severity"],
                item["rule"],
                item["subject"],
                item["summary"],
            ]
            for item in items
        ],
        empty="no alerts match" if status or rule or before else "no alerts yet",
        more=f"more: --before {items[-1]['id']}" if len(items) == limit else None,
    )


@alerts.command("show")
@config_option
@click.argument("alert_id")
def alerts_show(config_path: str | None, alert_id: str) -> None:
    """One alert with its details."""
    row = asyncio.run(
        _with_store(
            _config(config_path),
            lambda s: s.sql_read(functools.partial(alerting.get_alert, alert_id=alert_id)),
        )
    )
    if row is None:
        raise click.ClickException(
            f"no alert with id {alert_id}: `hookgate alerts list` shows them"
        )
    _print_json(row.public())


@alerts.command("rules")
@config_option
def alerts_rules(config_path: str | None) -> None:
    """The rules in force (the configured ones, else the built-in set) as JSON."""
    config = _config(config_path, "alerts")
    rules = [
        {"name": rule.key, **msgspec.to_builtins(rule)} for rule in config.alerts.effective_rules()
    ]
    _print_json(
        {
            "enabled": config.alerts.enabled,
            "built_in": not config.alerts.rules,
            "rules": rules,
            "notifiers": [{"name": n.name, "kind": n.kind} for n in config.alerts.notifiers],
        }
    )
