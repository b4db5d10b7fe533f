"""Authorization data: decisions, approved sessions, consumption, rule entities and the
change log decision engines follow. Written once against `Tx` (store/tx.py).

Change-log entries go through `Tx.changed`: SQLite appends them at once (its one writer
orders them), PostgreSQL at the end of the batch under one advisory lock, so `seq` order
is commit order across instances.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from hookgate.domain.decisions import (
    AuthorizedSession,
    ConsumptionReport,
    Decision,
    DecisionRecord,
    Limit,
    SessionEnd,
    check_energy,
    check_sessions,
)
from hookgate.domain.errors import Abandoned, AlreadyExists
from hookgate.domain.events import InboundEvent, SessionEndResult
from hookgate.domain.queries import DecisionFilter, Page
from hookgate.domain.rules import AuthChange, AuthEntity, AuthSnapshot
from hookgate.domain.tariffs import Pricing
from hookgate.domain.tariffs import Session as PricedSession
from hookgate.ids import new_id
from hookgate.store.dialect import Dialect
from hookgate.store.inbox import existing_id, insert_event, insert_event_statement, json_text
from hookgate.store.paging import equal_filters, id_page
from hookgate.store.tx import Row, Tx
from hookgate.timeutil import parse_iso, utcnow

# -- decisions and sessions ------------------------------------------------------------

_DECISION_INSERT = (
    "INSERT INTO decisions (id, decided_at, source, event_id, charger_id, token, "
    "user_id, installation_id, result, reasons, session_id, fallback, latency_us) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The end may have been recorded first (a fallback answer audited late): the row exists
# as `unmatched`; it becomes the ended session it really was.
_SESSION_UPSERT = (
    "INSERT INTO authorized_sessions (session_id, source, status, charger_id, "
    "token, decision_id, started_at, start_event_id, group_id, reserved_kwh, installation_id) "
    "VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (source, session_id) DO UPDATE SET "
    "status = CASE WHEN authorized_sessions.status = 'unmatched' THEN 'ended' "
    "ELSE authorized_sessions.status END, "
    "charger_id = excluded.charger_id, token = coalesce(authorized_sessions.token, "
    "excluded.token), decision_id = excluded.decision_id, "
    "started_at = excluded.started_at, start_event_id = excluded.start_event_id, "
    "group_id = coalesce(authorized_sessions.group_id, excluded.group_id), "
    "reserved_kwh = excluded.reserved_kwh, "
    "installation_id = coalesce(excluded.installation_id, authorized_sessions.installation_id)"
)


def _decision_params(d: Dialect, decision: Decision) -> tuple[Any, ...]:
    text = d.text
    return (
        decision.id,
        d.instant(decision.decided_at),
        decision.source,
        decision.event_id,
        text(decision.charger_id),
        text(decision.token),
        text(decision.user_id),
        text(decision.installation_id),
        decision.result,
        json_text(decision.reasons),
        text(decision.session_id),
        d.flag(decision.fallback),
        decision.latency_us,
    )


def _session_params(d: Dialect, event: InboundEvent, decision: Decision) -> tuple[Any, ...]:
    text = d.text
    return (
        text(decision.session_id),
        decision.source,
        text(decision.charger_id),
        text(decision.token),
        decision.id,
        d.instant(decision.decided_at),
        event.id,
        text(decision.group_id),
        decision.reserved_kwh,
        text(decision.installation_id),
    )


async def _insert_start(tx: Tx, event: InboundEvent, decision: Decision) -> None:
    """A start's event, decision and (when approved) session: one round trip."""
    d = tx.dialect
    statements: list[tuple[str, Sequence[Any]]] = [
        insert_event_statement(d, event),
        (_DECISION_INSERT, _decision_params(d, decision)),
    ]
    if decision.session_id is not None:
        statements.append((_SESSION_UPSERT, _session_params(d, event, decision)))
    await tx.write_all(statements)
    if decision.session_id is not None:
        tx.changed("session", f"{decision.source}|{decision.session_id}")


