"""SQL of the alert rules, the alert history and request-id look-ups, written once for
SQLite and PostgreSQL over a DB-API connection (sqlite3, or a synchronous psycopg 3
connection).

The backends only run these functions: `Store.sql_read(fn)` on a reading connection,
`Store.sql_write(fn)` inside a transaction (SQLite's writer batch, or one opened here on
PostgreSQL's autocommit connections). Instants are ISO text in SQLite and TIMESTAMPTZ in
PostgreSQL; both come back as aware UTC datetimes. Every aggregate is an index probe or a
scan bounded by a time-ordered id range, so evaluating the rules every few seconds costs
the database next to nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from hookgate.ids import floor_id, new_id
from hookgate.store.dialect import DIALECTS, DialectName
from hookgate.timeutil import iso, parse_iso

Dialect = DialectName

# Most rows a count looks at: "more than 100,000 events waiting" says enough at 3 a.m.,
# and the count stays bounded however far behind processing is.
COUNT_CAP = 100_000

_ALERT_COLUMNS = (
    "id, rule, kind, subject, severity, status, summary, details, fired_at, last_seen_at, "
    "notified_at, notifications, resolved_at, resolved_notified"
)
_INSTANTS = ("fired_at", "last_seen_at", "notified_at", "resolved_at", "received_at")


def dialect_of(conn: Any) -> Dialect:
    """Which backend a connection belongs to."""
    return "sqlite" if type(conn).__module__.startswith("sqlite3") else "postgresql"


def _sql(conn: Any, text: str) -> str:
    return DIALECTS[dialect_of(conn)].sql(text)


def _instant(conn: Any, moment: datetime) -> Any:
    return DIALECTS[dialect_of(conn)].instant(moment)


def _flag(conn: Any, value: bool) -> Any:
    return DIALECTS[dialect_of(conn)].flag(value)


def _read_instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_iso(value)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def _rows(conn: Any, text: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    cursor.execute(_sql(conn, text), tuple(params))
    rows = cursor.fetchall()
    if not rows:
        return []
    if isinstance(rows[0], Mapping):
        return [dict(row) for row in rows]
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _execute(conn: Any, text: str, params: Sequence[Any] = ()) -> int:
    cursor = conn.cursor()
    cursor.execute(_sql(conn, text), tuple(params))
    return int(cursor.rowcount)


@contextlib.contextmanager
def transaction(conn: Any) -> Iterator[None]:
    """A transaction on PostgreSQL's autocommit connections; SQLite's writer already runs
    every job inside its batch's transaction."""
    if dialect_of(conn) == "sqlite":
        yield
        return
    with conn.transaction():
        yield


# -- what the rules look at --------------------------------------------------------------


def backlog(conn: Any) -> dict[str, Any]:
    """Received events not yet processed (count capped at COUNT_CAP) and the oldest one's
    arrival."""
    count = _rows(
        conn,
        "SELECT count(*) AS n FROM (SELECT 1 FROM inbox WHERE status = 'received' LIMIT ?) AS b",
        (COUNT_CAP,),
    )[0]["n"]
    oldest = _rows(
        conn,
        "SELECT received_at FROM inbox WHERE status = 'received' ORDER BY id LIMIT 1",
    )
    return {
        "count": int(count),
        "oldest": _read_instant(oldest[0]["received_at"]) if oldest else None,
    }


def quarantined(conn: Any) -> dict[str, int]:
    """Quarantined events per source (held back for a re-parse), each capped."""
    rows = _rows(
        conn,
        "SELECT source, count(*) AS n FROM (SELECT source FROM inbox "
        "WHERE status = 'quarantined' LIMIT ?) AS q GROUP BY source",
        (COUNT_CAP,),
    )
    return {row["source"]: int(row["n"]) for row in rows}


def last_received(conn: Any, source: str) -> datetime | None:
    """When `source` last brought an event (accepted, whatever became of it)."""
    rows = _rows(
        conn, "SELECT received_at FROM inbox WHERE source = ? ORDER BY id DESC LIMIT 1", (source,)
    )
    return _read_instant(rows[0]["received_at"]) if rows else None


