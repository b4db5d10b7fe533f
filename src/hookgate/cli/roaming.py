"""ocpi (the CPOs that may register and their credentials) and tokens export (OCPP local
authorization lists)."""

from __future__ import annotations

from typing import Any

import click
import msgspec

from hookgate.bootstrap import Graph
from hookgate.cli.audit import audited
from hookgate.cli.common import _config, _print_json, _quiet_logs, _run, _table, config_option, main
from hookgate.cli.tokens import tokens
from hookgate.roaming.ocpi.models import VERSION
from hookgate.roaming.ocpi.parties import Parties
from hookgate.roaming.ocpp import OCPP_VERSIONS, LocalList, local_list
from hookgate.store import roaming as sql
from hookgate.timeutil import iso, utcnow


@main.group()
def ocpi() -> None:
    """OCPI 2.2.1 parties: issue a CPO its registration token A, list, revoke."""


def _party_doc(party: sql.Party) -> dict[str, Any]:
    doc: dict[str, Any] = msgspec.to_builtins(party)
    doc.pop("token_b", None)  # hookgate's secret for calling the CPO stays in the store
    return doc


@ocpi.command("issue")
@config_option
@click.option("--name", required=True, help="Who the CPO is (shown in `hookgate ocpi list`).")
@click.option("--json", "as_json", is_flag=True, help="Print the party and token A as JSON.")
@audited("ocpi.issue", "name")
def ocpi_issue(config_path: str | None, name: str, as_json: bool) -> None:
    """Issue a registration token A for one CPO; it is shown once, hand it over securely.

    The CPO calls the versions URL with `Authorization: Token <base64 of token A>`, then
    POSTs its credentials; token A then stops working.
    """
    config = _config(config_path, "storage")
    if not config.ocpi.enabled:
        click.echo("warning: [ocpi] enabled is false: no server answers OCPI yet", err=True)

    async def work(graph: Graph) -> tuple[sql.Party, str]:
        return await Parties(graph.store).issue(name)

    party, token = _run(config, work)
    versions = f"{config.ocpi.public_url.rstrip('/') or '<public_url>'}/ocpi/versions"
    if as_json:
        _print_json({**_party_doc(party), "token_a": token, "versions_url": versions})
        return
    click.echo(f"party {party.id} ({name})")
    click.echo(f"token A: {token}")
    click.echo(f"versions URL: {versions} (OCPI {VERSION})")


@ocpi.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def ocpi_list(config_path: str | None, as_json: bool) -> None:
    """Every party: issued (token A unused), registered, unregistered or revoked."""
    config = _config(config_path, "storage")

    async def work(graph: Graph) -> list[sql.Party]:
        return await Parties(graph.store).all()

    parties = _run(config, work)
    if as_json:
        _print_json({"items": [_party_doc(p) for p in parties]})
        return
    _table(
        ["PARTY", "STATUS", "NAME", "VERSIONS URL", "UPDATED"],
        [[p.id, p.status, p.name, p.versions_url or "-", iso(p.updated_at)] for p in parties],
        empty="no OCPI parties: `hookgate ocpi issue --name NAME` issues a token A",
    )


@ocpi.command("revoke")
@config_option
@click.argument("party_id")
@audited("ocpi.revoke", "party_id")
def ocpi_revoke(config_path: str | None, party_id: str) -> None:
    """Revoke a party: its token A or C stops working at once."""
    config = _config(config_path, "storage")

    async def work(graph: Graph) -> bool:
        return await Parties(graph.store).revoke(party_id)

    if not _run(config, work):
        raise click.ClickException(
            f"no open party {party_id}: `hookgate ocpi list` shows the parties and their status"
        )
    click.echo(f"revoked party {party_id}")


@tokens.command("export")
@config_option
@click.option(
    "--ocpp",
    "version",
    type=click.Choice(OCPP_VERSIONS),
    required=True,
    help="OCPP version of the SendLocalList payload.",
)
@click.option(
    "--since",
    type=click.IntRange(0),
    default=None,
    help="A Differential list of the changes after this list version (default: Full).",
)
def tokens_export(config_path: str | None, version: str, since: int | None) -> None:
    """Print an OCPP SendLocalList request payload (JSON) of the tokens a charging
    station may keep: Full, or Differential since a list version sent before."""
    config = _config(config_path)

    async def work(graph: Graph) -> LocalList:
        _quiet_logs(graph.config)
        engine = (await graph.load_engine()).engine
        last, changed_tokens, changed_groups = await graph.store.sql_read(
            lambda conn: sql.token_changes(conn, since or 0)
        )
        changed: set[str] | None = None
        if since is not None:
            if since > last:
                raise click.ClickException(
                    f"--since {since} is newer than the current list version {last}"
                )
            changed = changed_tokens | {
                uid for uid, t in engine.tokens.items() if t.group_id in changed_groups
            }
        return local_list(
            version,  # type: ignore[arg-type]
            last,
            dict(engine.tokens),
            dict(engine.groups),
            utcnow(),
            changed,
        )

    result = _run(config, work)
    for uid in result.skipped:
        click.echo(
            f"warning: token {uid} is too long for an OCPP {version} list: left out", err=True
        )
    click.echo(msgspec.json.format(msgspec.json.encode(result.payload), indent=2).decode())