async def record_session_start(
    tx: Tx,
    event: InboundEvent,
    decision: Decision,
    claim: Callable[[], bool] | None,
    limits: Sequence[Limit],
) -> None:
    """The start call and its decision together; an approved session tracked. The
    caller holds `limit_locks(limits)` (PostgreSQL: advisory locks) for the batch."""
    if claim is not None and not claim():
        raise Abandoned("the deadline fallback answered first")
    for limit in limits:
        await check_limit(tx, limit, decision.session_id)
    await _insert_start(tx, event, decision)


def limit_locks(limits: Sequence[Limit]) -> list[str]:
    """The lock names serialising approvals against `limits` across instances."""
    return [f"limit:{lim.subject}:{lim.subject_id}" for lim in limits]


async def record_fallback(
    tx: Tx, event: InboundEvent, decision: Decision, void_session: str | None
) -> None:
    """The fallback answer (and its event if new); void a session the engine approved
    but the provider never heard of."""
    await _insert_start(tx, event, decision)
    if void_session is not None:
        await tx.execute(
            "UPDATE authorized_sessions SET status = 'void' WHERE source = ? AND session_id = ?",
            (decision.source, tx.dialect.text(void_session)),
        )
        tx.changed("session", f"{decision.source}|{void_session}")


async def record_session_end(
    tx: Tx, event: InboundEvent, end: SessionEnd, pricing: Pricing | None = None
) -> SessionEndResult:
    """The end call once; its session closed (or recorded as unmatched); its energy
    accounted, with the money `pricing` makes of it when the end reports none (in
    memory: the session's start is read by the same statement that finds it)."""
    d = tx.dialect
    text = d.text
    session_id, found = end.session_ids[0], None
    for candidate in end.session_ids:
        found = await tx.one(
            "SELECT status, token, group_id, charger_id, installation_id, started_at "
            "FROM authorized_sessions "
            f"WHERE session_id = ? AND source = ?{d.for_update}",
            (text(candidate), event.source),
        )
        if found is not None:
            session_id = candidate
            break
    status = found["status"] if found else None
    matched = status in ("active", "ended")
    if not matched and "unmatched" not in event.flags:
        event.flags = [*event.flags, "unmatched"]
    if not await insert_event(tx, event):
        return SessionEndResult(False, await existing_id(tx, event), matched)
    ended_at = end.ended_at or event.received_at
    if status is None:
        await tx.execute(
            "INSERT INTO authorized_sessions (session_id, source, status, ended_at, "
            "energy_kwh, end_event_id, token, group_id, charger_id, installation_id) "
            "VALUES (?, ?, 'unmatched', ?, ?, ?, ?, ?, ?, ?)",
            (
                text(session_id),
                event.source,
                d.instant(ended_at),
                end.energy_kwh,
                event.id,
                text(end.token),
                text(end.group_id),
                text(end.charger_id),
                text(end.installation_id),
            ),
        )
    elif status == "active":
        await tx.execute(
            "UPDATE authorized_sessions SET status = 'ended', ended_at = ?, "
            "energy_kwh = ?, end_event_id = ? WHERE source = ? AND session_id = ?",
            (d.instant(ended_at), end.energy_kwh, event.id, event.source, text(session_id)),
        )
    tx.changed("session", f"{event.source}|{session_id}")
    if end.energy_kwh is not None:
        token = (found["token"] if found else None) or end.token
        priced = None
        if pricing is not None and end.money is None:
            started = end.started_at or (_instant(found["started_at"]) if found else None)
            session = PricedSession(
                source=event.source,
                charger_id=end.charger_id or (found["charger_id"] if found else None),
                installation_id=end.installation_id
                or (found["installation_id"] if found else None),
                started_at=started,
                ended_at=ended_at,
                energy_kwh=end.energy_kwh,
            )
            priced = pricing(session, token)
        report = ConsumptionReport(
            session_key=f"session:{session_id}",
            origin=event.provider,  # the provider that reported the end
            token=token,
            group_id=(found["group_id"] if found else None) or end.group_id,
            kwh=end.energy_kwh,
            money=priced.total if priced else end.money,
            currency=priced.currency if priced else end.currency,
            occurred_at=ended_at,
        )
        await account(tx, event.source, report)
    return SessionEndResult(True, event.id, matched)