def rejections_since(conn: Any, since: datetime) -> list[dict[str, Any]]:
    """Refusals per source and reason in the minutes from `since`'s minute on (every
    refusal is counted there, recorded in full or not)."""
    minute = since.replace(second=0, microsecond=0)
    rows = _rows(
        conn,
        "SELECT source, reason, sum(total) AS total FROM rejection_counts "
        "WHERE minute >= ? GROUP BY source, reason",
        (_instant(conn, minute),),
    )
    return [
        {"source": row["source"], "reason": row["reason"], "total": int(row["total"])}
        for row in rows
    ]


def dead_deliveries(conn: Any) -> dict[str, int]:
    """Deliveries given up (waiting for a replay) per destination, each capped."""
    rows = _rows(
        conn,
        "SELECT destination, count(*) AS n FROM (SELECT destination FROM deliveries "
        "WHERE status = 'dead' LIMIT ?) AS d GROUP BY destination",
        (COUNT_CAP,),
    )
    return {row["destination"]: int(row["n"]) for row in rows}


def failing_streaks(conn: Any, destinations: Sequence[str], depth: int) -> dict[str, int]:
    """Per destination, how many attempts failed since its latest delivered one (counted
    up to `depth`): the newest tried deliveries that are not delivered, all of whose
    attempts failed. Seen from the database, so every instance's attempts count."""
    streaks: dict[str, int] = {}
    for name in destinations:
        rows = _rows(
            conn,
            "SELECT status, attempts FROM deliveries WHERE destination = ? AND attempts > 0 "
            "ORDER BY id DESC LIMIT ?",
            (name, depth),
        )
        streak = 0
        for row in rows:
            if row["status"] == "delivered":
                break
            streak += int(row["attempts"])
        streaks[name] = streak
    return streaks


def fallback_decisions(conn: Any, since: datetime) -> dict[str, int]:
    """Zaptec starts answered by the fallback (deadline or storage failure) per source."""
    rows = _rows(
        conn,
        "SELECT source, count(*) AS n FROM decisions WHERE id >= ? AND fallback = ? "
        "GROUP BY source",
        (floor_id(since), _flag(conn, True)),
    )
    return {row["source"]: int(row["n"]) for row in rows}


def budget_refusals(conn: Any, since: datetime) -> list[dict[str, Any]]:
    """Starts refused for a used-up budget (NO_CREDIT) since `since`, with their reasons."""
    rows = _rows(
        conn,
        "SELECT id, source, token, reasons FROM decisions WHERE id >= ? AND result = 'NO_CREDIT' "
        "ORDER BY id LIMIT 1000",
        (floor_id(since),),
    )
    out = []
    for row in rows:
        reasons = row["reasons"]
        if isinstance(reasons, str | bytes):
            reasons = msgspec.json.decode(reasons)
        out.append({**row, "reasons": reasons})
    return out


def rejections_by_request(conn: Any, request_id: str) -> list[dict[str, Any]]:
    """Rejections recorded for a request id (the one its problem answer showed)."""
    return _rows(
        conn,
        "SELECT id FROM rejections WHERE request_id = ? ORDER BY id DESC LIMIT 20",
        (request_id,),
    )


# -- the alert history ------------------------------------------------------------------


class AlertRow(msgspec.Struct, kw_only=True):
    """One alert episode as stored."""

    id: str
    rule: str
    kind: str
    subject: str
    severity: str
    status: str  # firing | resolved
    summary: str
    details: dict[str, Any]
    fired_at: datetime
    last_seen_at: datetime
    notified_at: datetime | None = None
    notifications: int = 0
    resolved_at: datetime | None = None
    resolved_notified: bool = False

    def public(self) -> dict[str, Any]:
        """The episode as the API and the CLI show it (instants as ISO text)."""
        item = msgspec.structs.asdict(self)
        for key in _INSTANTS:
            if isinstance(item.get(key), datetime):
                item[key] = iso(item[key])
        return item


def _alert(row: Mapping[str, Any]) -> AlertRow:
    details = row["details"]
    if isinstance(details, str | bytes):
        details = msgspec.json.decode(details)
    return AlertRow(
        id=row["id"],
        rule=row["rule"],
        kind=row["kind"],
        subject=row["subject"],
        severity=row["severity"],
        status=row["status"],
        summary=row["summary"],
        details=details,
        fired_at=_read_instant(row["fired_at"]) or datetime.now(UTC),
        last_seen_at=_read_instant(row["last_seen_at"]) or datetime.now(UTC),
        notified_at=_read_instant(row["notified_at"]),
        notifications=int(row["notifications"]),
        resolved_at=_read_instant(row["resolved_at"]),
        resolved_notified=bool(row["resolved_notified"]),
    )


