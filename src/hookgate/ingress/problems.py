"""One table of problem responses (RFC 9457) for the HTTP edge."""

from __future__ import annotations

from typing import Any

import msgspec

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
