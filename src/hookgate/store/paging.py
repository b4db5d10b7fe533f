"""The one cursor codec, and keyset paging over time-ordered ids.

A cursor is the unpadded URL-safe base64 of the last row's order key as text: a row id
(inbox, rejections, decisions, deliveries), a rule key, or a JSON list of the values of
a view's composite order. Decoding is strict (`BadCursor` for anything not issued here);
what the text must look like is checked by the caller's `check`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from hookgate.domain.errors import BadCursor
from hookgate.domain.queries import Page
from hookgate.ids import floor_id
from hookgate.store.tx import Row, Tx

T = TypeVar("T")

__all__ = ["BadCursor", "decode_cursor", "decode_id_cursor", "encode_cursor", "id_page"]


def encode_cursor(value: str) -> str:
    """An opaque token for 'rows after this order key'."""
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, check: Callable[[str], bool] | None = None) -> str:
    """The order key inside a cursor; BadCursor when it is not one of ours (or `check`
    refuses the text)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None
    if check is not None and not check(value):
        raise BadCursor("cursor is not valid")
    return value


def is_id(value: str) -> bool:
    """A row id as `ids.new_id` makes them."""
    return value.isalnum() and len(value) == 26


def decode_id_cursor(cursor: str) -> str:
    """The row id inside an id cursor."""
    return decode_cursor(cursor, is_id)


def equal_filters(
    tx: Tx, equal: Sequence[tuple[str, Any]], time_column: str, since: datetime | None
) -> tuple[list[str], list[Any]]:
    """WHERE clauses for equality filters (None: any) and a lower time bound, which
    becomes an id range too (ids are time-ordered) so the primary key serves it."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in equal:
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        clauses.append(f"id >= ? AND {time_column} >= ?")
        params.extend([floor_id(since), tx.dialect.instant(since)])
    return clauses, params


async def id_page(
    tx: Tx,
    table: str,
    columns: str,
    clauses: Sequence[str],
    params: Sequence[Any],
    cursor: str | None,
    limit: int,
    convert: Callable[[Row], T],
) -> Page[T]:
    """Rows newest first by id, `limit` of them, and the cursor of the next page."""
    where, values = list(clauses), list(params)
    if cursor:
        where.append("id < ?")
        values.append(decode_id_cursor(cursor))
    sql = f"SELECT {columns} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    values.append(limit + 1)
    rows = await tx.all(sql, values)
    items = [convert(tx.dialect.plain(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return Page(items, encode_cursor(str(rows[limit - 1]["id"])) if more and items else None)
