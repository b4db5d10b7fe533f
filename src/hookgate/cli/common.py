"""Shared pieces of the command line: the root group, configuration and store access."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from hookgate import __version__
from hookgate.bootstrap import Graph, bootstrap
from hookgate.config import (
    Config,
    ConfigError,
    ConfigFile,
    read_config,
)
from hookgate.domain.errors import HookgateError, SchemaOutdated, StoreError
from hookgate.store import Store

T = TypeVar("T")
_pretty = msgspec.json.Encoder()


# What a command that only reads the database needs from the file: variables used
# elsewhere (provider passwords, admin tokens) may be unset.
READS = ("storage", "authorization")


# What the operator reads for each kind of error, the first class that matches deciding:
# configuration and schema messages already say what to fix, storage ones say where the
# trouble is, and the rest name their case (`not-quarantined: event ... is processed`).
MESSAGES: tuple[tuple[type[HookgateError], str], ...] = (
    (ConfigError, "{detail}"),
    (SchemaOutdated, "{detail}"),
    (StoreError, "storage: {detail}"),
    (HookgateError, "{code}: {detail}"),
)


def error_message(exc: HookgateError) -> str:
    """The command line's one sentence for `exc` (see MESSAGES)."""
    template = next(text for kind, text in MESSAGES if isinstance(exc, kind))
    return template.format(code=exc.code, detail=exc.detail)


def _config_file(path: str | None) -> ConfigFile:
    return read_config(path)


def _config(path: str | None, *needs: str) -> Config:
    """The configuration, requiring set variables only under `needs` (default: READS)."""
    return _config_file(path).require(*(needs or READS))


def _config_all(path: str | None) -> Config:
    """The configuration with every variable set (serving needs all of it); warnings about
    the file go to stderr."""
    loaded = _config_file(path)
    for warning in loaded.warnings:
        click.echo(f"warning: {loaded.path}: {warning}", err=True)
    return loaded.require()


def _table(
    headers: list[str], rows: list[list[str]], *, empty: str, more: str | None = None
) -> None:
    """Rows under a header, each column as wide as its longest cell (the last one is not
    padded), so long event types do not push the columns out of line; `empty` is said when
    there is nothing, `more` under the rows when a further page exists."""
    if not rows:
        click.echo(empty)
        return
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        return "  ".join([*padded, cells[-1]]).rstrip()

    click.echo(line(headers))
    for row in rows:
        click.echo(line(row))
    if more:
        click.echo(more)


def _print_json(document: Any) -> None:
    click.echo(msgspec.json.format(_pretty.encode(document), indent=2).decode())


async def _with_graph(config: Config, work: Callable[[Graph], Awaitable[T]]) -> T:
    """Run `work` on the graph every command shares with `serve`, storage open."""
    graph = bootstrap(config)
    await graph.open()
    try:
        return await work(graph)
    finally:
        await graph.close()


async def _with_store(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    return await _with_graph(config, lambda graph: work(graph.store))


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file (default: $HOOKGATE_CONFIG, else ./hookgate.toml).",
)


class _Group(click.Group):
    """Configuration, storage and input problems are the operator's to fix: a message,
    never a traceback, whichever command meets them."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HookgateError as exc:
            raise click.ClickException(error_message(exc)) from None


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="hookgate")
def main() -> None:
    """hookgate: receive, verify and store provider webhooks."""


def _quiet_logs(config: Config) -> None:
    """Log lines of a command that loads the engine go to stderr, and only warnings, so
    its output stays what it prints."""
    from hookgate.logs import configure

    quiet = "error" if config.logging.level == "error" else "warning"
    configure(msgspec.structs.replace(config.logging, level=quiet))


def _run(config: Config, work: Callable[[Graph], Awaitable[T]]) -> T:
    """`work` on the bootstrapped graph, storage open (for commands that use services)."""
    return asyncio.run(_with_graph(config, work))


def _store_run(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    return asyncio.run(_with_store(config, work))
