"""Generic row access to the view tables inside one transaction (`ViewTx`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import msgspec

from hookgate.store.views import ViewTable, check_columns, view
from hookgate.timeutil import iso, parse_iso

Dialect = Literal["sqlite", "postgresql"]
_json = msgspec.json.Encoder()


class SqlViewTx:
    """`ViewTx` over a DB-API connection already inside a transaction."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self._conn = conn
        self._dialect = dialect
        self._mark = "?" if dialect == "sqlite" else "%s"

    def _encode(self, shape: ViewTable, column: str, value: Any) -> Any:
        if value is None:
            return None
        if column in shape.instants and isinstance(value, datetime):
            return iso(value)
        if column in shape.json:
            return _json.encode(value).decode()
        if column in shape.booleans:
            return int(bool(value))
        return value

    def _decode(self, shape: ViewTable, names: list[str], values: Any) -> dict[str, Any]:
        row = dict(zip(names, values, strict=True))
        for column in shape.instants:
            if isinstance(row.get(column), str):
                row[column] = parse_iso(row[column])
        for column in shape.json:
            if isinstance(row.get(column), str | bytes):
                row[column] = msgspec.json.decode(row[column])
        for column in shape.booleans:
            if row.get(column) is not None:
                row[column] = bool(row[column])
        return row

    def select(
        self, table: str, where: Mapping[str, Any], order_by: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        shape = view(table)
        check_columns(shape, where)
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = {self._mark}" for c in where)
        if order_by is not None:
            check_columns(shape, [order_by])
            sql += f" ORDER BY {order_by}"
        sql += f" LIMIT {int(limit)}"
        cur = self._conn.execute(sql, [self._encode(shape, c, v) for c, v in where.items()])
        names = [d[0] for d in cur.description]
        return [self._decode(shape, names, tuple(r)) for r in cur.fetchall()]

    def get(self, table: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = self.select(table, key, limit=1)
        return rows[0] if rows else None

    def insert(self, table: str, row: Mapping[str, Any]) -> bool:
        shape = view(table)
        check_columns(shape, row)
        columns = list(row)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join([self._mark] * len(columns))}) ON CONFLICT DO NOTHING"
        )
        cur = self._conn.execute(sql, [self._encode(shape, c, row[c]) for c in columns])
        return bool(cur.rowcount == 1)

    def upsert(self, table: str, row: Mapping[str, Any]) -> None:
        shape = view(table)
        check_columns(shape, row)
        columns = list(row)
        updates = [c for c in columns if c not in shape.key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in updates)
            if updates
            else "DO NOTHING"
        )
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            f"({', '.join([self._mark] * len(columns))}) "
            f"ON CONFLICT ({', '.join(shape.key)}) {action}"
        )
        self._conn.execute(sql, [self._encode(shape, c, row[c]) for c in columns])
