"""worker: the processing and delivery loops without the HTTP server."""

from __future__ import annotations

import asyncio
import signal

import structlog

from hookgate.bootstrap import Graph
from hookgate.cli.common import _config_all, _run, config_option, main

log = structlog.get_logger("hookgate.worker")


async def _run_workers(graph: Graph) -> None:
    await graph.load_signing_key()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await graph.start_workers()
    graph.start_alerts()
    log.info(
        "hookgate worker started",
        destinations=[d.name for d in graph.config.destinations],
        storage=graph.config.storage.url.split("://")[0],
    )
    await stop.wait()
    await graph.close()  # the workers finish their batches before the line below
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
    _run(config, _run_workers)
