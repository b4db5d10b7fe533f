"""Structured logging: every line on stderr, from hookgate, uvicorn or a library alike.

structlog's events and the standard library's records (uvicorn, httpx, librdkafka) end in
one handler whose `ProcessorFormatter` renders them the same way, so with
`format = "json"` every line a process writes is one JSON object that a log shipper can
parse; a plain-text start-up line from uvicorn would break that.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import structlog

from hookgate.config import LoggingConfig

# Libraries whose INFO lines are one per request or per attempt: a busy gateway would
# log every delivery twice. Their warnings and errors still come through.
QUIET = ("httpx", "httpcore", "hpack", "multipart")

# Keys the standard library's records carry for uvicorn's coloured console output.
_DROPPED = ("color_message",)


def _drop_extras(_: Any, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    for key in _DROPPED:
        event.pop(key, None)
    return event


_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def formatter(format: str = "json") -> logging.Formatter:
    """The one formatter of the process (referenced by `dict_config`, also for uvicorn)."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, _drop_extras],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def dict_config(config: LoggingConfig) -> dict[str, Any]:
    """`logging.config.dictConfig` settings: one stderr handler on the root logger, and
    uvicorn's loggers propagating to it. Passed to uvicorn as its `log_config`, so that
    uvicorn applying it at start-up keeps what `configure` set up."""
    level = config.level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hookgate": {"()": formatter, "format": config.format}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "hookgate",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            **{
                name: {"handlers": [], "propagate": True, "level": level}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
            },
            **{name: {"level": "WARNING"} for name in QUIET},
        },
    }


def configure(config: LoggingConfig) -> None:
    """Route structlog and the standard library through one handler and renderer."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(dict_config(config))
    # Python's own warnings (deprecations) become log records too, not bare stderr text.
    logging.captureWarnings(True)
