"""send: act as a provider towards a running gateway (the emulators)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
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
    ServerConfig,
    SourceConfig,
    ZaptecSource,
    ZtlmentSource,
    find_config,
    source_key,
)
from hookgate.emulate.base import OBSERVER, Sent


def _source_for(config_path: str | None, name: str, provider: str) -> SourceConfig | None:
    """The source's credentials from the configuration, when one is found."""
    target = find_config(config_path)
    if not target.exists():
        return None
    source = _config(config_path, source_key(name)).source(name)
    if source is not None and source.provider != provider:
        raise click.ClickException(f"source {name!r} is a {source.provider} source, not {provider}")
    return source


def _need(value: str | None, what: str, flag: str, name: str) -> str:
    if not value:
        raise click.ClickException(
            f"no {what} for source {name!r}: pass {flag} or --config with that source"
        )
    return value


# Requests of one run beyond which lines are shown only for refusals, with progress.
_LINES_UP_TO = 20
_REFUSALS_SHOWN = 10


def _denied(sent: Sent) -> bool:
    """A Zaptec start answered "not authorized": the gateway decided, the call got through."""
    return (
        sent.provider == "zaptec"
        and isinstance(sent.response, dict)
        and sent.response.get("authorized") is False
    )


def _outcome(sent: Sent) -> str:
    if sent.ok:
        return "accepted"
    if sent.status is not None and _denied(sent):
        return "denied"
    return "refused" if sent.status is not None else "failed"


class _Report:
    """Prints each request as it is answered (the emulators report through OBSERVER), or a
    progress line for long runs, and keeps the counts for the summary and the exit code."""

    def __init__(self, provider: str, mode: str, expected: int) -> None:
        self.provider = provider
        self.mode = mode  # lines | json | progress | quiet
        self.expected = expected
        self.outcomes: dict[str, int] = {}
        self.statuses: dict[str, int] = {}
        self.done = 0
        self.shown_refusals = 0
        self.next_mark = 10
        self.last_progress = time.monotonic()

    def _line(self, sent: Sent) -> str:
        shown = sent.error or _pretty.encode(sent.response).decode()[:160]
        return f"{self.provider:<9} {sent.label:<44} -> {sent.status or 'ERR'}  {shown}"

    def sent(self, sent: Sent) -> None:
        self.done += 1
        outcome = _outcome(sent)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        key = str(sent.status) if sent.status is not None else "error"
        self.statuses[key] = self.statuses.get(key, 0) + 1
        if self.mode == "json":
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
        elif self.mode == "lines":
            click.echo(self._line(sent))
        elif self.mode == "progress":
            if outcome in ("refused", "failed") and self.shown_refusals < _REFUSALS_SHOWN:
                self.shown_refusals += 1
                click.echo(self._line(sent))
            now = time.monotonic()
            if self.done >= self.next_mark or now - self.last_progress >= 2:
                # At 10, 20, 50, 100, 200, 500, ... requests, and at least every 2 s.
                while self.next_mark <= self.done:
                    grow = 2.5 if str(self.next_mark)[0] == "2" else 2
                    self.next_mark = int(self.next_mark * grow)
                self.last_progress = now
                click.echo(f"progress: {self.done} requests ({self._counts()})", err=True)

    def retrying(self, sent: Sent, attempt: int, max_attempts: int, delay: float) -> None:
        if self.mode == "quiet":
            return
        reason = sent.status if sent.status is not None else (sent.error or "error")
        click.echo(
            f"{self.provider:<9} {sent.label:<44} -> {reason}, "
            f"retry {attempt}/{max_attempts - 1} in {delay:g} s",
            err=True,
        )

    def _counts(self) -> str:
        order = ("accepted", "denied", "refused", "failed")
        return ", ".join(f"{self.outcomes[k]} {k}" for k in order if self.outcomes.get(k))

    def summary(self, results: list[Sent]) -> str:
        """`sent N (status: count, ...)` of the deliveries after any retries, then what
        became of them and how many requests that took."""
        final: dict[str, int] = {}
        statuses: dict[str, int] = {}
        for sent in results:
            final[_outcome(sent)] = final.get(_outcome(sent), 0) + 1
            key = str(sent.status) if sent.status is not None else "error"
            statuses[key] = statuses.get(key, 0) + 1
        order = ("accepted", "denied", "refused", "failed")
        outcomes = ", ".join(f"{final[k]} {k}" for k in order if final.get(k)) or "nothing sent"
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
        return f"sent {len(results)} ({counts})\n{outcomes} in {self.done} request(s)"


