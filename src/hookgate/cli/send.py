"""send: act as a provider towards a running gateway (the emulators)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import click
import httpx

from hookgate.cli.common import (
    _config,
    _pretty,
    config_option,
    main,
)
from hookgate.config import (
    AmpecoSource,
    EasyParkSource,
    SourceConfig,
    ZaptecSource,
    ZtlmentSource,
    find_config,
)
from hookgate.emulate.base import Sent


def _source_for(config_path: str | None, name: str, provider: str) -> SourceConfig | None:
    """The source's credentials from the configuration, when one is found."""
    target = find_config(config_path)
    if not target.exists():
        return None
    source = _config(config_path).source(name)
    if source is not None and source.provider != provider:
        raise click.ClickException(f"source {name!r} is a {source.provider} source, not {provider}")
    return source


def _need(value: str | None, what: str, flag: str, name: str) -> str:
    if not value:
        raise click.ClickException(
            f"no {what} for source {name!r}: pass {flag} or --config with that source"
        )
    return value


@main.command()
@config_option
@click.argument("provider", type=click.Choice(["zaptec", "ampeco", "easypark", "ztlment"]))
@click.argument("event", required=False)
@click.option("--url", required=True, help="Base URL of the gateway, e.g. http://127.0.0.1:8000")
@click.option("--source", "source_name", default=None, help="Source name (default: the provider).")
@click.option("--count", type=click.IntRange(1, 1_000_000), default=1, show_default=True)
@click.option("--duplicate", is_flag=True, help="Send every request twice.")
@click.option("--auth", type=click.Choice(["oauth", "basic", "api_key"]), default=None)
@click.option("--username", default=None)
@click.option("--password", default=None)
@click.option("--secret", default=None, help="HMAC secret (AMPECO, ZTLment).")
@click.option("--api-key", default=None, help="EasyPark API key.")
@click.option("--api-key-header", default=None, help="EasyPark API key header name.")
@click.option("--encoding", type=click.Choice(["hex", "base64"]), default=None)
@click.option("--case", type=click.Choice(["pascal", "camel"]), default="pascal", show_default=True)
@click.option("--token", default=None, help="Zaptec charge token (RFID uid).")
@click.option("--legacy", is_flag=True, help="EasyPark legacy feed (no parkingUserId).")
@click.option("--retry-interval", type=float, default=3600.0, show_default=True)
@click.option("--max-attempts", type=click.IntRange(1), default=24, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per request.")
def send(
    config_path: str | None,
    provider: str,
    event: str | None,
    url: str,
    source_name: str | None,
    count: int,
    duplicate: bool,
    auth: str | None,
    username: str | None,
    password: str | None,
    secret: str | None,
    api_key: str | None,
    api_key_header: str | None,
    encoding: str | None,
    case: str,
    token: str | None,
    legacy: bool,
    retry_interval: float,
    max_attempts: int,
    as_json: bool,
) -> None:
    """Act as PROVIDER towards a running gateway.

    \b
    zaptec   [cycle]                  token (or Basic), session start, session end
    ampeco   [session|all|<type>]     signed notifications (default: a session lifecycle)
    easypark [parking]                parking transactions, retried until 2xx or 409
    ztlment  [payment|approval|STATE] an object walked through its states
    """
    name = source_name or provider
    configured = _source_for(config_path, name, provider)
    runner = _emulator(
        provider,
        event,
        url,
        name,
        configured,
        count=count,
        duplicate=duplicate,
        auth=auth,
        username=username,
        password=password,
        secret=secret,
        api_key=api_key,
        api_key_header=api_key_header,
        encoding=encoding,
        case=case,
        token=token,
        legacy=legacy,
        retry_interval=retry_interval,
        max_attempts=max_attempts,
    )

    async def go() -> list[Sent]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await runner(client)

    results = asyncio.run(go())
    counts: dict[str, int] = {}
    for sent in results:
        key = str(sent.status) if sent.status is not None else "error"
        counts[key] = counts.get(key, 0) + 1
        if as_json:
            click.echo(
                _pretty.encode(
                    {
                        "label": sent.label,
                        "status": sent.status,
                        "attempts": sent.attempts,
                        "response": sent.response,
                        "error": sent.error,
                    }
                ).decode()
            )
        else:
            shown = sent.error or _pretty.encode(sent.response).decode()[:160]
            click.echo(f"{provider:<9} {sent.label:<44} -> {sent.status or 'ERR'}  {shown}")
    summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
    click.echo(f"sent {len(results)} ({summary})", err=as_json)
    failed = [s for s in results if s.status is None or s.status >= 500]
    if failed:
        sys.exit(1)


def _emulator(
    provider: str,
    event: str | None,
    url: str,
    name: str,
    configured: SourceConfig | None,
    **opts: Any,
) -> Callable[[httpx.AsyncClient], Awaitable[list[Sent]]]:
    from hookgate.emulate import ampeco, easypark, zaptec, ztlment

    if provider == "zaptec":
        z = configured if isinstance(configured, ZaptecSource) else None
        user = _need(
            opts["username"] or (z.username if z else None), "username", "--username", name
        )
        pw = _need(opts["password"] or (z.password if z else None), "password", "--password", name)
        mode = opts["auth"] or (z.auth if z else "oauth")
        if mode == "api_key":
            raise click.BadParameter("zaptec uses oauth or basic", param_hint="--auth")
        return lambda c: zaptec.run(
            c,
            url,
            name,
            username=user,
            password=pw,
            auth=mode,
            count=opts["count"],
            duplicate=opts["duplicate"],
            case=opts["case"],
            token=opts["token"],
        )
    if provider in ("ampeco", "ztlment"):
        signed = configured if isinstance(configured, AmpecoSource | ZtlmentSource) else None
        key = _need(
            opts["secret"]
            or (signed.credentials()[0] if signed and signed.credentials() else None),
            "secret",
            "--secret",
            name,
        )
        if provider == "ampeco" and event not in (None, "session", "all"):
            from hookgate.emulate.ampeco_samples import NAMES

            if event not in NAMES:
                raise click.BadParameter(
                    f"unknown AMPECO event {event!r}; one of: session, all, " + ", ".join(NAMES),
                    param_hint="EVENT",
                )
        # Each signs as the provider does: AMPECO hex, ZTLment base64.
        run, encoding = (ampeco.run, "hex") if provider == "ampeco" else (ztlment.run, "base64")
        return lambda c: run(
            c,
            url,
            name,
            secret=key,
            event=event,
            count=opts["count"],
            duplicate=opts["duplicate"],
            encoding=opts["encoding"] or encoding,
        )
    e = configured if isinstance(configured, EasyParkSource) else None
    mode = opts["auth"] or (e.auth if e else "basic")
    if mode == "oauth":
        raise click.BadParameter("easypark uses basic or api_key", param_hint="--auth")
    creds: dict[str, Any] = {}
    if mode == "basic":
        creds["username"] = _need(
            opts["username"] or (e.username if e else None), "username", "--username", name
        )
        creds["password"] = _need(
            opts["password"] or (e.password if e else None), "password", "--password", name
        )
    else:
        creds["api_key"] = _need(
            opts["api_key"] or (e.api_keys[0] if e and e.api_keys else None),
            "API key",
            "--api-key",
            name,
        )
        creds["api_key_header"] = opts["api_key_header"] or (e.api_key_header if e else "X-Api-Key")
    return lambda c: easypark.run(
        c,
        url,
        name,
        auth=mode,
        count=opts["count"],
        duplicate=opts["duplicate"],
        legacy=opts["legacy"],
        retry_interval=opts["retry_interval"],
        max_attempts=opts["max_attempts"],
        **creds,
    )
