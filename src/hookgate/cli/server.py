"""serve, migrate, check-config, init."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import secrets
import signal
import socket
import sys
from typing import IO
from urllib.parse import urlsplit

import click
import structlog

from hookgate.bootstrap import bootstrap
from hookgate.cli.common import (
    _config,
    _config_all,
    _config_file,
    config_option,
    error_message,
    main,
)
from hookgate.config import (
    PLACEHOLDER,
    Config,
    find_config,
    load_config,
)
from hookgate.domain.errors import StoreError
from hookgate.providers import REGISTRY, provider_of


def _serving_lock(config: Config) -> IO[str] | None:
    """Hold `<db>.lock` for the life of this process: SQLite allows one serving process per
    file (a `hookgate worker` may share it, and does not take the lock)."""
    database = config.storage.sqlite_file()
    if database is None:
        return None
    path = f"{database}.lock"
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise click.ClickException(
            f"another hookgate serve (pid {holder}) is serving {database}: SQLite allows one "
            "serving process per database file (see docs/deployment.md; use PostgreSQL to "
            "run several)"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket before anything is loaded or started, so a busy port fails
    at once instead of after the start-up work (and its delivery attempts)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = (
            "the address is in use (is another hookgate serve running? pass --port or change "
            "[server] port)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror
        )
        raise click.ClickException(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


@main.command()
@config_option
@click.option("--host", default=None, help="Listen address (default: [server] host).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Listen port (default: [server] port).",
)
def serve(config_path: str | None, host: str | None, port: int | None) -> None:
    """Run the gateway until SIGINT/SIGTERM; in-flight requests finish and commit."""
    import uvicorn

    from hookgate.app import create_app
    from hookgate.ingress.edge import uvicorn_options
    from hookgate.logs import configure, dict_config

    config = _config_all(config_path)
    configure(config.logging)
    try:
        graph = bootstrap(config)
        store = graph.store
        if not config.storage.auto_migrate:
            try:
                pending = asyncio.run(store.pending_migrations())
            except StoreError as exc:
                raise click.ClickException(error_message(exc)) from None
            advice = (
                f"run `hookgate migrate{' --config ' + config_path if config_path else ''}` first"
            )
            database = config.storage.sqlite_file()
            if database is not None and not os.path.exists(database):
                raise click.ClickException(f"there is no database at {database}: {advice}")
            if pending:
                raise click.ClickException(f"the database lacks migrations {pending}: {advice}")
        lock = _serving_lock(config)
        listen_host = host or config.server.host
        listen_port = port if port is not None else config.server.port
        sock = _listen(listen_host, listen_port)
    except click.ClickException as exc:
        if config.logging.format != "json":
            raise
        # Once the file is read, every line follows [logging] format, refusals included.
        structlog.get_logger("hookgate").error("serve refused", reason=exc.format_message())
        sys.exit(1)
    # uvicorn names the address only when it binds the socket itself.
    structlog.get_logger("hookgate").info(
        "listening", address=f"http://{listen_host}:{sock.getsockname()[1]}"
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config, graph),
            host=listen_host,
            port=listen_port,
            loop="uvloop",
            lifespan="on",
            access_log=config.server.access_log,
            proxy_headers=config.server.proxy_headers,
            forwarded_allow_ips=config.server.forwarded_allow_ips,
            # The same handler and renderer as hookgate's own lines (JSON or console).
            log_config=dict_config(config.logging),
            timeout_graceful_shutdown=int(config.server.graceful_timeout_seconds),
            server_header=False,
            # httptools with header caps, request deadlines, an idle timeout and a
            # connection cap; upgrades other than WebSocket ignored (ingress/edge.py).
            **uvicorn_options(config.server, config.sources),
        )
    )
    # uvicorn re-raises the stop signal once it has shut down cleanly; a graceful stop on
    # SIGTERM/SIGINT is a success, so let that re-raise land on a no-op handler.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    server.run(sockets=[sock])
    if lock is not None:
        lock.close()
    if not server.started:
        sys.exit(1)


@main.command()
@config_option
def migrate(config_path: str | None) -> None:
    """Apply pending schema migrations (creating the SQLite file when there is none)."""
    config = _config(config_path, "storage")
    applied = asyncio.run(bootstrap(config).store.migrate())
    click.echo(f"applied migrations {applied}" if applied else "schema is up to date")


@main.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Validate the configuration and list the sources; exits non-zero when a variable is
    not set or a source has no credentials (it would refuse every call)."""
    loaded = _config_file(config_path)
    config = loaded.config
    problems = [
        f"{loaded.located(path)}: {path}: environment variable {name} is not set"
        for path, name in loaded.missing.items()
    ]
    for warning in loaded.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{loaded.path}: {'valid' if not problems else 'not usable'}")
    for source in config.sources:
        credentials = source.credentials()
        if not credentials:
            state = "NO CREDENTIALS: refuses every call"
            problems.append(
                f'sources["{source.name}"]: no credentials (empty or unset), so every call '
                "would be refused"
            )
        elif any(secret.startswith(PLACEHOLDER) for secret in credentials):
            issuer = provider_of(source).secret_issuer
            state = f"PLACEHOLDER secret: replace {PLACEHOLDER}... with {issuer}"
        else:
            state = "ok"
        click.echo(f"  {source.name:<20} {source.provider:<9} {state}")
    if problems:
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        raise click.ClickException(f"{len(problems)} problem(s) in {loaded.path}")