def _default_url(config_path: str | None) -> str:
    """The gateway this configuration serves: [server] host and port."""
    target = find_config(config_path)
    server = _config(config_path, "server").server if target.exists() else ServerConfig()
    host = server.host
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - a listen-everywhere address
        host = "127.0.0.1" if host != "::" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


@main.command()
@config_option
@click.argument("provider", type=click.Choice(["zaptec", "ampeco", "easypark", "ztlment"]))
@click.argument("event", required=False)
@click.option(
    "--url",
    default=None,
    help="Base URL of the gateway (default: http://[server] host:port of the configuration).",
)
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
@click.option(
    "--provider-retries",
    is_flag=True,
    help="Retry refused EasyPark deliveries as EasyPark does: every hour, 24 attempts "
    "(default: one attempt, so a mistake shows at once).",
)
@click.option(
    "--retry-interval",
    type=click.FloatRange(0),
    default=None,
    help="Seconds between EasyPark attempts [3600].",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(1),
    default=None,
    help="EasyPark attempts per transaction [1; 24 with --provider-retries].",
)
@click.option(
    "--at",
    "at_text",
    default=None,
    metavar="ISO8601",
    help="When the emulated events happen, with a UTC offset, e.g. 2026-03-01T09:00:00Z "
    "(default: now; sessions and parkings end just before it).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per request.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary line.")
def send(
    config_path: str | None,
    provider: str,
    event: str | None,
    url: str | None,
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
    provider_retries: bool,
    retry_interval: float | None,
    max_attempts: int | None,
    at_text: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Act as PROVIDER towards a running gateway.

    \b
    zaptec   [cycle]                  token (or Basic), session start, session end
    ampeco   [session|all|<type>]     signed notifications (default: a session lifecycle)
    easypark [parking]                parking transactions (retried with --provider-retries)
    ztlment  [payment|approval|STATE] an object walked through its states

    Each request is printed as it is answered. Exits 0 when every request was accepted
    (2xx, a 409 duplicate, or a Zaptec "not authorized" decision), 1 otherwise.
    """
    if url is not None and not url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"{url!r}: give the gateway's base URL, e.g. http://127.0.0.1:8000", param_hint="--url"
        )
    name = source_name or provider
    configured = _source_for(config_path, name, provider)
    base_url = url or _default_url(config_path)
    runner = _emulator(
        provider,
        event,
        base_url,
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
        retry_interval=3600.0 if retry_interval is None else retry_interval,
        max_attempts=max_attempts or (24 if provider_retries else 1),
        at=_moment(at_text),
    )
    expected = count * (2 if duplicate else 1)
    if quiet:
        mode = "quiet"
    elif as_json:
        mode = "json"
    else:
        mode = "lines" if expected <= _LINES_UP_TO else "progress"
    report = _Report(provider, mode, expected)

    async def go() -> list[Sent]:
        OBSERVER.set(report)
        async with httpx.AsyncClient(timeout=30) as client:
            return await runner(client)

    try:
        results = asyncio.run(go())
    except KeyboardInterrupt:
        click.echo(f"interrupted after {report.done} requests ({report._counts()})", err=True)
        sys.exit(130)
    click.echo(report.summary(results), err=as_json)
    if any(_outcome(s) in ("refused", "failed") for s in results) or not results:
        if not quiet and report.statuses.get("404"):
            click.echo(f"404: is there a source {name!r} at {base_url}?", err=True)
        if not quiet and report.statuses.get("401"):
            click.echo(
                f"401: the credentials differ from source {name!r} of the gateway's "
                "configuration (pass --config of the running gateway)",
                err=True,
            )
        if not quiet and report.statuses.get("error"):
            click.echo(f"no answer from {base_url}: is `hookgate serve` running?", err=True)
        sys.exit(1)


def _moment(text: str | None) -> datetime | None:
    """`--at` as an aware instant; None (now) when not given."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 date-time; e.g. 2026-03-01T09:00:00Z",
            param_hint="--at",
        ) from None
    if moment.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} has no UTC offset; add Z or +01:00, e.g. 2026-03-01T09:00:00Z",
            param_hint="--at",
        )
    return moment.astimezone(UTC)


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
            at=opts["at"],
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
        if provider == "ampeco":
            return lambda c: ampeco.run(
                c,
                url,
                name,
                secret=key,
                event=event,
                count=opts["count"],
                duplicate=opts["duplicate"],
                encoding=opts["encoding"] or "hex",
                at=opts["at"],
            )
        # ZTLment bodies carry no time of their own.
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
        at=opts["at"],
        **creds,
    )
