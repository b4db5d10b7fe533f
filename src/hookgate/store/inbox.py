"""The inbox and the rejection log: what providers sent, accepted or refused.

Written once for every backend against `Tx` (store/tx.py); the PostgreSQL driver inserts
plain ingest in bulk instead (`unnest`), with the same columns and the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.events import (
    Event,
    EventWithBody,
    InboundEvent,
    IngestResult,
    Rejection,
    RejectionCount,
    StoredRejection,
    StoredRejectionDetail,
)
from hookgate.domain.queries import EventFilter, Page
from hookgate.store.dialect import DIALECTS, Dialect
from hookgate.store.paging import equal_filters, id_page
from hookgate.store.tx import KeyTaken, Row, Tx

_json = msgspec.json.Encoder()
_decode = msgspec.json.decode
E = TypeVar("E", bound=Event)


def json_text(value: Any) -> str:
    """A JSON column's value as text (both backends store the text as written)."""
    return _json.encode(value).decode()


_INBOX_COLUMNS = (
    "id, source, provider, event_type, received_at, dedup_key, subject, status, flags, "
    "headers, document, raw_body, body_sha256, request_id, trace_context"
)


def _insert_event_sql(d: Dialect) -> str:
    j = d.json_mark
    values = f"?, ?, ?, ?, ?, ?, ?, ?, {j}, {j}, {j}, ?, ?, ?, ?"
    if not d.probe_before_insert:
        return f"INSERT INTO inbox ({_INBOX_COLUMNS}) VALUES ({values}) ON CONFLICT DO NOTHING"
    return (
        f"INSERT INTO inbox ({_INBOX_COLUMNS}) SELECT {values} WHERE NOT EXISTS "
        "(SELECT 1 FROM inbox x WHERE x.source = ? AND x.dedup_key = ?) ON CONFLICT DO NOTHING"
    )


_INSERT_EVENT = {name: _insert_event_sql(d) for name, d in DIALECTS.items()}


def insert_event_statement(d: Dialect, event: InboundEvent) -> tuple[str, tuple[Any, ...]]:
    """The inbox insert of one event (nothing when its dedup key is taken)."""
    text = d.text
    params: tuple[Any, ...] = (
        event.id,
        text(event.source),
        event.provider,
        text(event.event_type),
        d.instant(event.received_at),
        text(event.dedup_key),
        text(event.subject),
        event.status,
        json_text(event.flags),
        json_text(event.headers),
        json_text(event.document),
        event.raw_body,
        event.body_sha256,
        event.request_id,
        event.trace_context,
    )
    if d.probe_before_insert:
        params += (text(event.source), text(event.dedup_key))
    return _INSERT_EVENT[d.name], params


async def insert_event(tx: Tx, event: InboundEvent) -> bool:
    """Insert unless (source, dedup_key) is taken; True when inserted."""
    return await tx.execute(*insert_event_statement(tx.dialect, event)) == 1


async def existing_id(tx: Tx, event: InboundEvent) -> str:
    """The id of the stored event holding `event`'s dedup key."""
    found = await find_event(tx, event.source, event.dedup_key)
    return found or event.id


async def ingest(
    tx: Tx, event: InboundEvent, consumption: ConsumptionReport | None = None
) -> IngestResult:
    """Store one event once; account its consumption when it is new."""
    from hookgate.store.authz import account

    if await insert_event(tx, event):
        if consumption is not None:
            await account(tx, event.source, consumption)
        return IngestResult(True, event.id)
    return IngestResult(False, await existing_id(tx, event))


async def find_event(tx: Tx, source: str, dedup_key: str) -> str | None:
    """The id of the inbox event of `source` holding `dedup_key`, if any."""
    text = tx.dialect.text
    row = await tx.one(
        "SELECT id FROM inbox WHERE source = ? AND dedup_key = ?", (text(source), text(dedup_key))
    )
    return str(row["id"]) if row else None


def _event_columns(d: Dialect) -> str:
    return (
        "id, source, provider, event_type, received_at, dedup_key, subject, status, flags, "
        f"headers, document, body_sha256, {d.octet_length}(raw_body) AS body_size, request_id"
    )


def event_row(row: Mapping[str, Any]) -> Event:
    """An inbox row as callers see it (JSON columns decoded, instants as ISO text)."""
    return _event(Event, row)


