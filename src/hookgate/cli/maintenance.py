"""prune: retention for a database that grows with every provider call."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import click

from hookgate.cli.audit import audited
from hookgate.cli.common import _config, _print_json, _with_store, config_option, main
from hookgate.timeutil import iso, utcnow

_UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`90d`, `12h` or `8w` to a duration."""
    match = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", text)
    if match is None:
        raise ValueError("use a number and a unit: 90d, 12h or 8w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@main.command()
@config_option
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age of what is pruned: 90d, 12h, 8w.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@audited("prune")
def prune(config_path: str | None, older_than: str, dry_run: bool, as_json: bool) -> None:
    """Clear raw bodies of old inbox events (row, document and body hash stay), delete old
    rejections and change-log entries. Decisions, sessions and consumption are kept."""
    try:
        age = parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    cutoff = utcnow() - age
    counts = asyncio.run(
        _with_store(_config(config_path), lambda s: s.prune(cutoff, dry_run=dry_run))
    )
    if as_json:
        _print_json({"before": iso(cutoff), "dry_run": dry_run, **counts})
        return
    verb = "would prune" if dry_run else "pruned"
    click.echo(f"{verb} what is older than {iso(cutoff)}:")
    for name, count in counts.items():
        click.echo(f"  {name:<14} {count}")
