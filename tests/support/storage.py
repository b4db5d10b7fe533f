"""Throw-away databases of either backend, and direct reads of them.

PostgreSQL comes from $HOOKGATE_TEST_PG (default: the local service, database `test`);
each database is a fresh schema, dropped afterwards ($HOOKGATE_TEST_KEEP_SCHEMAS=1 keeps
them for a post-mortem).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PG_URL = os.environ.get("HOOKGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")


@functools.cache
def pg_available() -> bool:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error:
        return False
    return True


def pg_schema_url(schema: str) -> str:
    """PG_URL with `schema` as the search path."""
    joiner = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{joiner}options=-csearch_path%3D{schema}"


def new_pg_schema() -> tuple[str, str]:
    """A fresh, empty schema: (name, URL that uses it)."""
    import psycopg

    schema = f"hg_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, pg_schema_url(schema)


def drop_pg_schema(schema: str) -> None:
    """Drop a test schema ($HOOKGATE_TEST_KEEP_SCHEMAS=1 keeps them for a post-mortem)."""
    import psycopg

    if os.environ.get("HOOKGATE_TEST_KEEP_SCHEMAS"):
        return

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@contextlib.contextmanager
def fresh_storage(backend: str, directory: Path) -> Iterator[str]:
    """A storage URL for an empty database of `backend`, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'hookgate.db'}"
        return
    schema, url = new_pg_schema()
    try:
        yield url
    finally:
        drop_pg_schema(schema)


def query_url(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Query a database of either backend on a connection of our own. Write the SQL with
    `?` placeholders; JSON columns come back as text, as SQLite returns them."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg
    from psycopg.types.string import TextLoader

    with psycopg.connect(url, autocommit=True) as pg:
        pg.adapters.register_loader("json", TextLoader)
        pg.adapters.register_loader("jsonb", TextLoader)
        return pg.execute(sql.replace("%", "%%").replace("?", "%s").encode(), params).fetchall()