def _event(cls: type[E], row: Mapping[str, Any], **extra: Any) -> E:
    """Built directly, without a dict in between (a listing builds 50 of them)."""
    document = row["document"]
    return cls(
        id=row["id"],
        source=row["source"],
        provider=row["provider"],
        type=row["event_type"],
        received_at=row["received_at"],
        dedup_key=row["dedup_key"],
        subject=row["subject"],
        status=row["status"],
        flags=_decode(row["flags"]),
        headers=_decode(row["headers"]),
        document=_decode(document) if document else None,
        body_sha256=row["body_sha256"],
        body_size=row["body_size"],
        request_id=row["request_id"],
        **extra,
    )


async def list_events(tx: Tx, where: EventFilter, cursor: str | None, limit: int) -> Page[Event]:
    """Inbox rows without raw bodies, newest first."""
    clauses, params = equal_filters(
        tx,
        [
            ("source", where.source),
            ("provider", where.provider),
            ("event_type", where.event_type),
            ("status", where.status),
        ],
        "received_at",
        where.since,
    )
    columns = _event_columns(tx.dialect)
    return await id_page(tx, "inbox", columns, clauses, params, cursor, limit, event_row)


async def get_event(tx: Tx, event_id: str) -> EventWithBody | None:
    """One inbox row with its raw body."""
    row = await tx.one(
        f"SELECT {_event_columns(tx.dialect)}, raw_body FROM inbox WHERE id = ?", (event_id,)
    )
    if row is None:
        return None
    return _event(EventWithBody, tx.dialect.plain(row), raw_body=bytes(row["raw_body"]))


async def requeue_event(
    tx: Tx,
    event_id: str,
    document: Any,
    event_type: str,
    dedup_key: str,
    subject: str | None,
    flags: list[str],
) -> bool:
    """Replace a quarantined event's parsed form and queue it for processing; False when
    the new dedup key is taken."""
    text = tx.dialect.text
    try:
        async with tx.savepoint():
            changed = await tx.execute(
                "UPDATE inbox SET document = ?, event_type = ?, dedup_key = ?, subject = ?, "
                "flags = ?, status = 'received', error = NULL WHERE id = ?",
                (
                    json_text(document),
                    text(event_type),
                    text(dedup_key),
                    text(subject),
                    json_text(flags),
                    event_id,
                ),
            )
    except KeyTaken:
        return False
    return changed == 1


async def secret(tx: Tx, key: str, make: bytes) -> bytes:
    """A value stored once per database: the first writer's wins."""
    await tx.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
        (key, make.hex()),
    )
    row = await tx.one("SELECT value FROM meta WHERE key = ?", (key,))
    assert row is not None
    return bytes.fromhex(row["value"])


async def put_meta(tx: Tx, key: str, value: str) -> None:
    """Set a meta value (the health probe's write)."""
    await tx.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


# -- rejections ------------------------------------------------------------------------


def rejection_size(rejection: Rejection) -> int:
    """What a rejection record costs in storage, for the log's size cap."""
    return (
        len(rejection.body)
        + len(rejection.replay or b"")
        + len(rejection.detail)
        + len(rejection.path)
        + sum(len(k) + len(v) for k, v in rejection.headers.items())
    )


async def record_rejection(tx: Tx, rejection: Rejection) -> None:
    """Keep a refused request for inspection."""
    d = tx.dialect
    text = d.text
    await tx.execute(
        "INSERT INTO rejections (id, received_at, source, provider, method, path, "
        "status, reason, detail, headers, remote, body_sha256, body_size, body, replay, "
        "stored_bytes, request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            rejection.id,
            d.instant(rejection.received_at),
            text(rejection.source),
            rejection.provider,
            text(rejection.method),
            text(rejection.path),
            rejection.status,
            rejection.reason,
            text(rejection.detail),
            json_text(rejection.headers),
            text(rejection.remote),
            rejection.body_sha256,
            rejection.body_size,
            rejection.body,
            rejection.replay,
            rejection_size(rejection),
            rejection.request_id,
        ),
    )


async def count_rejections(tx: Tx, counts: Sequence[RejectionCount]) -> None:
    """Add refusal counts to their (minute, source, reason) rows; sorted, so two
    instances adding to the same rows lock them in one order."""
    d = tx.dialect
    rows = sorted(
        (c.minute, d.text(c.source) or "", c.reason, c.total, c.recorded, c.body_bytes)
        for c in counts
    )
    await tx.executemany(
        "INSERT INTO rejection_counts AS r (minute, source, reason, total, recorded, "
        "body_bytes) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (minute, source, reason) "
        "DO UPDATE SET total = r.total + excluded.total, "
        "recorded = r.recorded + excluded.recorded, "
        "body_bytes = r.body_bytes + excluded.body_bytes",
        [(d.instant(row[0]), *row[1:]) for row in rows],
    )


