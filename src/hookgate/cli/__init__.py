"""Command line: serve, init, migrate, events, rejections, send (provider emulators),
tokens, groups, chargers and budgets (charging rules), decide (a dry-run charging decision), worker
(processing and delivery without the HTTP server), the views, deliveries, destinations,
replay and export (views), prune (retention), events search and stats (search and
aggregates), alerts (history and rules), audit (who changed what), ocpi (OCPI
parties) and tokens export (OCPP local lists)."""

from hookgate.cli import (
    alerts,
    audit,
    inbox,
    maintenance,
    roaming,
    rules,
    send,
    server,
    stats,
    tokens,
    views,
    worker,
)
from hookgate.cli.common import main

__all__ = [
    "alerts",
    "audit",
    "inbox",
    "main",
    "maintenance",
    "roaming",
    "rules",
    "send",
    "server",
    "stats",
    "tokens",
    "views",
    "worker",
]
