"""Command line: serve, init, migrate, events, rejections, send (provider emulators),
tokens (charge-token management) and decide (a dry-run charging decision)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

import click
import httpx
import msgspec

from hookgate import __version__
from hookgate.admin.api import ApiError
from hookgate.admin.rules import (
    TOKENS,
    budgets_of,
    check_references,
    document,
    scan,
    usage,
    validate,
)
from hookgate.authorization.csv_import import (
    ImportReport,
    import_tokens,
    parse_instant,
    parse_kwh,
    read_csv,
)
from hookgate.authorization.model import Budget, Token, budget_id, normalise_uid
from hookgate.authorization.outcome import Outcome
from hookgate.authorization.service import (
    AuthorizationService,
    entity_key,
    from_entity,
    to_entity,
)
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
from hookgate.providers.base import StartRequest
from hookgate.store import SchemaOutdated, Store, StoreError, make_store
from hookgate.store.base import AuthEntity, EventFilter
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
            proxy_headers=config.server.proxy_headers,
            forwarded_allow_ips=config.server.forwarded_allow_ips,
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


# -- tokens / decide -------------------------------------------------------------------


def _zaptec_names(config: Config) -> list[str]:
    return [s.name for s in config.sources if isinstance(s, ZaptecSource)]


def _store_run(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    return asyncio.run(_with_store(config, work))


def _config_token(config_path: str | None, uid: str) -> click.ClickException:
    return click.ClickException(
        f"token {uid} is managed by the configuration file {find_config(config_path)} "
        "([[authorization.tokens]]): edit the file there and restart hookgate"
    )


async def _token_entity(
    store: Store, config: Config, config_path: str | None, uid: str, *, writable: bool
) -> tuple[AuthEntity, Token]:
    """A stored token, or a CLI error saying what to do; `writable` refuses config tokens."""
    stored = await store.auth_get("token", uid)
    in_file = any(t.uid == uid for t in config.authorization.tokens)
    if writable and (in_file or (stored is not None and stored.managed_by == "config")):
        raise _config_token(config_path, uid)
    if stored is None and in_file:
        # Listed in the file but not stored yet (no server has started on it).
        stored = to_entity("token", next(t for t in config.authorization.tokens if t.uid == uid))
    if stored is None:
        raise click.ClickException(
            f"there is no token {uid}: `hookgate tokens list` shows the known tokens"
        )
    token = from_entity("token", stored.doc)
    assert isinstance(token, Token)
    return stored, token


async def _live_engine(store: Store, config: Config) -> AuthorizationService:
    """The engine as a server on this configuration would hold it, loaded read-only: the
    stored rules with this file's [authorization] rules laid over them in memory."""
    from hookgate.logs import configure

    quiet = "error" if config.logging.level == "error" else "warning"
    configure(msgspec.structs.replace(config.logging, level=quiet))  # logs go to stderr
    service = AuthorizationService(store, config.authorization)
    await service.reload()
    engine = service.engine
    settings = config.authorization
    wanted: dict[tuple[str, str], Any] = {
        (kind, entity_key(kind, item)): item
        for kind, items in (
            ("group", settings.groups),
            ("charger", settings.chargers),
            ("token", settings.tokens),
            ("budget", settings.budgets),
        )
        for item in items
    }
    tables: dict[str, dict[str, Any]] = {
        "group": engine.groups,
        "charger": engine.chargers,
        "token": engine.tokens,
        "budget": engine.budgets,
    }
    for kind, table in tables.items():
        for key, item in list(table.items()):
            if item.managed_by == "config" and (kind, key) not in wanted:
                engine.put(kind, key, None)
    for (kind, key), item in wanted.items():
        engine.put(kind, key, item)
    return service


def _rule_error(exc: ApiError) -> click.ClickException:
    return click.ClickException(exc.detail)