@main.command("admin-token")
@config_option
@click.option("--name", default=None, help="The token of this name (default: the first).")
def admin_token(config_path: str | None, name: str | None) -> None:
    """Print an admin API token, for scripts: TOKEN=$(hookgate admin-token)."""
    config = _config(config_path, "admin")
    tokens = config.admin.named()
    if not tokens:
        raise click.ClickException(
            f"{find_config(config_path)} has no admin token: add one to [admin] tokens, "
            'e.g. tokens = ["${HOOKGATE_ADMIN_TOKEN}"]'
        )
    if name is not None:
        chosen = [t for t in tokens if t.name == name]
        if not chosen:
            names = ", ".join(t.name for t in tokens)
            raise click.ClickException(f"no admin token named {name!r} (configured: {names})")
        tokens = chosen
    click.echo(tokens[0].token)


PLACEHOLDER_URL = "https://hookgate.example.com"

STARTER = """\
# hookgate configuration, written by `hookgate init`.
# Secrets are inline so the gateway runs as is; in production write "${{ENV_VAR}}" instead.
# Values starting with {placeholder} are placeholders: replace them (see `hookgate check-config`).

[server]
host = "127.0.0.1"
port = {port}
max_body_bytes = 1048576
# The URL providers reach this gateway at (behind your TLS proxy or load balancer).
public_url = "{public_url}"

[storage]
url = "sqlite:///{db}"

[admin]
tokens = ["{admin}"]

[logging]
level = "info"
# "json" for a log shipper (every line one JSON object); "console" for reading.
format = "console"
# One line per accepted webhook (source, event id, status, duration).
access_log = false

{sources}# Events are projected into the views and delivered by workers inside `hookgate serve`;
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


def portal_steps(url: str, values: dict[str, str], config_name: str) -> str:
    """What to enter at each provider, with this gateway's URL and secrets."""
    steps = [
        f"{number}. {cls.portal(url, values[name], config_name)}"
        for number, (name, cls) in enumerate(REGISTRY.items(), 1)
    ]
    return (
        "\n\n".join(steps)
        + f"\n\nAdmin API token  {values['admin']}   (later: hookgate admin-token)"
    )


def starter(port: int, db: str, public_url: str, values: dict[str, str]) -> str:
    """The configuration `hookgate init` writes: STARTER with every provider's source."""
    sources = "".join(cls.starter(values[name]) + "\n" for name, cls in REGISTRY.items())
    return STARTER.format(
        port=port,
        db=db,
        public_url=public_url,
        placeholder=PLACEHOLDER,
        admin=values["admin"],
        sources=sources,
    )


def _interactive() -> bool:
    """Whether someone can answer a question (stdin is a terminal, not a pipe or CI)."""
    return sys.stdin.isatty()


def _ask_public_url(given: str | None) -> tuple[str, bool]:
    """The public URL and whether it is the placeholder; asks only on a terminal."""
    if given is None and _interactive():
        given = click.prompt(
            "Public HTTPS URL providers reach this gateway at (Enter: a placeholder to edit later)",
            default=PLACEHOLDER_URL,
        )
    url = (given or PLACEHOLDER_URL).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise click.ClickException(
            f"--public-url {url!r}: give the full URL providers use, e.g. {PLACEHOLDER_URL}"
        )
    return url, url == PLACEHOLDER_URL


@main.command()
@click.option(
    "--path",
    "path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write (default: $HOOKGATE_CONFIG, else ./hookgate.toml).",
)
@click.option(
    "--public-url",
    default=None,
    help=f"URL providers use to reach this gateway (asked on a terminal; else {PLACEHOLDER_URL}).",
)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--db", default="hookgate.db", show_default=True, help="SQLite file.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing when the file exists (for scripts that start the server next, like make run).",
)
def init(
    path: str | None, public_url: str | None, port: int, db: str, force: bool, if_missing: bool
) -> None:
    """Write a starter configuration with fresh secrets, create the database, and print what
    to enter at each provider."""
    target = find_config(path)
    if target.exists() and if_missing:
        click.echo(f"{target} exists; leaving it as it is")
        return
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists: pass --force to overwrite it")
    url, placeholder = _ask_public_url(public_url)
    values = {"admin": secrets.token_urlsafe(24)}
    for name, cls in REGISTRY.items():
        label = cls.init_placeholder
        values[name] = (
            secrets.token_urlsafe(24)
            if label is None
            else f"{PLACEHOLDER}{label}-{secrets.token_urlsafe(12)}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        starter(port, db, url, values),
        encoding="utf-8",
    )
    os.chmod(target, 0o600)
    config = load_config(target)
    asyncio.run(bootstrap(config).store.migrate())
    click.echo(f"wrote {target} (mode 600) and created {db}\n")
    if placeholder:
        click.echo(
            f"PUBLIC URL IS A PLACEHOLDER: {PLACEHOLDER_URL} stands for the HTTPS address "
            "providers reach\nthis gateway at. Replace it below and in [server] public_url "
            "(or run init again with --public-url).\n"
        )
    elif url.startswith("http://"):
        click.echo(f"note: {url} is plain HTTP; providers require HTTPS in production.\n")
    click.echo("Enter at each provider:\n")
    click.echo(portal_steps(url, values, str(target)))
    if not if_missing:
        config_flag = f" --config {target}" if path else ""
        click.echo(f"\nThen start the gateway: hookgate serve{config_flag}")
