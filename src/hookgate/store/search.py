"""Search over stored events: full text (raw body and parsed document) and payload fields,
combined with the inbox filters and cursor paging; written once for both backends.

Both backends index the same terms, made here: lower-cased runs of letters and digits of
the raw body and of the document, and one hashed term per payload field and value
(`licenseNumber = ABC123` is the term of ("licensenumber", "abc123"), under the field's
own name and its dotted path). SQLite keeps them in a contentless FTS5 table whose
`ascii` tokenizer only splits on the spaces between them; PostgreSQL in a tsvector made
with `array_to_tsvector` (no parser, no dictionary) under a GIN index. So a query finds
the same events on both.

Processing indexes the events it takes (`SearchIndex`), after they were acknowledged: the
ingest path pays nothing. Received (not yet processed) and quarantined events are found by
the inbox filters but not by text or fields until processing has taken them. See
docs/adr/0020-search-and-aggregates.md.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from hookgate.domain.errors import BadCursor
from hookgate.domain.events import StoredEvent
from hookgate.domain.search import EventHit, EventPage, EventSearch, FieldMatch, InvalidQuery
from hookgate.ids import floor_id
from hookgate.store.dialect import Dialect as DialectObject
from hookgate.store.dialect import DialectName, dialect_of
from hookgate.store.paging import decode_id_cursor, encode_cursor
from hookgate.timeutil import parse_iso

# A dialect object (store/dialect.py) or its name.
Dialect = DialectObject | DialectName

__all__ = [
    "EventHit",
    "EventPage",
    "EventSearch",
    "FieldMatch",
    "InvalidQuery",
    "SearchIndex",
    "event_terms",
    "index_queued",
    "search_events",
    "seq_of",
]

# Longer runs are hashes, base64 or noise nobody searches for; capping them (and the terms
# per event) bounds what one event costs the index.
MAX_WORD = 64
MAX_TERMS = 4000
MAX_VALUE = 256
_WORD = re.compile(r"[^\W_]+")
_DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # ids.py's alphabet (Crockford base32)
_VALUE_OF = {c: i for i, c in enumerate(_DIGITS)}
_EVENT_STATUSES = ("received", "processed", "failed", "quarantined")


# -- terms -------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """The searchable words of `text`, lower-cased, in order (repeats kept)."""
    return [w for w in _WORD.findall(text.lower()) if len(w) <= MAX_WORD]


def canonical(value: Any) -> str | None:
    """A scalar as a field match compares it (None for objects, arrays, null)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = str(int(value)) if value.is_integer() and abs(value) < 2**63 else repr(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        return None
    return text.lower() if len(text) <= MAX_VALUE else None


@functools.lru_cache(maxsize=65536)
def field_term(name: str, value: str) -> str:
    """The index term of `name = value` (`value` as `canonical` makes it). Cached: most
    fields repeat their values from event to event (currencies, states, operators)."""
    key = f"{name.strip().lower()}\x00{value}".encode()
    return "f" + hashlib.blake2b(key, digest_size=8).hexdigest()


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, list):
        for item in node:
            yield from _leaves(item, path)
    elif path:
        yield path, node


def event_terms(raw_body: bytes, document: Any) -> list[str]:
    """Every term of one event: its field terms first, then the words of the raw body,
    and of the document when the body is not JSON (a JSON body holds the document's
    words already, and tokenizing both would double the cost); at most MAX_TERMS."""
    terms: dict[str, None] = {}
    for path, value in _leaves(document):
        text = canonical(value)
        if text is None:
            continue
        terms[field_term(path[-1], text)] = None
        if len(path) > 1:
            terms[field_term(".".join(path), text)] = None
    body = raw_body.decode("utf-8", "replace")
    terms.update(dict.fromkeys(words(body)))
    if document is not None and body.lstrip()[:1] not in ("{", "["):
        terms.update(dict.fromkeys(words(msgspec.json.encode(document).decode())))
    return list(terms)[:MAX_TERMS]


def seq_of(event_id: str) -> int:
    """The search document number of an event: its id's millisecond (the first 10 base32
    digits) and the last 15 bits of its random part (the last 3 digits), so it sorts like
    the id to the millisecond. Ids made in one millisecond by one process count up in
    their last bits (ids.py), so they do not collide here; two processes' ids collide
    once in 32768 pairs of one millisecond, and the later one takes the next number."""
    value = 0
    try:
        for digit in event_id[:10] + event_id[-3:]:
            value = value * 32 + _VALUE_OF[digit]
    except KeyError:
        raise BadCursor("not an event id") from None
    return value


def _seq_floor(moment: datetime) -> int:
    return seq_of(floor_id(moment))


