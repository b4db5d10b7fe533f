"""Helpers shared by the backends: opaque pagination cursors."""

from __future__ import annotations

import base64
import binascii


class BadCursor(ValueError):
    """The cursor was not issued by this API."""


def encode_cursor(last_id: str) -> str:
    """An opaque token for 'rows older than this one'."""
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The row id inside a cursor; BadCursor when it is not one of ours."""
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None
    if not value.isalnum() or len(value) != 26:
        raise BadCursor("cursor is not valid")
    return value
