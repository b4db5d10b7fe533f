"""Generic row access to the domain views (`ViewTx`) and their listings, for SQLite and
PostgreSQL over a DB-API connection (the projections) or any `Tx` (the listings).

Table and column names come only from `store/views.py` (every name is checked before it
reaches SQL text); values always travel as parameters. What differs between the backends
comes from the dialect object (store/dialect.py); cursors are the one codec of
store/paging.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from hookgate.domain.queries import Page, ViewFilter
from hookgate.store.dialect import Dialect as SqlDialect
from hookgate.store.dialect import dialect_of
from hookgate.store.paging import BadCursor, decode_cursor, encode_cursor, is_id
from hookgate.store.tx import DbApiTx, Tx, run_sync
from hookgate.store.views import ViewTable, check_columns, view
from hookgate.timeutil import iso, parse_iso

# A backend by name, as tests and tools pass it; the dialect object is accepted too.
Dialect = Literal["sqlite", "postgresql"]
AnyDialect = Dialect | SqlDialect

__all__ = [
    "Dialect",
    "SqlViewTx",
    "cursor_value",
    "decode_row",
    "encode_row",
    "export_sql",
    "fetch_page",
    "fetch_rows",
    "list_page",
    "list_rows",
    "list_sql",
    "page_cursor",
]


def _encode(shape: ViewTable, column: str, value: Any, d: SqlDialect) -> Any:
    if value is None:
        return None
    if column in shape.instants:
        if not isinstance(value, datetime):
            raise TypeError(f"{column} must be a datetime, not {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"{column} must be timezone-aware")
        return d.instant(value.astimezone(UTC))
    if column in shape.json:
        return msgspec.json.encode(value).decode()
    if column in shape.booleans:
        return d.flag(bool(value))
    return value


def encode_row(table: str, row: Mapping[str, Any], dialect: AnyDialect) -> dict[str, Any]:
    """`row` as database parameters (unknown columns refused)."""
    shape = view(table)
    check_columns(shape, row)
    d = dialect_of(dialect)
    return {column: _encode(shape, column, value, d) for column, value in row.items()}


def _decode(shape: ViewTable, column: str, value: Any, for_api: bool) -> Any:
    if value is None:
        return None
    if column in shape.instants:
        moment = parse_iso(value) if isinstance(value, str) else value.astimezone(UTC)
        return iso(moment) if for_api else moment
    if column in shape.json:
        # SQLite keeps JSON as text; PostgreSQL hands JSONB back decoded, or as text where
        # the connection loads it as text (the store's pools do: decoding is left to us).
        # View JSON columns hold arrays and objects only, so text is always encoded JSON.
        return msgspec.json.decode(value) if isinstance(value, str | bytes) else value
    if column in shape.booleans:
        return bool(value)
    return value


def decode_row(
    table: str, row: Mapping[str, Any], dialect: AnyDialect | None = None, *, for_api: bool = False
) -> dict[str, Any]:
    """A database row in Python types: instants as aware UTC datetimes (`for_api`: as ISO
    text, ready for JSON), JSON columns decoded, booleans as bool. (Every backend's
    values decode alike; `dialect` is not needed.)"""
    shape = view(table)
    return {column: _decode(shape, column, row[column], for_api) for column in row.keys()}  # noqa: SIM118 (sqlite3.Row iterates values)


def _equal(
    shape: ViewTable, where: Mapping[str, Any], dialect: SqlDialect
) -> tuple[list[str], list[Any]]:
    check_columns(shape, where)
    clauses, params = [], []
    for column, value in where.items():
        if column in shape.json:
            raise KeyError(f"{column} is a JSON column and cannot be filtered on")
        if value is None:
            clauses.append(f"{column} IS NULL")
        else:
            clauses.append(f"{column} = ?")
            params.append(_encode(shape, column, value, dialect))
    return clauses, params


class SqlViewTx:
    """`ViewTx` over an open DB-API connection inside the caller's transaction (sqlite3,
    or a synchronous psycopg 3 connection). It never commits."""

    def __init__(self, conn: Any, dialect: AnyDialect) -> None:
        self.conn = conn
        self.dialect = dialect_of(dialect)
        self._tx = DbApiTx(conn, self.dialect)

    def _run(self, sql: str, params: Sequence[Any]) -> Any:
        cursor = self.conn.cursor()
        cursor.execute(self.dialect.sql(sql), list(params))
        return cursor

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return run_sync(self._tx.all(sql, params))

    def get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        shape = view(table)
        if set(key) != set(shape.key):
            raise KeyError(f"{table} is keyed by {shape.key}, not {tuple(key)}")
        clauses, params = _equal(shape, key, self.dialect)
        rows = self._rows(f"SELECT * FROM {table} WHERE {' AND '.join(clauses)}", params)
        return decode_row(table, rows[0]) if rows else None

    def _insert_sql(self, table: str, row: Mapping[str, Any]) -> tuple[str, list[Any], str]:
        shape = view(table)
        missing = [column for column in shape.key if row.get(column) is None]
        if missing:
            raise KeyError(f"{table} row lacks its key columns {missing}")
        encoded = encode_row(table, row, self.dialect)
        columns = list(encoded)
        marks = ", ".join(["?"] * len(columns))
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(shape.key)}) DO "
        )
        updates = [column for column in columns if column not in shape.key]
        return sql, list(encoded.values()), ", ".join(f"{c} = excluded.{c}" for c in updates)

    def upsert(self, table: str, row: Mapping[str, Any]) -> None:
        """A row naming only some columns updates those of an existing row (an INSERT
        would first have to satisfy every NOT NULL column)."""
        shape = view(table)
        sql, params, updates = self._insert_sql(table, row)
        if set(row) != shape.columns and updates:
            encoded = dict(zip(row, params, strict=True))  # as _insert_sql encoded them
            sets = [column for column in encoded if column not in shape.key]
            key_clauses, key_params = _equal(shape, {k: row[k] for k in shape.key}, self.dialect)
            done = self._run(
                f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in sets)} "
                f"WHERE {' AND '.join(key_clauses)}",
                [encoded[c] for c in sets] + key_params,
            )
            if done.rowcount:
                return
        self._run(sql + (f"UPDATE SET {updates}" if updates else "NOTHING"), params)

    def insert(self, table: str, row: Mapping[str, Any]) -> bool:
        sql, params, _ = self._insert_sql(table, row)
        return bool(self._run(sql + "NOTHING", params).rowcount == 1)

    def select(
        self,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None = None,
        limit: int = 1000,
        below: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """`order_by` is a column name, optionally followed by `asc` or `desc`."""
        shape = view(table)
        clauses, params = _equal(shape, where, self.dialect)
        for column, value in (below or {}).items():
            check_columns(shape, [column])
            clauses.append(f"{column} < ?")
            params.append(_encode(shape, column, value, self.dialect))
        sql = f"SELECT * FROM {table}"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        if order_by is not None:
            column, _, direction = order_by.strip().partition(" ")
            direction = direction.strip().upper() or "ASC"
            check_columns(shape, [column])
            if direction not in ("ASC", "DESC"):
                raise ValueError(f"order direction must be asc or desc, not {direction!r}")
            sql += f" ORDER BY {column} {direction}"
        sql += " LIMIT ?"
        params.append(int(limit))
        return [decode_row(table, row) for row in self._rows(sql, params)]

    def token_vehicle(self, uid: str) -> str | None:
        """One primary-key read of the token entity (its document is JSON)."""
        rows = self._rows("SELECT doc FROM auth_entities WHERE kind = 'token' AND key = ?", [uid])
        if not rows:
            return None
        doc = rows[0]["doc"]
        if isinstance(doc, str | bytes):
            doc = msgspec.json.decode(doc)
        vehicle = doc.get("vehicle") if isinstance(doc, dict) else None
        return str(vehicle) if vehicle else None


# -- listings -------------------------------------------------------------------------


def _filter(
    shape: ViewTable, where: ViewFilter, dialect: SqlDialect
) -> tuple[list[str], list[Any]]:
    clauses, params = _equal(shape, where.equal, dialect)
    if where.since is not None or where.until is not None:
        column = where.time_column
        if column is None or column not in shape.instants:
            raise KeyError(f"time filters need an instant column, not {column!r}")
        for bound, operator in ((where.since, ">="), (where.until, "<")):
            if bound is not None:
                clauses.append(f"{column} {operator} ?")
                params.append(_encode(shape, column, bound, dialect))
    if where.flag is not None:
        if "flags" not in shape.json:
            raise KeyError("this view has no flags to filter on")
        clauses.append(dialect.array_has("flags"))
        params.append(where.flag)
    return clauses, params


def _order_values(shape: ViewTable, cursor_id: str, dialect: AnyDialect) -> list[Any]:
    if len(shape.order) == 1:
        return [cursor_id]
    values = msgspec.json.decode(cursor_id, type=list[str])
    d = dialect_of(dialect)
    return [
        _encode(shape, column, parse_iso(value) if column in shape.instants else value, d)
        for column, value in zip(shape.order, values, strict=True)
    ]


def _select(
    table: str, where: ViewFilter, cursor_id: str | None, dialect: SqlDialect, direction: str
) -> tuple[str, list[Any]]:
    shape = view(table)
    clauses, params = _filter(shape, where, dialect)
    if cursor_id is not None:
        values = _order_values(shape, cursor_id, dialect)
        marks = ", ".join(["?"] * len(values))
        clauses.append(f"({', '.join(shape.order)}) < ({marks})")
        params.extend(values)
    sql = f"SELECT * FROM {table}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY " + ", ".join(f"{column} {direction}" for column in shape.order)
    return sql, params


def list_sql(
    table: str, where: ViewFilter, cursor_id: str | None, limit: int, dialect: AnyDialect
) -> tuple[str, list[Any]]:
    """`SELECT` of a listing page, newest first: rows older than `cursor_id` (a value of
    `cursor_value`), at most `limit` of them (ask for one more to learn if a page follows).
    In the dialect's placeholder style."""
    d = dialect_of(dialect)
    sql, params = _select(table, where, cursor_id, d, "DESC")
    params.append(int(limit))
    return d.sql(f"{sql} LIMIT ?"), params