def query_terms(where: EventSearch) -> list[tuple[str, bool]]:
    """(term, is_prefix) of every condition the index answers; InvalidQuery when a text
    or a field match has nothing to search for."""
    found: list[tuple[str, bool]] = []
    if where.text is not None:
        for chunk in where.text.split():
            found_words = words(chunk)
            for n, word in enumerate(found_words):
                prefix = chunk.endswith("*") and n == len(found_words) - 1
                if prefix and len(word) < 2:
                    raise InvalidQuery(f"a prefix needs two characters or more: {chunk!r}")
                found.append((word, prefix))
        if not found:
            raise InvalidQuery("text has no letters or digits to search for")
    for match in where.fields:
        if not match.name.strip():
            raise InvalidQuery("a field filter needs a field name: NAME=VALUE")
        value = canonical(match.value)
        if value is None:
            raise InvalidQuery(f"the value of {match.name} is longer than {MAX_VALUE} characters")
        found.append((field_term(match.name, value), False))
    return list(dict.fromkeys(found))


# -- indexing ----------------------------------------------------------------------------


def _name(dialect: Dialect) -> str:
    return dialect_of(dialect).name


def _sql(dialect: Dialect, sql: str) -> str:
    return dialect_of(dialect).sql(sql)


def _instant(dialect: Dialect, moment: datetime) -> Any:
    return dialect_of(dialect).instant(moment.astimezone(UTC))


GRAINS = ("minute", "hour", "day")


def truncate(moment: datetime, grain: str) -> datetime:
    """The start of the minute, hour, day or month (UTC) holding `moment`."""
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    if grain == "minute":
        return moment
    moment = moment.replace(minute=0)
    if grain == "hour":
        return moment
    moment = moment.replace(hour=0)
    if grain == "day":
        return moment
    if grain == "month":
        return moment.replace(day=1)
    raise InvalidQuery(f"grain must be minute, hour, day or month, not {grain!r}")


