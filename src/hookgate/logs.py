"""Structured logging: every line on stderr, from hookgate, uvicorn or a library alike.

structlog's events and the standard library's records (uvicorn, httpx, librdkafka) end in
one handler whose `ProcessorFormatter` renders them the same way, so with
`format = "json"` every line a process writes is one JSON object that a log shipper can
parse; a plain-text start-up line from uvicorn would break that.
"""

from __future__ import annotations

import logging
import logging.config
import re
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


# C0 and C1 controls, DEL, line and paragraph separators, and the bidirectional
# overrides: a URL or header carrying them could recolour a terminal, forge log lines or
# reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with control characters written as `\\xNN` / `\\uNNNN` escapes."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_escaped, text)


def _escape_value(value: Any) -> Any:
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {k: _escape_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escape_value(v) for v in value]
    return value


def _escape_controls(
    _: Any, __: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Every logged value, hookgate's or a library's, without raw control characters
    (a traceback keeps its line breaks)."""
    for key, value in event.items():
        if key in ("exception", "stack") and isinstance(value, str):
            event[key] = escape_controls(value, keep_newlines=True)
        else:
            event[key] = _escape_value(value)
    return event


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
            _escape_controls,
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
