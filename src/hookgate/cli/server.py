"""serve, migrate, check-config, init."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys

import click

from hookgate.cli.common import (
    _config,
    config_option,
    main,
)
from hookgate.config import (
    find_config,
    load_config,
)
from hookgate.store import StoreError, make_store


@main.command()
@config_option
@click.option("--host", default=None, help="Listen address (default: [server] host).")
@click.option("--port", type=int, default=None, help="Listen port (default: [server] port).")
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Run the gateway until SIGINT/SIGTERM; in-flight requests finish and commit."""
    import uvicorn

    from hookgate.app import create_app
    from hookgate.logs import configure, dict_config

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
            # The same handler and renderer as hookgate's own lines (JSON or console).
            log_config=dict_config(config.logging),
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

# Events are projected into the views and delivered by workers inside `hookgate serve`;
# set in_process = false and run `hookgate worker` to keep that work in its own process.
[processing]
in_process = true

# Deliver every accepted event to your own systems as a CloudEvent, signed per Standard
# Webhooks. Uncomment and fill in; see docs/delivery.md.
# [[destinations]]
# name = "erp"
# kind = "http"
# url = "https://erp.example.com/hookgate"
# secret = "whsec_..."            # verify with any Standard Webhooks library
# providers = ["easypark", "ampeco"]
# max_attempts = 12
# initial_backoff_seconds = 5
# max_backoff_seconds = 3600
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
