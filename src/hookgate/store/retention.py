"""Retention: what `hookgate prune` clears, in small transactions. Written once
against `Tx`.

Raw bodies of processed inbox rows go (the row, its document and body hash stay; failed
and quarantined events keep theirs for a re-run), and older rejections, rejection counts,
finished deliveries with their attempts, change-log entries (all but the newest, so
its sequence never restarts), and console sign-outs past the end their session would
have had anyway (whatever the cutoff). Decisions, sessions, consumption and views are
kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import Any

from hookgate.ids import floor_id
from hookgate.store.dialect import Dialect
from hookgate.store.tx import Tx
from hookgate.timeutil import utcnow

# Rows changed per transaction: ingest keeps flowing between them.
STEP = 5000

_FINISHED = "SELECT id FROM deliveries WHERE id < ? AND status IN ('delivered', 'dead')"
_OLD_CHANGES = "changed_at < ? AND seq < (SELECT max(seq) FROM auth_changes)"


def _steps(d: Dialect, older_than: datetime) -> list[tuple[str, str, str, tuple[Any, ...]]]:
    """(name, count query, change statement, parameters) for each kind of row."""
    floor, instant = (floor_id(older_than),), (d.instant(older_than),)
    body = f"id < ? AND {d.octet_length}(raw_body) > 0 AND status = 'processed'"
    return [
        (
            "inbox_bodies",
            f"SELECT count(*) AS n FROM inbox WHERE {body}",
            f"UPDATE inbox SET raw_body = ? WHERE id IN (SELECT id FROM inbox WHERE {body} "
            f"LIMIT {STEP})",
            floor,
        ),
        (
            "rejections",
            "SELECT count(*) AS n FROM rejections WHERE id < ?",
            "DELETE FROM rejections WHERE id IN (SELECT id FROM rejections WHERE id < ? "
            f"LIMIT {STEP})",
            floor,
        ),
        (
            "rejection_counts",
            "SELECT count(*) AS n FROM rejection_counts WHERE minute < ?",
            "DELETE FROM rejection_counts WHERE minute < ?",
            instant,
        ),
        (
            "delivery_attempts",
            f"SELECT count(*) AS n FROM delivery_attempts WHERE delivery_id IN ({_FINISHED})",
            "DELETE FROM delivery_attempts WHERE id IN (SELECT id FROM delivery_attempts "
            f"WHERE delivery_id IN ({_FINISHED}) LIMIT {STEP})",
            floor,
        ),
        (
            "deliveries",
            f"SELECT count(*) AS n FROM ({_FINISHED}) AS f",
            f"DELETE FROM deliveries WHERE id IN ({_FINISHED} LIMIT {STEP})",
            floor,
        ),
        (
            "auth_changes",
            f"SELECT count(*) AS n FROM auth_changes WHERE {_OLD_CHANGES}",
            "DELETE FROM auth_changes WHERE seq IN (SELECT seq FROM auth_changes "
            f"WHERE {_OLD_CHANGES} LIMIT {STEP})",
            instant,
        ),
        (
            "console_revocations",
            "SELECT count(*) AS n FROM console_revocations WHERE expires_at < ?",
            "DELETE FROM console_revocations WHERE nonce IN (SELECT nonce FROM "
            f"console_revocations WHERE expires_at < ? LIMIT {STEP})",
            (d.instant(utcnow()),),
        ),
    ]


Step = Callable[[Tx], Coroutine[Any, Any, int]]


async def prune(
    dialect: Dialect,
    read: Callable[[Step], Awaitable[int]],
    write: Callable[[Step], Awaitable[int]],
    older_than: datetime,
    *,
    dry_run: bool = False,
) -> dict[str, int]:
    """Run (or, with `dry_run`, count) every step; how many rows each touched. `read`
    and `write` run a unit of work in a read or a write transaction of the store."""
    done: dict[str, int] = {}
    for name, count_sql, change_sql, params in _steps(dialect, older_than):
        if dry_run:
            done[name] = await read(_counter(count_sql, params))
            continue
        change = _changer(change_sql, (b"", *params) if name == "inbox_bodies" else params)
        total = 0
        while True:
            changed = await write(change)
            total += changed
            if changed < STEP:
                break
        done[name] = total
    return done


def _counter(sql: str, params: tuple[Any, ...]) -> Step:
    async def run(tx: Tx) -> int:
        row = await tx.one(sql, params)
        return int(row["n"]) if row else 0

    return run


def _changer(sql: str, params: tuple[Any, ...]) -> Step:
    async def run(tx: Tx) -> int:
        return await tx.execute(sql, params)

    return run
