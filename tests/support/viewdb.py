"""Migrated throw-away databases for the view tests: a SQLite file, and a fresh schema in
the local PostgreSQL (skipped, saying why, when PostgreSQL cannot be reached)."""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hookgate.store.migrations import migrations
from hookgate.store.viewtx import Dialect

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"


@contextmanager
def sqlite_db(path: Path) -> Iterator[sqlite3.Connection]:
    """A SQLite file with every migration applied; transactions are explicit (BEGIN)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for _version, _name, statements in migrations("sqlite"):
        conn.execute("BEGIN")
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def postgres_db() -> Iterator[Any]:
    """A psycopg connection whose search path is a fresh, migrated schema (dropped after)."""
    import psycopg

    try:
        admin = psycopg.connect(PG_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        if os.environ.get("HOOKGATE_TEST_REQUIRE_PG"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is not reachable (required here): {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    schema = "hg_" + secrets.token_hex(6)
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True, options=f"-c search_path={schema}")
        with conn.transaction():
            for _version, _name, statements in migrations("postgresql"):
                for statement in statements:
                    conn.execute(statement)
        try:
            yield conn
        finally:
            conn.close()
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@contextmanager
def database(dialect: Dialect, tmp_path: Path) -> Iterator[Any]:
    """A migrated connection of either dialect."""
    if dialect == "sqlite":
        with sqlite_db(tmp_path / "views.db") as conn:
            yield conn
    else:
        with postgres_db() as conn:
            yield conn


@contextmanager
def transaction(conn: Any, dialect: Dialect) -> Iterator[None]:
    """BEGIN ... COMMIT (ROLLBACK on error), as the store runs a processing batch."""
    if dialect == "sqlite":
        conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    else:
        with conn.transaction():
            yield