class SearchIndex:
    """Queues the events one processing batch settled for the search index, on its
    connection, inside its transaction: one row per event, no other work. Call `add` once
    an event's outcome is settled (outside a savepoint that may still roll back) and
    `flush` before the commit; discard the object when the transaction rolls back.
    `index_queued` does the indexing later, when processing has nothing to do: under a
    load that keeps processing busy, search and counts lag, never the acknowledgements."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.pending: list[tuple[str, str]] = []

    def add(self, event: StoredEvent, status: str) -> None:
        """Queue `event` to be indexed and counted under `status`."""
        self.pending.append((event.id, status))

    def flush(self) -> None:
        """Write the queue rows."""
        if self.pending:
            self.conn.cursor().executemany(
                _sql(self.dialect, "INSERT INTO search_queue (event_id, status) VALUES (?, ?)"),
                self.pending,
            )
            self.pending.clear()


def index_queued(conn: Any, dialect: Dialect, limit: int) -> int:
    """Index and count up to `limit` queued events, oldest first, in the caller's
    transaction; how many queue rows were done (0: the queue is empty). PostgreSQL
    instances skip the rows another one holds."""
    lock = dialect_of(dialect).skip_locked
    queued = conn.execute(
        _sql(dialect, f"SELECT seq, event_id, status FROM search_queue ORDER BY seq LIMIT ?{lock}"),
        [int(limit)],
    ).fetchall()
    if not queued:
        return 0
    indexer = _Indexer(conn, dialect)
    found = indexer._in(
        "SELECT id, source, provider, event_type, received_at, subject, status, flags, "
        "document, raw_body FROM inbox WHERE id IN ({marks})",
        list(dict.fromkeys(row[1] for row in queued)),
    )
    events = {
        row[0]: StoredEvent(
            id=row[0],
            source=row[1],
            provider=row[2],
            event_type=row[3],
            received_at=dialect_of(dialect).read_instant(row[4]),
            subject=row[5],
            status=row[6],
            flags=_json(row[7]),
            document=_json(row[8]) if row[8] is not None else None,
        )
        for row in found
    }
    indexer.bodies = {row[0]: bytes(row[9]) for row in found}
    for _, event_id, status in queued:
        if event_id in events:  # an event is never deleted; a vanished one is skipped
            indexer.pending[event_id] = (events[event_id], status)
    indexer.flush()
    indexer._in("DELETE FROM search_queue WHERE seq IN ({marks})", [row[0] for row in queued])
    return len(queued)


class _Indexer:
    """Writes the search documents and counts of a set of events in a few statements."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.pending: dict[str, tuple[StoredEvent, str]] = {}
        self.bodies: dict[str, bytes] = {}
        self.counts: dict[tuple[str, datetime, str, str, str], int] = {}

    def _in(self, sql: str, values: Sequence[Any]) -> list[Any]:
        """Rows of `sql` (whose `{in}` is the list of `values`), a chunk at a time."""
        found: list[Any] = []
        for start in range(0, len(values), 400):
            chunk = list(values[start : start + 400])
            marks = ", ".join("?" * len(chunk))
            text = _sql(self.dialect, sql.format(marks=marks))
            cur = self.conn.execute(text, chunk)
            if cur.description is not None:
                found.extend(cur.fetchall())
        return found

    def _write(self) -> None:
        if not self.pending:
            return
        ids = list(self.pending)
        counted = dict(
            self._in("SELECT event_id, counted FROM event_docs WHERE event_id IN ({marks})", ids)
        )
        moved = []
        for event_id, before in counted.items():
            event, status = self.pending[event_id]
            if before != status:
                moved.append((status, event_id))
                self._count(event, before, -1)
                self._count(event, status, 1)
        if moved:
            self.conn.cursor().executemany(
                _sql(self.dialect, "UPDATE event_docs SET counted = ? WHERE event_id = ?"), moved
            )
        new = [event_id for event_id in ids if event_id not in counted]
        bodies = self.bodies
        wanted = {event_id: seq_of(event_id) for event_id in new}
        taken = {
            int(row[0])
            for row in self._in(
                "SELECT seq FROM event_docs WHERE seq IN ({marks})", list(wanted.values())
            )
        }
        rows = []
        for event_id in new:
            event, status = self.pending[event_id]
            seq = wanted[event_id]
            while seq in taken:  # a collision (seq_of) takes the next free number
                seq += 1
                if self._one("SELECT 1 FROM event_docs WHERE seq = ?", [seq]):
                    taken.add(seq)
            taken.add(seq)
            rows.append(
                (seq, event_id, status, event_terms(bodies.get(event_id, b""), event.document))
            )
            self._count(event, status, 1)
        self._insert(rows)
        self.pending.clear()

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        return self.conn.execute(_sql(self.dialect, sql), list(params)).fetchone()

    def _insert(self, rows: list[tuple[int, str, str, list[str]]]) -> None:
        """Insert the documents; one another instance took the number of meanwhile (only
        PostgreSQL has several writers) is inserted again under the next free one."""
        sqlite = _name(self.dialect) == "sqlite"
        if sqlite:
            insert = "INSERT INTO event_docs (seq, event_id, counted) VALUES (?, ?, ?)"
            self.conn.cursor().executemany(insert, [row[:3] for row in rows])
            self.conn.cursor().executemany(
                "INSERT INTO event_terms (rowid, terms) VALUES (?, ?)",
                [(row[0], " ".join(row[3])) for row in rows],
            )
            return
        insert = (
            "INSERT INTO event_docs (seq, event_id, counted, terms) "
            "VALUES (%s, %s, %s, array_to_tsvector(%s::text[])) ON CONFLICT DO NOTHING"
        )
        cur = self.conn.cursor()
        cur.executemany(insert, rows)
        if cur.rowcount == len(rows):
            return
        stored = {
            row[0]
            for row in self._in(
                "SELECT event_id FROM event_docs WHERE event_id IN ({marks})",
                [row[1] for row in rows],
            )
        }
        for first, event_id, status, terms in rows:
            seq = first
            while event_id not in stored:
                inserted = self.conn.execute(insert, [seq, event_id, status, terms]).rowcount
                # Not inserted: its number was taken, or another instance indexed the
                # event itself (the insert waited for that one's commit).
                if inserted == 1 or self._one(
                    "SELECT 1 FROM event_docs WHERE event_id = ?", [event_id]
                ):
                    stored.add(event_id)
                seq += 1

    def _count(self, event: StoredEvent, status: str, delta: int) -> None:
        for grain in GRAINS:
            bucket = truncate(event.received_at, grain)
            key = (grain, bucket, event.source, event.event_type, status)
            self.counts[key] = self.counts.get(key, 0) + delta

    def flush(self) -> None:
        """Write the batch's documents and add its counts (in key order, so instances
        never wait for each other in a circle)."""
        self._write()
        upsert = _sql(
            self.dialect,
            "INSERT INTO event_counts (grain, bucket, source, event_type, status, total) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (grain, bucket, source, event_type, status) "
            "DO UPDATE SET total = event_counts.total + excluded.total",
        )
        rows = [
            (key[0], _instant(self.dialect, key[1]), *key[2:], delta)
            for key, delta in sorted(self.counts.items())
            if delta
        ]
        if rows:
            self.conn.cursor().executemany(upsert, rows)
        self.counts.clear()


# -- searching ---------------------------------------------------------------------------

_HIT_COLUMNS = (
    "i.id, i.source, i.provider, i.event_type, i.received_at, i.dedup_key, i.subject, "
    "i.status, i.flags, i.document, {length}(i.raw_body)"
)


def _json(value: Any) -> Any:
    # SQLite gives JSON as text; PostgreSQL's synchronous connections decode it.
    return msgspec.json.decode(value) if isinstance(value, str | bytes) else value


