"""What SQLAlchemy Core would cost the data layer, measured against it on one SQLite file.

    .venv/bin/python bench/sqlcore.py [--rows 20000] [--repeat 2000]

Three operations, each done both ways on the same migrated database:

- `insert`: the inbox insert of the acknowledgement path (the data layer's statement on
  the writer's sqlite3 connection, against `conn.execute(inbox.insert(), row)` through a
  SQLAlchemy engine), `--rows` of them in one transaction;
- `page`: one listing page (`list_events` with a source filter and a cursor) through the
  data layer's `Tx`, against the same query built with `select()` and run through the
  engine (its compiled-statement cache warm);
- `build`: building that listing's SQL alone (string assembly with the dialect object,
  against `select()` plus compiling it for the PostgreSQL dialect).

Prints microseconds per operation and the ratio (SQLAlchemy / data layer). Needs the
`bench` extra (SQLAlchemy). The figures and the decision are in docs/adr/0017.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from hookgate.domain.events import InboundEvent
from hookgate.domain.queries import EventFilter
from hookgate.ids import new_id
from hookgate.store.dialect import POSTGRESQL, SQLITE
from hookgate.store.inbox import insert_event_statement, list_events
from hookgate.store.migrations import migrations
from hookgate.store.paging import encode_cursor, equal_filters
from hookgate.store.tx import DbApiTx, run_sync


def _event(n: int) -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source="easypark" if n % 2 else "ampeco",
        provider="easypark",
        event_type="parking.completed",
        received_at=datetime.now(UTC),
        dedup_key=f"parking:{n}",
        raw_body=b'{"parkingId": %d}' % n,
        body_sha256="0" * 64,
        headers={"content-type": "application/json"},
        document={"parkingId": n},
        subject=f"parking/{n}",
    )


def _timed(fn: Callable[[], Any], repeat: int) -> float:
    began = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - began) / repeat * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "core.db")
        conn = sqlite3.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        for _version, _name, statements in migrations(SQLITE):
            conn.execute("BEGIN")
            for statement in statements:
                conn.execute(statement)
            conn.execute("COMMIT")
        engine = sa.create_engine(f"sqlite:///{path}")
        inbox = sa.Table("inbox", sa.MetaData(), autoload_with=engine)

        ours_events = [_event(n) for n in range(args.rows)]
        theirs_events = [_event(n + args.rows) for n in range(args.rows)]

        conn.execute("BEGIN")
        began = time.perf_counter()
        for event in ours_events:
            conn.execute(*insert_event_statement(SQLITE, event))
        ours_insert = (time.perf_counter() - began) / args.rows * 1e6
        conn.execute("COMMIT")

        columns = [
            "id",
            "source",
            "provider",
            "event_type",
            "received_at",
            "dedup_key",
            "subject",
            "status",
            "flags",
            "headers",
            "document",
            "raw_body",
            "body_sha256",
            "request_id",
            "trace_context",
        ]
        with engine.begin() as core:
            insert = inbox.insert()
            began = time.perf_counter()
            for event in theirs_events:
                _sql, params = insert_event_statement(SQLITE, event)
                core.execute(insert, dict(zip(columns, params, strict=True)))
            core_insert = (time.perf_counter() - began) / args.rows * 1e6

        where = EventFilter(source="easypark")
        cursor = encode_cursor(ours_events[args.rows // 2].id)
        tx = DbApiTx(conn, SQLITE)
        ours_page = _timed(lambda: run_sync(list_events(tx, where, cursor, 50)), args.repeat)

        size = sa.func.length(inbox.c.raw_body).label("body_size")
        listed = [c for c in inbox.c if c.name not in ("raw_body", "error", "processed_at")]

        def core_select() -> Any:
            return (
                sa.select(*listed, size)
                .where(inbox.c.source == "easypark")
                .where(inbox.c.id < ours_events[args.rows // 2].id)
                .order_by(inbox.c.id.desc())
                .limit(51)
            )

        with engine.connect() as core:
            core_page = _timed(lambda: core.execute(core_select()).mappings().all(), args.repeat)

        def ours_build() -> Any:
            clauses, params = equal_filters(tx, [("source", "easypark")], "received_at", None)
            clauses.append("id < ?")
            sql = f"SELECT * FROM inbox WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
            return POSTGRESQL.sql(sql), [*params, ours_events[0].id, 51]

        pg = postgresql.dialect()
        ours_sql = _timed(ours_build, args.repeat)
        core_sql = _timed(lambda: core_select().compile(dialect=pg), args.repeat)

    print(f"{'operation':<8} {'data layer µs':>14} {'SQLAlchemy Core µs':>19} {'ratio':>6}")
    for name, ours, theirs in (
        ("insert", ours_insert, core_insert),
        ("page", ours_page, core_page),
        ("build", ours_sql, core_sql),
    ):
        print(f"{name:<8} {ours:>14.1f} {theirs:>19.1f} {theirs / ours:>6.1f}")


if __name__ == "__main__":
    main()
