"""Command line: serve, init, migrate, events, rejections, send (provider emulators),
tokens (charge-token management), decide (a dry-run charging decision) and worker
(processing and delivery without the HTTP server)."""

from hookgate.cli import inbox, send, server, tokens, worker
from hookgate.cli.common import main

__all__ = ["inbox", "main", "send", "server", "tokens", "worker"]
