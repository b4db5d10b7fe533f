"""worker: the processing and delivery loops without the HTTP server."""

from __future__ import annotations

import asyncio
import os
import signal

import structlog

from hookgate.cli.common import _config_all, _with_store, config_option, main
from hookgate.config import Config
from hookgate.metrics import Metrics
from hookgate.store import Store

log = structlog.get_logger("hookgate.worker")


async def _run_workers(config: Config, store: Store) -> None:
    from hookgate.app import OAUTH_KEY
    from hookgate.oauth import TokenIssuer
    from hookgate.processing.worker import Workers
    from hookgate.providers import build_providers

    providers = build_providers(TokenIssuer(await store.secret(OAUTH_KEY, os.urandom(32))))
    from hookgate.alerts.evaluator import start_alerts

    metrics = Metrics()
    workers = Workers(store, config, providers, metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await workers.start()
    alerts = start_alerts(config, store, metrics)
    log.info(
        "hookgate worker started",
        destinations=[d.name for d in config.destinations],
        storage=config.storage.url.split("://")[0],
    )
    await stop.wait()
    if alerts is not None:
        await alerts.stop()
    await workers.stop()
    log.info("hookgate worker stopped")


@main.command()
@config_option
def worker(config_path: str | None) -> None:
    """Process received events and deliver them, until SIGINT/SIGTERM.

    Run it beside `hookgate serve` with `[processing] in_process = false`, or as several
    processes: work is leased through the database, so each event is processed once and a
    stopped worker's deliveries are taken over.
    """
    from hookgate.logs import configure

    config = _config_all(config_path)
    configure(config.logging)
    asyncio.run(_with_store(config, lambda store: _run_workers(config, store)))