def _hit(row: Sequence[Any]) -> EventHit:
    received = row[4]
    return EventHit(
        id=row[0],
        source=row[1],
        provider=row[2],
        event_type=row[3],
        received_at=parse_iso(received) if isinstance(received, str) else received.astimezone(UTC),
        dedup_key=row[5],
        subject=row[6],
        status=row[7],
        flags=_json(row[8]),
        document=_json(row[9]) if row[9] is not None else None,
        body_size=int(row[10] or 0),
    )


def _match(dialect: Dialect, terms: list[tuple[str, bool]]) -> str:
    # Terms are letters and digits only (or a hex digest): nothing in them needs escaping.
    if _name(dialect) == "sqlite":
        return " ".join(f'"{term}"' + ("*" if prefix else "") for term, prefix in terms)
    return " & ".join(f"'{term}'" + (":*" if prefix else "") for term, prefix in terms)


def check_search(where: EventSearch) -> None:
    """Refuse what no backend could answer (InvalidQuery)."""
    if where.status is not None and where.status not in _EVENT_STATUSES:
        raise InvalidQuery(f"status must be one of {', '.join(_EVENT_STATUSES)}")
    for name, moment in (("since", where.since), ("until", where.until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidQuery(f"{name} needs a time zone")
    if where.since and where.until and where.since >= where.until:
        raise InvalidQuery("since must be before until")


def search_events(
    conn: Any, dialect: Dialect, where: EventSearch, cursor: str | None, limit: int
) -> EventPage:
    """One page of events matching `where`, newest first. With text or field matches the
    index drives (in `seq` order, which is id order to the millisecond); without, the
    inbox (in id order). `cursor` is the `next` of the previous page."""
    check_search(where)
    terms = query_terms(where)
    after = decode_id_cursor(cursor) if cursor else None
    length = dialect_of(dialect).octet_length
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("source", where.source),
        ("provider", where.provider),
        ("event_type", where.event_type),
        ("status", where.status),
    ):
        if value is not None:
            clauses.append(f"i.{column} = ?")
            params.append(value)
    if where.since is not None:
        clauses.append("i.received_at >= ?")
        params.append(_instant(dialect, where.since))
    if where.until is not None:
        clauses.append("i.received_at < ?")
        params.append(_instant(dialect, where.until))
    columns = _HIT_COLUMNS.format(length=length)
    filtered = bool(clauses)
    if not terms:
        if where.since is not None:
            clauses.append("i.id >= ?")
            params.append(floor_id(where.since))
        if where.until is not None:
            clauses.append("i.id < ?")
            params.append(floor_id(where.until))
        if after is not None:
            clauses.append("i.id < ?")
            params.append(after)
        sql = f"SELECT {columns} FROM inbox i"
        order = "i.id"
    else:
        if _name(dialect) == "sqlite":
            sql = (
                f"SELECT {columns}, event_terms.rowid FROM event_terms "
                "JOIN event_docs d ON d.seq = event_terms.rowid JOIN inbox i ON i.id = d.event_id"
            )
            order = "event_terms.rowid"
            clauses.insert(0, "event_terms MATCH ?")
        else:
            sql = f"SELECT {columns}, d.seq FROM event_docs d JOIN inbox i ON i.id = d.event_id"
            order = "d.seq"
            clauses.insert(0, "d.terms @@ ?::tsquery")
        params.insert(0, _match(dialect, terms))
        if where.since is not None:
            clauses.append(f"{order} >= ?")
            params.append(_seq_floor(where.since))
        if where.until is not None:
            clauses.append(f"{order} < ?")
            params.append(_seq_floor(where.until))
        if after is not None:
            row = conn.execute(
                _sql(dialect, "SELECT seq FROM event_docs WHERE event_id = ?"), [after]
            ).fetchone()
            if row is None:
                raise BadCursor("cursor is not valid")
            clauses.append(f"{order} < ?")
            params.append(int(row[0]))
    if terms and _name(dialect) == "postgresql" and not filtered:
        # Nothing to test on the inbox: take the page from the index's matches first, so
        # only its rows are read from the inbox (a bitmap of thousands of matches would
        # otherwise fetch every one's inbox row before sorting).
        sql = (
            f"SELECT {columns}, d.seq FROM (SELECT seq, event_id FROM event_docs d WHERE "
            f"{' AND '.join(clauses)} ORDER BY seq DESC LIMIT ?) d "
            "JOIN inbox i ON i.id = d.event_id ORDER BY d.seq DESC"
        )
        params.append(int(limit) + 1)
    else:
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order} DESC LIMIT ?"
        params.append(int(limit) + 1)
    rows = conn.execute(_sql(dialect, sql), params).fetchall()
    items = [_hit(row) for row in rows[:limit]]
    more = len(rows) > limit and bool(items)
    return EventPage(items, encode_cursor(items[-1].id) if more else None)
