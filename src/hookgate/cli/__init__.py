"""Command line: serve, init, migrate, events, rejections, send (provider emulators),
tokens (charge-token management) and decide (a dry-run charging decision)."""

from hookgate.cli import inbox, send, server, tokens
from hookgate.cli.common import main

__all__ = ["inbox", "main", "send", "server", "tokens"]
