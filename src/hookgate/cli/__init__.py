"""Command line: serve, init, migrate, events, rejections, send (provider emulators),
tokens, groups, chargers and budgets (charging rules), decide (a dry-run charging decision), worker
(processing and delivery without the HTTP server), the views, deliveries, destinations,
replay and export (views), prune (retention), events search and stats (search and
aggregates), alerts (history and rules), and audit (who changed what)."""

from hookgate.cli import (
    alerts,
    audit,
    inbox,
    maintenance,
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
    "rules",
    "send",
    "server",
    "stats",
    "tokens",
    "views",
    "worker",
]