def export_sql(table: str, where: ViewFilter, dialect: AnyDialect) -> tuple[str, list[Any]]:
    """`SELECT` of every matching row, oldest first."""
    d = dialect_of(dialect)
    sql, params = _select(table, where, None, d, "ASC")
    return d.sql(sql), params


def page_cursor(table: str, row: Mapping[str, Any]) -> str:
    """The opaque cursor for 'rows older than `row`' (a row from `decode_row`)."""
    shape = view(table)
    values = [row[column] for column in shape.order]
    if len(values) == 1:
        return encode_cursor(str(values[0]))
    return encode_cursor(
        msgspec.json.encode(
            [iso(v) if isinstance(v, datetime) else str(v) for v in values]
        ).decode()
    )


def cursor_value(table: str, cursor: str) -> str:
    """The `cursor_id` inside a cursor from `page_cursor`; BadCursor when it is not one."""
    shape = view(table)
    if len(shape.order) == 1:
        return decode_cursor(cursor, is_id)
    text = decode_cursor(cursor)
    try:
        values = msgspec.json.decode(text, type=list[str])
        if len(values) != len(shape.order):
            raise ValueError
        for column, value in zip(shape.order, values, strict=True):
            if column in shape.instants:
                parse_iso(value)
    except (msgspec.DecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None
    return text


async def list_page(
    tx: Tx, table: str, where: ViewFilter, cursor: str | None, limit: int
) -> Page[dict[str, Any]]:
    """One listing page of a view, newest first, rows ready for JSON."""
    cursor_id = cursor_value(table, cursor) if cursor else None
    sql, params = _select(table, where, cursor_id, tx.dialect, "DESC")
    params.append(int(limit) + 1)
    rows = [decode_row(table, row, for_api=True) for row in await tx.all(f"{sql} LIMIT ?", params)]
    items = rows[:limit]
    more = len(rows) > limit and bool(items)
    return Page(items, page_cursor(table, items[-1]) if more else None)


async def list_rows(tx: Tx, table: str, where: ViewFilter) -> list[dict[str, Any]]:
    """Every matching row of a view, oldest first, ready for JSON."""
    sql, params = _select(table, where, None, tx.dialect, "ASC")
    return [decode_row(table, row, for_api=True) for row in await tx.all(sql, params)]


def fetch_page(
    conn: Any, table: str, where: ViewFilter, cursor: str | None, limit: int, dialect: AnyDialect
) -> Page[dict[str, Any]]:
    """`list_page` over a DB-API connection."""
    return run_sync(list_page(DbApiTx(conn, dialect_of(dialect)), table, where, cursor, limit))


def fetch_rows(
    conn: Any, table: str, where: ViewFilter, dialect: AnyDialect
) -> list[dict[str, Any]]:
    """`list_rows` over a DB-API connection."""
    return run_sync(list_rows(DbApiTx(conn, dialect_of(dialect)), table, where))