def _instant(value: Any) -> datetime | None:
    """A stored instant as either driver returns it (SQLite: text)."""
    if value is None or isinstance(value, datetime):
        return value
    return parse_iso(str(value))


# -- limits and consumption ------------------------------------------------------------


async def check_limit(tx: Tx, limit: Limit, session_id: str | None) -> None:
    """Raise LimitReached when `limit` is broken by what is committed. The caller
    serialises approvals per subject (SQLite: one writer; PostgreSQL: an advisory lock
    per subject), so nothing slips in between this check and the commit."""
    d = tx.dialect
    column = "token" if limit.subject == "token" else "group_id"
    active = await tx.all(
        f"SELECT reserved_kwh FROM authorized_sessions WHERE {column} = ? "
        f"AND status = 'active' AND started_at >= ? AND session_id {d.distinct_from} ?",
        (limit.subject_id, d.instant(limit.active_since), session_id),
    )
    check_sessions(limit, len(active))
    if limit.max_kwh is not None and limit.since is not None and limit.until is not None:
        held = sum((Decimal(r["reserved_kwh"] or 0) for r in active), Decimal(0))
        where = f"FROM consumption WHERE {column} = ? AND occurred_at >= ? AND occurred_at < ?"
        params = (limit.subject_id, d.instant(limit.since), d.instant(limit.until))
        if d.exact_numeric:
            row = await tx.one(
                f"SELECT coalesce(sum(CAST(kwh AS NUMERIC)), 0) AS kwh {where}", params
            )
            used = Decimal(row["kwh"]) if row else Decimal(0)
        else:
            rows = await tx.all(f"SELECT kwh {where}", params)
            used = sum((Decimal(r["kwh"]) for r in rows), Decimal(0))
        check_energy(limit, used, held)


def account_sql(d: Dialect) -> str:
    """A session's consumption: the first report inserts it; a later one replaces the
    energy only when larger, the money when it names some, and changes nothing (returns
    no row, so no change-log entry) when it would change neither. kwh is decimal text."""
    return (
        "INSERT INTO consumption AS c (id, source, session_key, origin, token, group_id, kwh, "
        "money, currency, occurred_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (source, session_key) DO UPDATE SET "
        "kwh = CASE WHEN CAST(excluded.kwh AS NUMERIC) > CAST(c.kwh AS NUMERIC) "
        "THEN excluded.kwh ELSE c.kwh END, "
        "money = coalesce(excluded.money, c.money), "
        "currency = coalesce(excluded.currency, c.currency), "
        "token = coalesce(c.token, excluded.token), "
        "group_id = coalesce(c.group_id, excluded.group_id), "
        "occurred_at = excluded.occurred_at "
        "WHERE CAST(excluded.kwh AS NUMERIC) > CAST(c.kwh AS NUMERIC) "
        f"OR (excluded.money IS NOT NULL AND excluded.money {d.distinct_from} c.money) "
        "RETURNING id"
    )


def account_params(d: Dialect, source: str, report: ConsumptionReport) -> tuple[Any, ...]:
    """The parameters of `account_sql` for one report."""
    text = d.text
    return (
        new_id(),
        source,
        text(report.session_key),
        report.origin,
        text(report.token),
        text(report.group_id),
        report.kwh,
        report.money,
        text(report.currency),
        d.instant(report.occurred_at),
    )


async def account(tx: Tx, source: str, report: ConsumptionReport) -> None:
    """Record a session's consumption; a later report replaces a smaller earlier one."""
    d = tx.dialect
    rows = await tx.all(account_sql(d), account_params(d, source, report))
    if rows:
        tx.changed("consumption", rows[0]["id"])


# -- reads -----------------------------------------------------------------------------


_DECISION_COLUMNS = (
    "id, decided_at, source, event_id, charger_id, token, user_id, installation_id, "
    "result, reasons, session_id, fallback, latency_us"
)


