"""One table of problem responses (RFC 9457) for the HTTP edge."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from hookgate.domain.errors import (
    Conflict,
    HookgateError,
    Invalid,
    NotFound,
    Unavailable,
    Unprocessable,
)
from hookgate.ids import new_id

PROBLEM_TYPE = "urn:hookgate:problem:"
_encoder = msgspec.json.Encoder()

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(status: int, code: str, detail: str, **extra: Any) -> bytes:
    """The JSON body of a problem answer; `code` becomes the problem type."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return _encoder.encode(body)


# The HTTP status of each kind of error, for the provider edge and the admin API alike;
# the most specific class listed in an error's MRO decides.
STATUS_OF: dict[type[HookgateError], int] = {
    Unavailable: 503,
    NotFound: 404,
    Conflict: 409,
    Unprocessable: 422,
    Invalid: 400,
}


def error_answer(
    exc: HookgateError, *, retry_after: int, detail: str | None = None, **extra: Any
) -> tuple[int, bytes, dict[str, str]]:
    """Status, problem body and headers for `exc`: the problem type is its `code`, the
    detail its own unless the edge says less (`detail`), and a 503 says when to retry
    (the error's own `retry_after`, else the edge's)."""
    status = next((STATUS_OF[k] for k in type(exc).__mro__ if k in STATUS_OF), 500)
    headers: dict[str, str] = {}
    if status == 503:
        wait = exc.retry_after if isinstance(exc, Unavailable) else None
        headers["Retry-After"] = str(retry_after if wait is None else wait)
    body = problem(status, exc.code, exc.detail if detail is None else detail, **exc.extra, **extra)
    return status, body, headers


# An id a proxy in front already gave the request is kept when it is plain (so its logs
# and ours share it); anything else could forge or break log lines and is replaced.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


def request_id_of(headers: Mapping[str, str]) -> str:
    """The request's id: a well-formed `X-Request-Id` from the proxy in front, else a
    new time-ordered id."""
    given = headers.get("x-request-id")
    if given is not None and _CALLER_ID.fullmatch(given):
        return given
    return new_id()