def _instant_option(value: str | None, flag: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _kwh_budgets(uid: str, limits: dict[str, Decimal | None]) -> list[Budget]:
    return [
        Budget(
            id=budget_id("token", uid, "kwh", period),
            subject="token",
            subject_id=uid,
            metric="kwh",
            period=period,  # type: ignore[arg-type]
            limit=limit,
        )
        for period, limit in limits.items()
        if limit is not None
    ]


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
    except ApiError as exc:
        raise _rule_error(exc) from None
    assert isinstance(token, Token)
    limits = {"day": kwh_per_day, "week": kwh_per_week, "month": kwh_per_month}
    budgets = _kwh_budgets(token.uid, limits)

    async def work(store: Store) -> list[str]:
        stored = await store.auth_get("token", token.uid)
        if (stored is not None and stored.managed_by == "config") or any(
            t.uid == token.uid for t in config.authorization.tokens
        ):
            raise _config_token(config_path, token.uid)
        if stored is not None and not replace:
            raise click.ClickException(
                f"token {token.uid} exists: pass --replace to overwrite it, or use "
                "`hookgate tokens block|unblock|remove`"
            )
        try:
            await check_references(
                store,
                TOKENS,
                token,
                _zaptec_names(config),
                [g.id for g in config.authorization.groups],
            )
        except ApiError as exc:
            raise _rule_error(exc) from None
        stale = []
        for period, limit in limits.items():
            key = budget_id("token", token.uid, "kwh", period)
            existing = await store.auth_get("budget", key)
            if existing is not None and existing.managed_by == "config":
                raise click.ClickException(
                    f"budget {key} is managed by the configuration file "
                    f"{find_config(config_path)}: edit it there"
                )
            if existing is not None and limit is None:
                stale.append(key)
        await store.auth_write(
            [to_entity("token", token), *(to_entity("budget", b) for b in budgets)],
            [("budget", key) for key in stale],
        )
        return stale

    stale = _store_run(config, work)
    verb = "replaced" if replace else "added"
    extra = "".join(f", {b.period} budget {b.limit} kWh" for b in budgets)
    click.echo(f"{verb} token {token.uid} ({token.status}{extra})")
    if stale:
        click.echo(f"removed budgets {', '.join(stale)}")


@tokens.command("list")
@config_option
@click.option("--group", "group_id", default=None, help="Only tokens of this group.")
@click.option("--status", type=click.Choice(["valid", "blocked"]), default=None)
@click.option("--json", "as_json", is_flag=True, help='Print {"items": [...]} as JSON.')
def tokens_list(
    config_path: str | None, group_id: str | None, status: str | None, as_json: bool
) -> None:
    """Every token in uid order (with those the configuration file lists)."""
    config = _config(config_path)
    stored = {e.key: e for e in _store_run(config, lambda s: scan(s, "token"))}
    for listed in config.authorization.tokens:  # not stored yet when no server has started
        stored.setdefault(listed.uid, to_entity("token", listed))
    items = []
    for key in sorted(stored):
        entity = stored[key]
        token = from_entity("token", entity.doc)
        assert isinstance(token, Token)
        if (group_id and token.group_id != group_id) or (status and token.status != status):
            continue
        items.append(document(token, entity.managed_by))
    if as_json:
        _print_json({"items": items})
        return
    click.echo(
        f"{'UID':<22} {'STATUS':<8} {'TYPE':<11} {'GROUP':<14} {'WHITELIST':<15} "
        f"{'VALID UNTIL':<25} {'MANAGED':<7} LABEL"
    )
    for doc in items:
        click.echo(_token_line(doc))
    click.echo(f"{len(items)} token(s)")


@tokens.command("show")
@config_option
@click.argument("uid")
@click.option("--json", "as_json", is_flag=True)
def tokens_show(config_path: str | None, uid: str, as_json: bool) -> None:
    """One token with the budgets that limit it and their current usage."""
    config = _config(config_path)
    key = normalise_uid(uid)

    async def work(store: Store) -> dict[str, Any]:
        stored, token = await _token_entity(store, config, config_path, key, writable=False)
        service = await _live_engine(store, config)
        now = service.clock()
        budgets = []
        owners = [("token", token.uid)] + ([("group", token.group_id)] if token.group_id else [])
        for subject, subject_id in owners:
            for owned, budget in await budgets_of(store, subject, subject_id):
                budgets.append(
                    {
                        **document(budget, owned.managed_by),
                        **usage(service.engine, budget, now),
                    }
                )
        count, held = service.engine.reserved(("token", token.uid), now)
        return {
            "token": document(token, stored.managed_by),
            "budgets": budgets,
            "active_sessions": count,
            "reserved_kwh": str(held),
        }

    shown = _store_run(config, work)
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

    async def work(store: Store) -> bool:
        _, token = await _token_entity(store, config, config_path, key, writable=True)
        if token.status == status:
            return False
        token.status = status  # type: ignore[assignment]
        await store.auth_put([to_entity("token", token)])
        return True

    changed = _store_run(config, work)
    word = "blocked" if status == "blocked" else "unblocked"
    click.echo(f"{word} token {key}" if changed else f"token {key} was already {status}")


@tokens.command("block")
@config_option
@click.argument("uid")
def tokens_block(config_path: str | None, uid: str) -> None:
    """Refuse every start with this token (BLOCKED)."""
    _set_status(config_path, uid, "blocked")


@tokens.command("unblock")
@config_option
@click.argument("uid")
def tokens_unblock(config_path: str | None, uid: str) -> None:
    """Let a blocked token charge again."""
    _set_status(config_path, uid, "valid")


@tokens.command("remove")
@config_option
@click.argument("uid")
def tokens_remove(config_path: str | None, uid: str) -> None:
    """Delete a token and its budgets (it becomes UNKNOWN)."""
    config = _config(config_path)
    key = normalise_uid(uid)

    async def work(store: Store) -> int:
        await _token_entity(store, config, config_path, key, writable=True)
        owned = [
            ("budget", entity.key)
            for entity, _ in await budgets_of(store, "token", key)
            if entity.managed_by != "config"
        ]
        return await store.auth_write([], [("token", key), *owned]) - 1

    removed = _store_run(config, work)
    click.echo(f"removed token {key} and {removed} budget(s)")


@tokens.command("import")
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check every row and report; write nothing.")
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
    parsed = read_csv(text, known_sources=_zaptec_names(config))

    async def work(store: Store) -> ImportReport:
        return await import_tokens(
            store,
            parsed.tokens,
            parsed.budgets,
            lines=parsed.lines,
            columns=parsed.columns,
            config_uids=[t.uid for t in config.authorization.tokens],
            config_groups=[g.id for g in config.authorization.groups],
            dry_run=dry_run or bool(parsed.errors),
        )

    report = _store_run(config, work)
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
    config = _config(config_path)
    source = config.source(source_name)
    names = ", ".join(_zaptec_names(config)) or "none"
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

    async def work(store: Store) -> Outcome:
        service = await _live_engine(store, config)
        request = StartRequest(charger, token, user_id, installation)
        return service.engine.decide(source, request, moment or service.clock(), reserve=False)

    outcome = _store_run(config, work)
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


if __name__ == "__main__":  # pragma: no cover
    main()