def decision_row(row: Mapping[str, Any]) -> DecisionRecord:
    """A decision as callers see it."""
    return DecisionRecord(
        id=row["id"],
        decided_at=row["decided_at"],
        source=row["source"],
        event_id=row["event_id"],
        charger_id=row["charger_id"],
        token=row["token"],
        user_id=row["user_id"],
        installation_id=row["installation_id"],
        result=row["result"],
        reasons=msgspec.json.decode(row["reasons"]),
        session_id=row["session_id"],
        fallback=bool(row["fallback"]),
        latency_us=row["latency_us"],
    )


async def list_decisions(
    tx: Tx, where: DecisionFilter, cursor: str | None, limit: int
) -> Page[DecisionRecord]:
    """Authorization decisions, newest first."""
    clauses, params = equal_filters(
        tx,
        [
            ("source", where.source),
            ("token", where.token.strip().upper() if where.token else None),
            ("result", where.result),
        ],
        "decided_at",
        where.since,
    )
    if where.until is not None:
        clauses.append("decided_at < ?")
        params.append(tx.dialect.instant(where.until))
    return await id_page(
        tx, "decisions", _DECISION_COLUMNS, clauses, params, cursor, limit, decision_row
    )


async def get_session(tx: Tx, source: str, session_id: str) -> AuthorizedSession | None:
    """An authorized (or unmatched) Zaptec session."""
    row = await tx.one(
        "SELECT session_id, source, status, charger_id, token, decision_id, started_at, "
        "ended_at, energy_kwh, start_event_id, end_event_id, group_id, reserved_kwh "
        "FROM authorized_sessions WHERE source = ? AND session_id = ?",
        (source, tx.dialect.text(session_id)),
    )
    return AuthorizedSession(**tx.dialect.plain(row)) if row else None


# -- rule entities and the change log --------------------------------------------------


def _entity(kind: str, row: Row) -> AuthEntity:
    return AuthEntity(
        kind=kind, key=row["key"], doc=row["doc"].encode(), managed_by=row["managed_by"]
    )


async def auth_snapshot(tx: Tx, since: datetime) -> AuthSnapshot:
    """All rule entities, live sessions and consumption since `since`, with the
    change-log position of the same snapshot."""
    d = tx.dialect
    async with tx.snapshot():
        seq = await tx.one("SELECT coalesce(max(seq), 0) AS seq FROM auth_changes")
        entities = [
            _entity(r["kind"], r)
            for r in await tx.all("SELECT kind, key, doc, managed_by FROM auth_entities")
        ]
        sessions = [
            d.plain(r)
            for r in await tx.all("SELECT * FROM authorized_sessions WHERE status = 'active'")
        ]
        consumption = [
            d.plain(r)
            for r in await tx.all(
                "SELECT * FROM consumption WHERE occurred_at >= ?", (d.instant(since),)
            )
        ]
    assert seq is not None
    return AuthSnapshot(
        seq=int(seq["seq"]), entities=entities, sessions=sessions, consumption=consumption
    )