def open_alerts(conn: Any) -> list[AlertRow]:
    """Every firing episode."""
    rows = _rows(conn, f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE status = 'firing' ORDER BY id")
    return [_alert(row) for row in rows]


def list_alerts(
    conn: Any, status: str | None, rule: str | None, before: str | None, limit: int
) -> list[AlertRow]:
    """Episodes newest first, optionally only firing or resolved ones or of one rule,
    older than the id `before` (paging)."""
    clauses, params = [], []
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if rule is not None:
        clauses.append("rule = ?")
        params.append(rule)
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
    rows = _rows(
        conn,
        f"SELECT {_ALERT_COLUMNS} FROM alerts {where}ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )
    return [_alert(row) for row in rows]


def get_alert(conn: Any, alert_id: str) -> AlertRow | None:
    """One episode."""
    rows = _rows(conn, f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
    return _alert(rows[0]) if rows else None


def fire(
    conn: Any,
    *,
    rule: str,
    kind: str,
    subject: str,
    severity: str,
    summary: str,
    details: Mapping[str, Any],
    now: datetime,
) -> AlertRow | None:
    """Open an episode, notified now; None when one is already open for the rule and
    subject (another evaluator got there first: the unique index decides)."""
    alert_id = new_id()
    with transaction(conn):
        changed = _execute(
            conn,
            f"INSERT INTO alerts ({_ALERT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?, 1, NULL, ?) "
            "ON CONFLICT DO NOTHING",
            (
                alert_id,
                rule,
                kind,
                subject,
                severity,
                summary,
                msgspec.json.encode(dict(details)).decode(),
                _instant(conn, now),
                _instant(conn, now),
                _instant(conn, now),
                _flag(conn, False),
            ),
        )
    return get_alert(conn, alert_id) if changed == 1 else None


def touch(
    conn: Any,
    alert_id: str,
    *,
    summary: str,
    details: Mapping[str, Any],
    now: datetime,
    notified: bool,
) -> None:
    """The condition still holds: note when it was last seen and what it looks like now;
    `notified`: a repeat notification goes out now."""
    with transaction(conn):
        _execute(
            conn,
            "UPDATE alerts SET last_seen_at = ?, summary = ?, details = ?"
            + (", notified_at = ?, notifications = notifications + 1" if notified else "")
            + " WHERE id = ? AND status = 'firing'",
            (
                _instant(conn, now),
                summary,
                msgspec.json.encode(dict(details)).decode(),
                *((_instant(conn, now),) if notified else ()),
                alert_id,
            ),
        )


def resolve(conn: Any, alert_id: str, now: datetime) -> bool:
    """Close an episode; False when it was closed already."""
    with transaction(conn):
        changed = _execute(
            conn,
            "UPDATE alerts SET status = 'resolved', resolved_at = ?, resolved_notified = ? "
            "WHERE id = ? AND status = 'firing'",
            (_instant(conn, now), _flag(conn, True), alert_id),
        )
    return changed == 1


def take_lease(conn: Any, name: str, owner: str, now: datetime, seconds: float) -> bool:
    """Hold (or renew) the named lease until `now + seconds` unless another owner holds
    it unexpired: one alert evaluator across every instance on one database."""
    from datetime import timedelta

    until = now + timedelta(seconds=seconds)
    with transaction(conn):
        _execute(
            conn,
            "INSERT INTO alert_leases (name, owner, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
            "expires_at = excluded.expires_at "
            "WHERE alert_leases.owner = excluded.owner OR alert_leases.expires_at < ?",
            (name, owner, _instant(conn, until), _instant(conn, now)),
        )
        rows = _rows(conn, "SELECT owner FROM alert_leases WHERE name = ?", (name,))
    return bool(rows) and rows[0]["owner"] == owner


def release_lease(conn: Any, name: str, owner: str) -> None:
    """Give the lease up (on shutdown) so another instance takes over at once."""
    with transaction(conn):
        _execute(conn, "DELETE FROM alert_leases WHERE name = ? AND owner = ?", (name, owner))
