"""Shared pieces of the command line: the root group, configuration and store access."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from hookgate import __version__
from hookgate.config import (
    Config,
    ConfigError,
    load_config,
)
from hookgate.store import SchemaOutdated, Store, StoreError, make_store

T = TypeVar("T")
_pretty = msgspec.json.Encoder()


def _config(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _print_json(document: Any) -> None:
    click.echo(msgspec.json.format(_pretty.encode(document), indent=2).decode())


async def _with_store(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    store = make_store(config.storage)
    try:
        await store.open()
    except SchemaOutdated as exc:
        raise click.ClickException(str(exc)) from None
    except StoreError as exc:
        raise click.ClickException(f"storage: {exc}") from None
    try:
        return await work(store)
    finally:
        await store.close()


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file (default: $HOOKGATE_CONFIG, else ./hookgate.toml).",
)


@click.group()
@click.version_option(__version__, prog_name="hookgate")
def main() -> None:
    """hookgate: receive, verify and store provider webhooks."""


def _store_run(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    return asyncio.run(_with_store(config, work))
