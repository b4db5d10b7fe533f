"""Command line: serve, init, migrate, events, rejections, send (provider emulators),
tokens (charge-token management), decide (a dry-run charging decision) and prune."""

from hookgate.cli import inbox, maintenance, send, server, tokens
from hookgate.cli.common import main

__all__ = ["inbox", "main", "maintenance", "send", "server", "tokens"]