async def trim_rejections(tx: Tx, max_bytes: int) -> int:
    """Delete the oldest rejection records beyond the newest `max_bytes`."""
    return await tx.execute(
        "DELETE FROM rejections WHERE id IN (SELECT id FROM (SELECT id, sum(stored_bytes) "
        "OVER (ORDER BY id DESC ROWS UNBOUNDED PRECEDING) AS running FROM rejections) AS t "
        "WHERE running > ?)",
        (max_bytes,),
    )


_REJECTION_COLUMNS = (
    "id, received_at, source, provider, method, path, status, reason, detail, "
    "headers, remote, body_sha256, body_size, body, rerun_event_id, request_id"
)


def _rejection_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "received_at": row["received_at"],
        "source": row["source"],
        "provider": row["provider"],
        "method": row["method"],
        "path": row["path"],
        "status": row["status"],
        "reason": row["reason"],
        "detail": row["detail"],
        "headers": msgspec.json.decode(row["headers"]),
        "remote": row["remote"],
        "body_sha256": row["body_sha256"],
        "body_size": row["body_size"],
        "body": bytes(row["body"]),
        "rerun_event_id": row["rerun_event_id"],
        "request_id": row["request_id"],
    }


def rejection_row(row: Mapping[str, Any]) -> StoredRejection:
    """A rejection as listings see it."""
    return StoredRejection(**_rejection_fields(row))


async def list_rejections(
    tx: Tx, source: str | None, cursor: str | None, limit: int
) -> Page[StoredRejection]:
    """Rejected requests, newest first."""
    clauses, params = ([], []) if source is None else (["source = ?"], [source])
    return await id_page(
        tx, "rejections", _REJECTION_COLUMNS, clauses, params, cursor, limit, rejection_row
    )


async def get_rejection(tx: Tx, rejection_id: str) -> StoredRejectionDetail | None:
    """One rejection with its body, replay copy and re-run event."""
    row = await tx.one(
        f"SELECT {_REJECTION_COLUMNS}, replay, stored_bytes FROM rejections WHERE id = ?",
        (rejection_id,),
    )
    if row is None:
        return None
    replay = row["replay"]
    return StoredRejectionDetail(
        **_rejection_fields(tx.dialect.plain(row)),
        replay=bytes(replay) if replay is not None else None,
        stored_bytes=int(row["stored_bytes"]),
    )


async def mark_rejection_rerun(tx: Tx, rejection_id: str, event_id: str) -> None:
    """Note the inbox event a re-run of the rejection produced."""
    await tx.execute(
        "UPDATE rejections SET rerun_event_id = ? WHERE id = ?", (event_id, rejection_id)
    )


def rejection_count_row(row: Row) -> dict[str, Any]:
    """A (source, reason) sum of `rejection_counts` as callers see it."""
    total, recorded = int(row["total"]), int(row["recorded"])
    return {
        "source": row["source"],
        "reason": row["reason"],
        "total": total,
        "recorded": recorded,
        "unrecorded": total - recorded,
        "body_bytes": int(row["body_bytes"]),
        "first_minute": row["first_minute"],
        "last_minute": row["last_minute"],
    }


async def rejection_counts(
    tx: Tx, source: str | None, since: datetime, until: datetime | None
) -> list[dict[str, Any]]:
    """Refusals per source and reason in minutes from `since` to before `until`."""
    d = tx.dialect
    clauses, params = ["minute >= ?"], [d.instant(since)]
    if until is not None:
        clauses.append("minute < ?")
        params.append(d.instant(until))
    if source is not None:
        clauses.append("source = ?")
        params.append(source)
    rows = await tx.all(
        "SELECT source, reason, sum(total) AS total, sum(recorded) AS recorded, "
        "sum(body_bytes) AS body_bytes, min(minute) AS first_minute, "
        f"max(minute) AS last_minute FROM rejection_counts WHERE {' AND '.join(clauses)} "
        "GROUP BY source, reason ORDER BY sum(total) DESC, source, reason",
        params,
    )
    return [rejection_count_row(d.plain(row)) for row in rows]
