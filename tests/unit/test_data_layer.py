"""The data layer's own pieces: the synchronous driver of its coroutines, the DB-API
transaction (savepoints, key clashes, rows by name), the dialect object and the one
cursor codec. The queries themselves are proved through the store on both backends
(test_store.py and the others using `storage_url`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hookgate.domain.errors import BadCursor
from hookgate.store.dialect import POSTGRESQL, SQLITE, dialect_of
from hookgate.store.paging import decode_cursor, decode_id_cursor, encode_cursor
from hookgate.store.tx import DbApiTx, KeyTaken, Tx, run_sync


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    try:
        yield db
    finally:
        db.close()


def test_run_sync_drives_a_coroutine_that_never_waits_and_refuses_one_that_does() -> None:
    async def answer() -> int:
        return 42

    assert run_sync(answer()) == 42

    async def waits() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="suspended"):
        run_sync(waits())


def test_a_key_clash_inside_a_savepoint_rolls_back_only_the_savepoint(
    conn: sqlite3.Connection,
) -> None:
    tx = DbApiTx(conn, SQLITE)

    async def work(tx: Tx) -> tuple[int, list[tuple[str, int]]]:
        await tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("a", 1))
        clashed = 0
        try:
            async with tx.savepoint():
                await tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("b", 2))
                await tx.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("a", 3))
        except KeyTaken:
            clashed = 1
        rows = await tx.all("SELECT k, v FROM t ORDER BY k")
        return clashed, [(row["k"], row["v"]) for row in rows]

    conn.execute("BEGIN")
    clashed, rows = run_sync(work(tx))
    conn.execute("COMMIT")
    assert clashed == 1
    assert rows == [("a", 1)]  # "b" went with the savepoint, "a" stayed


def test_rows_read_by_name_without_a_row_factory(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "plain.db", isolation_level=None)
    db.execute("CREATE TABLE t (k TEXT, v INTEGER)")
    db.execute("INSERT INTO t VALUES ('x', 7)")
    tx = DbApiTx(db, SQLITE)
    row = run_sync(tx.one("SELECT k, v FROM t"))
    assert row is not None and row["k"] == "x" and row["v"] == 7
    assert run_sync(tx.one("SELECT k FROM t WHERE v = ?", (8,))) is None
    db.close()


def test_the_dialect_object_holds_the_differences() -> None:
    moment = datetime(2025, 12, 4, 12, 0, tzinfo=UTC)
    assert SQLITE.sql("a = ? AND b = ?") == "a = ? AND b = ?"
    assert POSTGRESQL.sql("a = ? AND b = ?") == "a = %s AND b = %s"
    assert SQLITE.instant(moment) == "2025-12-04T12:00:00.000000Z"
    assert POSTGRESQL.instant(moment) is moment
    assert SQLITE.read_instant("2025-12-04T12:00:00.000000Z") == moment
    assert SQLITE.flag(True) == 1 and POSTGRESQL.flag(True) is True
    assert POSTGRESQL.text("a\x00b") == "a\ufffdb" and SQLITE.text("a\x00b") == "a\x00b"
    assert SQLITE.any_of("id", ["x", "y"]) == ("id IN (?,?)", ["x", "y"])
    assert POSTGRESQL.any_of("id", ["x", "y"]) == ("id = ANY(?)", [["x", "y"]])
    assert dialect_of("postgresql") is POSTGRESQL and dialect_of(SQLITE) is SQLITE


def test_one_cursor_codec_for_ids_rule_keys_and_composite_keys() -> None:
    row_id = "01J0000000000000000000000A"
    assert decode_id_cursor(encode_cursor(row_id)) == row_id
    key = "budget/group:fleet-north/kwh/day"  # rule keys are not ids
    assert decode_cursor(encode_cursor(key)) == key
    with pytest.raises(BadCursor):
        decode_id_cursor(encode_cursor(key))
    for foreign in ("!!!", "YWJj=x", "ab cd"):
        with pytest.raises(BadCursor):
            decode_cursor(foreign)
