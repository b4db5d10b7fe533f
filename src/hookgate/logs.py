"""Structured logging (structlog) to stderr, JSON by default."""

from __future__ import annotations

import logging
import sys

import structlog

from hookgate.config import LoggingConfig


def configure(config: LoggingConfig) -> None:
    """Route structlog and the standard library through one renderer."""
    level = getattr(logging, config.level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if config.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(message)s", force=True)