async def auth_changes(tx: Tx, after: int, limit: int) -> list[AuthChange]:
    """Change-log entries after `after`, oldest first, with their current rows."""
    rows = await tx.all(
        "SELECT seq, kind, key FROM auth_changes WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    )
    current = await _current(tx, {(r["kind"], r["key"]) for r in rows})
    return [
        AuthChange(
            seq=r["seq"], kind=r["kind"], key=r["key"], row=current.get((r["kind"], r["key"]))
        )
        for r in rows
    ]


async def _current(tx: Tx, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows change-log entries point at, as they are now, a few hundred at a time
    (under load the log grows by thousands of entries a second)."""
    d = tx.dialect
    by_kind: dict[str, list[str]] = {}
    for kind, key in wanted:
        if kind == "session":  # keyed "source|session_id": group by source for the index
            source, _, session_id = key.partition("|")
            by_kind.setdefault(f"session|{source}", []).append(session_id)
        else:
            by_kind.setdefault(kind, []).append(key)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, keys in by_kind.items():
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            if kind.startswith("session|"):
                source = kind.partition("|")[2]
                clause, params = d.any_of("session_id", chunk)
                for row in await tx.all(
                    f"SELECT * FROM authorized_sessions WHERE source = ? AND {clause}",
                    [source, *params],
                ):
                    found[("session", f"{source}|{row['session_id']}")] = d.plain(row)
            elif kind == "consumption":
                clause, params = d.any_of("id", chunk)
                for row in await tx.all(f"SELECT * FROM consumption WHERE {clause}", params):
                    found[(kind, row["id"])] = d.plain(row)
            else:
                clause, params = d.any_of("key", chunk)
                for row in await tx.all(
                    f"SELECT key, doc FROM auth_entities WHERE kind = ? AND {clause}",
                    [kind, *params],
                ):
                    found[(kind, row["key"])] = {"doc": row["doc"].encode()}
    return found


_ENTITY_UPSERT = (
    "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO UPDATE SET "
    "doc = excluded.doc, managed_by = excluded.managed_by, updated_at = excluded.updated_at"
)


async def auth_write(
    tx: Tx, put: list[AuthEntity], delete: list[tuple[str, str]], *, create: bool = False
) -> int:
    """Put and delete rule entities; how many were deleted. With `create`, a taken key
    raises AlreadyExists (and the caller's transaction rolls back)."""
    now = tx.dialect.instant(utcnow())
    for entity in put:
        values = (entity.kind, entity.key, entity.doc.decode(), entity.managed_by, now)
        if create:
            changed = await tx.execute(
                "INSERT INTO auth_entities (kind, key, doc, managed_by, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, key) DO NOTHING",
                values,
            )
            if changed != 1:
                raise AlreadyExists(f"{entity.kind} {entity.key} already exists")
        else:
            await tx.execute(_ENTITY_UPSERT, values)
        tx.changed(entity.kind, entity.key)
    deleted = 0
    for kind, key in delete:
        if await tx.execute("DELETE FROM auth_entities WHERE kind = ? AND key = ?", (kind, key)):
            tx.changed(kind, key)
            deleted += 1
    return deleted


async def auth_get(tx: Tx, kind: str, key: str) -> AuthEntity | None:
    """One rule entity."""
    row = await tx.one(
        "SELECT key, doc, managed_by FROM auth_entities WHERE kind = ? AND key = ?", (kind, key)
    )
    return _entity(kind, row) if row else None


async def auth_list(tx: Tx, kind: str, after: str | None, limit: int) -> list[AuthEntity]:
    """Rule entities of a kind in key (byte) order, after `after`."""
    order = f"key{tx.dialect.byte_order}"
    rows = await tx.all(
        f"SELECT key, doc, managed_by FROM auth_entities WHERE kind = ? AND {order} > ? "
        f"ORDER BY {order} LIMIT ?",
        (kind, after or "", limit),
    )
    return [_entity(kind, r) for r in rows]


SYNC_CONFIG_LOCK = "sync_config"


async def auth_sync_config(tx: Tx, entities: list[AuthEntity]) -> int:
    """Make the configuration-managed entities exactly `entities`; how many changed.
    Instances starting together write the same rows: the caller holds SYNC_CONFIG_LOCK."""
    wanted = {(e.kind, e.key): e for e in entities}
    changes = 0
    for row in await tx.all("SELECT kind, key, doc FROM auth_entities WHERE managed_by = 'config'"):
        kind, key = row["kind"], row["key"]
        entity = wanted.get((kind, key))
        if entity is None:
            await tx.execute("DELETE FROM auth_entities WHERE kind = ? AND key = ?", (kind, key))
            tx.changed(kind, key)
            changes += 1
        elif entity.doc.decode() == row["doc"]:
            del wanted[(kind, key)]
    now = tx.dialect.instant(utcnow())
    for entity in wanted.values():
        await tx.execute(
            _ENTITY_UPSERT, (entity.kind, entity.key, entity.doc.decode(), "config", now)
        )
        tx.changed(entity.kind, entity.key)
        changes += 1
    return changes
