"""Command line: serve, init, migrate, events, rejections, send (provider emulators)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import httpx
import msgspec

from hookgate import __version__
from hookgate.config import (
    AmpecoSource,
    Config,
    ConfigError,
    EasyParkSource,
    SourceConfig,
    ZaptecSource,
    ZtlmentSource,
    find_config,
    load_config,
)
from hookgate.emulate.base import Sent
from hookgate.store import SchemaOutdated, Store, StoreError, make_store
from hookgate.store.base import EventFilter
from hookgate.timeutil import parse_iso

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


# -- serve / migrate / init -----------------------------------------------------------


@main.command()
@config_option
@click.option("--host", default=None, help="Listen address (default: [server] host).")
@click.option("--port", type=int, default=None, help="Listen port (default: [server] port).")
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Run the gateway until SIGINT/SIGTERM; in-flight requests finish and commit."""
    import uvicorn

    from hookgate.app import create_app
    from hookgate.logs import configure

    config = _config(config_path)
    configure(config.logging)
    store = make_store(config.storage)
    if not config.storage.auto_migrate:
        try:
            pending = asyncio.run(store.pending_migrations())
        except StoreError as exc:
            raise click.ClickException(f"storage: {exc}") from None
        if pending:
            raise click.ClickException(
                f"the database lacks migrations {pending}: run `hookgate migrate"
                f"{' --config ' + config_path if config_path else ''}` first"
            )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host or config.server.host,
            port=port if port is not None else config.server.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=config.server.access_log,
            log_config=None,
            timeout_graceful_shutdown=int(config.server.graceful_timeout_seconds),
            server_header=False,
        )
    )
    # uvicorn re-raises the stop signal once it has shut down cleanly; a graceful stop on
    # SIGTERM/SIGINT is a success, so let that re-raise land on a no-op handler.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    server.run()
    if not server.started:
        sys.exit(1)


@main.command()
@config_option
def migrate(config_path: str | None) -> None:
    """Apply pending schema migrations."""
    config = _config(config_path)
    try:
        applied = asyncio.run(make_store(config.storage).migrate())
    except StoreError as exc:
        raise click.ClickException(f"storage: {exc}") from None
    click.echo(f"applied migrations {applied}" if applied else "schema is up to date")


@main.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Validate the configuration and list the sources."""
    config = _config(config_path)
    click.echo(f"{find_config(config_path)}: valid")
    for source in config.sources:
        state = "ok" if source.credentials() else "NO CREDENTIALS: rejects every call"
        click.echo(f"  {source.name:<20} {source.provider:<9} {state}")


STARTER = """\
# hookgate configuration, written by `hookgate init`.
# Secrets are inline so the gateway runs as is; in production write "${{ENV_VAR}}" instead.

[server]
host = "127.0.0.1"
port = {port}
max_body_bytes = 1048576

[storage]
url = "sqlite:///{db}"

[admin]
tokens = ["{admin}"]

[logging]
level = "info"
format = "console"

[[sources]]
name = "zaptec"
provider = "zaptec"
auth = "oauth"
username = "zaptec"
password = "{zaptec}"
unknown_token = "deny"
on_error = "deny"

[[sources]]
name = "ampeco"
provider = "ampeco"
# Replace with the AMPECO API token used to create the notification subscription.
secrets = ["{ampeco}"]

[[sources]]
name = "easypark"
provider = "easypark"
auth = "basic"
username = "easypark"
password = "{easypark}"
on_invalid = "reject"

[[sources]]
name = "ztlment"
provider = "ztlment"
# Replace with the secret ZTLment returns when the webhook is created.
secrets = ["{ztlment}"]
"""


@main.command()
@click.option(
    "--path",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write (default: $HOOKGATE_CONFIG, else ./hookgate.toml).",
)
@click.option("--public-url", default=None, help="URL providers use to reach this gateway.")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--db", default="hookgate.db", show_default=True, help="SQLite file.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--if-missing", is_flag=True, help="Do nothing when the file exists.")
def init(
    path: str | None, public_url: str | None, port: int, db: str, force: bool, if_missing: bool
) -> None:
    """Write a starter configuration with fresh secrets and create the database."""
    target = find_config(path)
    if target.exists() and if_missing:
        click.echo(f"{target} exists; leaving it as it is")
        return
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists: pass --force to overwrite it")
    values = {
        name: secrets.token_urlsafe(24)
        for name in ("admin", "zaptec", "ampeco", "easypark", "ztlment")
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(STARTER.format(port=port, db=db, **values), encoding="utf-8")
    os.chmod(target, 0o600)
    config = load_config(target)
    asyncio.run(make_store(config.storage).migrate())
    url = (public_url or f"http://127.0.0.1:{port}").rstrip("/")
    click.echo(f"wrote {target} (mode 600) and created {db}\n")
    click.echo(
        f"""Enter in each provider's portal:

Zaptec  (Portal > Installation > Authentication > Webhook authentication)
  Authentication URL      {url}/hooks/zaptec/oauth/token
  Authentication payload  grant_type=password&username=zaptec&password={values["zaptec"]}
  Session start URL       {url}/hooks/zaptec/session-start
  Session end URL         {url}/hooks/zaptec/session-end

AMPECO  (Back office > Notifications, or API Notifications / Subscribe)
  Callback URL            {url}/hooks/ampeco
  Put the API token of the subscription into sources "ampeco" secrets.

EasyPark Fleet  (partner endpoint registration)
  Endpoint                {url}/hooks/easypark
  HTTP Basic              easypark / {values["easypark"]}

ZTLment  (Create Payment Webhook, object_type [PAYMENT_OBJECT, APPROVAL_OBJECT])
  Endpoint                {url}/hooks/ztlment
  Put the secret ZTLment returns into sources "ztlment" secrets.

Admin API token           {values["admin"]}
Start with: hookgate serve{" --config " + str(target) if path else ""}"""
    )


# -- events / rejections --------------------------------------------------------------


@main.group()
def events() -> None:
    """Inspect the inbox."""


@events.command("list")
@config_option
@click.option("--source", default=None)
@click.option("--provider", default=None)
@click.option("--type", "event_type", default=None)
@click.option("--status", default=None)
@click.option("--since", default=None, help="ISO 8601 date-time.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", default=None, help="`next` of a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
def events_list(
    config_path: str | None,
    source: str | None,
    provider: str | None,
    event_type: str | None,
    status: str | None,
    since: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Newest events first."""
    try:
        since_at = parse_iso(since) if since else None
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date-time", param_hint="--since") from None
    where = EventFilter(
        source=source, provider=provider, event_type=event_type, status=status, since=since_at
    )
    page = asyncio.run(
        _with_store(_config(config_path), lambda s: s.list_events(where, cursor, limit))
    )
    if as_json:
        _print_json({"items": page.items, "next": page.next})
        return
    for item in page.items:
        flags = ",".join(item["flags"])
        click.echo(
            f"{item['id']}  {item['received_at'][:19]}  {item['source']:<14} "
            f"{item['type']:<36} {item['status']:<11} {flags}"
        )
    if page.next:
        click.echo(f"more: --cursor {page.next}")


@events.command("show")
@config_option
@click.argument("event_id")
def events_show(config_path: str | None, event_id: str) -> None:
    """One event with its raw body."""
    item = asyncio.run(_with_store(_config(config_path), lambda s: s.get_event(event_id)))
    if item is None:
        raise click.ClickException(f"no event with id {event_id}")
    raw = item.pop("raw_body")
    try:
        item["raw_body"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        item["raw_body_hex"] = raw.hex()
    _print_json(item)


@main.group()
def rejections() -> None:
    """Inspect refused requests."""


@rejections.command("list")
@config_option
@click.option("--source", default=None)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def rejections_list(config_path: str | None, source: str | None, limit: int, as_json: bool) -> None:
    """Newest rejections first."""
    page = asyncio.run(
        _with_store(_config(config_path), lambda s: s.list_rejections(source, None, limit))
    )
    if as_json:
        for item in page.items:
            item["body"] = item["body"].decode("utf-8", "replace")
        _print_json({"items": page.items, "next": page.next})
        return
    for item in page.items:
        click.echo(
            f"{item['id']}  {item['received_at'][:19]}  {item['source']:<14} "
            f"{item['status']}  {item['reason']:<22} {item['detail']}"
        )


# -- send (emulators) -----------------------------------------------------------------


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
        if provider == "ampeco":
            if event not in (None, "session", "all"):
                from hookgate.emulate.ampeco_samples import NAMES

                if event not in NAMES:
                    raise click.BadParameter(
                        f"unknown AMPECO event {event!r}; one of: session, all, "
                        + ", ".join(NAMES),
                        param_hint="EVENT",
                    )
            return lambda c: ampeco.run(
                c,
                url,
                name,
                secret=key,
                event=event,
                count=opts["count"],
                duplicate=opts["duplicate"],
                encoding=opts["encoding"] or "hex",
            )
        return lambda c: ztlment.run(
            c,
            url,
            name,
            secret=key,
            event=event,
            count=opts["count"],
            duplicate=opts["duplicate"],
            encoding=opts["encoding"] or "base64",
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


if __name__ == "__main__":  # pragma: no cover
    main()
