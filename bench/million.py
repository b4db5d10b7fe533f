"""Search and aggregates at a million events: fill a database, then time every query.

    .venv/bin/python bench/million.py --backend sqlite [--path /tmp/million.db]
    .venv/bin/python bench/million.py --backend postgresql \
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]
    options: [--events 1000000] [--days 365] [--distinct 20000] [--runs 30] [--keep]
             [--reuse]  (time the queries on a database filled before, kept with --keep)

The fill writes straight into the tables (executemany on SQLite, COPY on PostgreSQL) what
the gateway would have stored after acknowledging and processing `--events` events spread
evenly over `--days` days and the four providers: inbox rows (bodies and documents from the
emulators in hookgate.emulate, `--distinct` different ones per provider; 0.2 % received,
0.2 % quarantined, 0.5 % failed, the rest processed), their search terms and event counts
(as store/search.py's SearchIndex makes them), one delivery per processed event, a
decision per Zaptec start, consumption per Zaptec end, a parking transaction per EasyPark
event, and a refused request per hundred events with its per-minute counts.

Then, through the Store (hookgate.queries, what the CLI and the admin API call), each
search and aggregate runs `--runs` times with varying arguments; the report gives p50, p95
and max per query and the database size per million events. Writes
bench/results/million-<backend>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from hookgate import queries
from hookgate.config import StorageConfig
from hookgate.emulate.ampeco_samples import NAMES as AMPECO_NAMES
from hookgate.emulate.ampeco_samples import sample
from hookgate.emulate.base import encode
from hookgate.emulate.easypark import transaction
from hookgate.emulate.zaptec import charge
from hookgate.emulate.ztlment import APPROVAL_FLOW, PAYMENT_FLOW, notification
from hookgate.store import Store, make_store
from hookgate.store.search import event_terms, truncate
from hookgate.timeutil import iso

ROOT = Path(__file__).resolve().parent.parent
DIGITS = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
DESTINATIONS = {"zaptec": "sessions-kafka", "ampeco": "sessions-kafka"}
TOKENS = [f"RFID-{n:08X}" for n in range(3000)]
GROUPS = [f"fleet-{n}" for n in range(40)]
REASONS = ["bad-signature", "bad-credentials", "too-large", "invalid-json"]


def ulid(ms: int, rand: int) -> str:
    value = ms << 80 | rand
    return "".join(DIGITS[(value >> shift) & 31] for shift in range(125, -1, -5))


class Doc(msgspec.Struct):
    provider: str
    event_type: str
    subject: str
    raw: bytes
    document: str
    terms: str
    fields: dict[str, Any]


def _doc(provider: str, event_type: str, subject: str, document: Any, **fields: Any) -> Doc:
    raw = encode(document)
    return Doc(
        provider,
        event_type,
        subject,
        raw,
        raw.decode(),
        " ".join(event_terms(raw, document)),
        fields,
    )


def pool(distinct: int, rng: random.Random) -> dict[str, list[Doc]]:
    """`distinct` realistic bodies per provider, from the emulators."""
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    docs: dict[str, list[Doc]] = {"easypark": [], "ztlment": [], "ampeco": [], "zaptec": []}
    for n in range(distinct):
        parking = transaction(10**6 + n)
        docs["easypark"].append(
            _doc("easypark", "parking.completed", f"parking/{10**6 + n}", parking, **parking)
        )
        kind, flow = ("payment", PAYMENT_FLOW) if n % 3 else ("approval", APPROVAL_FLOW)
        state = flow[n % len(flow)]
        obj_type = "PAYMENT_OBJECT" if kind == "payment" else "APPROVAL_OBJECT"
        docs["ztlment"].append(
            _doc(
                "ztlment",
                f"{kind}.{state.lower()}",
                f"{kind}/{5 * 10**6 + n // 7}",
                notification(5 * 10**6 + n // 7, obj_type, state),
                object_type=obj_type,
                state=state,
                rank=flow.index(state),
                final=state == flow[-1],
            )
        )
        name = AMPECO_NAMES[n % len(AMPECO_NAMES)]
        body = sample(name, n, at)
        docs["ampeco"].append(_doc("ampeco", name, f"ampeco/{n}", body))
        token = rng.choice(TOKENS)
        charger = str(uuid.UUID(int=rng.getrandbits(128)))
        start = {
            "ChargerId": charger,
            "DeviceId": f"ZAP{rng.randint(100000, 999999)}",
            "InstallationId": str(uuid.UUID(int=rng.getrandbits(128))),
            "UserId": str(uuid.UUID(int=rng.getrandbits(128))),
            "TokenId": token,
        }
        if n % 2:
            docs["zaptec"].append(
                _doc("zaptec", "session.start", f"charger/{charger}", start, TokenId=token)
            )
        else:
            plugged, energy = charge(rng)
            end = {
                "SessionId": str(uuid.UUID(int=rng.getrandbits(128))),
                **start,
                "StartDateTime": iso(at - plugged),
                "EndDateTime": iso(at),
                "Energy": energy,
                "SignedSession": 'OCMF|{"FV":"1.0","GI":"ZAPTEC GO"}|{"SA":"ECDSA"}',
            }
            docs["zaptec"].append(
                _doc(
                    "zaptec", "session.end", f"charger/{charger}", end, Energy=energy, TokenId=token
                )
            )
    return docs


class Rows:
    """Every table's rows for the fill, made in id order."""

    def __init__(self) -> None:
        self.inbox: list[tuple[Any, ...]] = []
        self.docs: list[tuple[Any, ...]] = []
        self.deliveries: list[tuple[Any, ...]] = []
        self.decisions: list[tuple[Any, ...]] = []
        self.consumption: list[tuple[Any, ...]] = []
        self.parking: list[tuple[Any, ...]] = []
        self.rejections: list[tuple[Any, ...]] = []
        self.sessions: list[tuple[Any, ...]] = []
        self.meters: list[tuple[Any, ...]] = []
        self.attempts: list[tuple[Any, ...]] = []
        self.payment_states: list[tuple[Any, ...]] = []
        self.payments: list[tuple[Any, ...]] = []

    def clear(self) -> None:
        for rows in vars(self).values():
            rows.clear()


def generate(
    docs: dict[str, list[Doc]], events: int, days: int, rng: random.Random, chunk: int
) -> Iterator[tuple[Rows, dict[tuple[Any, ...], int], dict[tuple[Any, ...], int]]]:
    """Rows in chunks of `chunk` events; the event and refusal counts come with the last."""
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - days * 86_400_000
    step = (end_ms - start_ms) / events
    providers = list(docs)
    counts: dict[tuple[Any, ...], int] = {}
    refused: dict[tuple[Any, ...], int] = {}
    seqs: set[int] = set()
    # ZTLment objects (about seven state changes each): type, state, final, first, last event.
    objects: dict[str, list[Any]] = {}
    rows = Rows()
    for i in range(events):
        ms = start_ms + int(i * step)
        rand = rng.getrandbits(80)
        event_id = ulid(ms, rand)
        at = datetime.fromtimestamp(ms / 1000, UTC)
        provider = providers[i % 4]
        doc = docs[provider][rng.randrange(len(docs[provider]))]
        roll = rng.random()
        status = (
            "received"
            if roll < 0.002
            else "quarantined"
            if roll < 0.004
            else "failed"
            if roll < 0.009
            else "processed"
        )
        processed_at = (
            at + timedelta(milliseconds=40) if status in ("processed", "failed") else None
        )
        rows.inbox.append(
            (
                event_id,
                provider,
                provider,
                doc.event_type,
                at,
                f"k{i}",
                doc.subject,
                status,
                "[]",
                '{"content-type":"application/json"}',
                doc.document,
                doc.raw,
                hashlib.sha256(doc.raw).hexdigest() if i % 1000 == 0 else "0" * 64,
                processed_at,
                "ValueError: cannot project" if status == "failed" else None,
            )
        )
        if status in ("processed", "failed"):
            seq = ms << 15 | rand & 0x7FFF
            while seq in seqs:
                seq += 1
            seqs.add(seq)
            rows.docs.append((seq, event_id, status, doc.terms))
            for grain in ("minute", "hour", "day"):
                key = (grain, truncate(at, grain), provider, doc.event_type, status)
                counts[key] = counts.get(key, 0) + 1
        if status == "processed":
            destination = DESTINATIONS.get(provider, "fleet-http")
            roll = rng.random()
            state, attempts, code = (
                ("delivered", 1, 200)
                if roll < 0.97
                else ("failed", 3, 503)
                if roll < 0.985
                else ("dead", 8, 400)
                if roll < 0.99
                else ("pending", 0, None)
            )
            created = at + timedelta(milliseconds=40)
            delivery_id = ulid(ms + 40, rng.getrandbits(80))
            for attempt in range(1, attempts + 1):
                rows.attempts.append(
                    (
                        ulid(ms + 40 + attempt, rng.getrandbits(80)),
                        delivery_id,
                        attempt,
                        created + timedelta(minutes=attempt - 1),
                        rng.randint(20, 900),
                        "delivered" if state == "delivered" else "failed",
                        code,
                        None if state == "delivered" else f"HTTP {code}",
                    )
                )
            rows.deliveries.append(
                (
                    delivery_id,
                    event_id,
                    destination,
                    state,
                    attempts,
                    created + timedelta(minutes=attempts),
                    code,
                    created,
                    created + timedelta(milliseconds=80),
                    created + timedelta(milliseconds=80) if state == "delivered" else None,
                )
            )
        if doc.event_type == "session.start":
            roll = rng.random()
            result, fallback = (
                ("approved", False)
                if roll < 0.9
                else ("denied", False)
                if roll < 0.99
                else ("approved", True)
            )
            rows.decisions.append(
                (
                    ulid(ms, rng.getrandbits(80)),
                    at,
                    provider,
                    event_id,
                    doc.subject,
                    doc.fields["TokenId"],
                    result,
                    '["token known"]',
                    fallback,
                    rng.randint(200, 4000),
                )
            )
        elif doc.event_type == "session.end":
            token = doc.fields["TokenId"]
            rows.consumption.append(
                (
                    ulid(ms, rng.getrandbits(80)),
                    provider,
                    f"s{i}",
                    "zaptec",
                    token,
                    GROUPS[int(token[5:], 16) % len(GROUPS)],
                    str(doc.fields["Energy"]),
                    at,
                )
            )
            # The charging session processing made of the start and this end.
            plugged = timedelta(minutes=rng.randint(20, 600))
            energy = float(doc.fields["Energy"])
            rows.sessions.append(
                (
                    provider,
                    f"s{i}",
                    ulid(ms, rng.getrandbits(80)),
                    provider,
                    "ended",
                    doc.subject.removeprefix("charger/"),
                    token,
                    at - plugged,
                    at,
                    str(doc.fields["Energy"]),
                    "[]",
                    f'["{event_id}"]',
                    "{}",
                    at,
                    at,
                )
            )
            if i % 16 == 3:  # a quarter of the sessions came with meter values
                for k in range(1, 13):
                    sampled = at - plugged + plugged * k / 12
                    for measurand, value, unit in (
                        ("Energy.Active.Import.Register", energy * k / 12, "kWh"),
                        ("Power.Active.Import", 3.7 + rng.random() * 7.4, "kW"),
                    ):
                        rows.meters.append(
                            (
                                provider,
                                f"s{i}",
                                sampled,
                                measurand,
                                "",
                                f"{value:.3f}",
                                unit,
                                event_id,
                            )
                        )
        elif provider == "ztlment" and status == "processed":
            f = doc.fields
            object_id = str(5 * 10**6 + i // 28)  # every fourth event is ZTLment's
            known = objects.get(object_id)
            out_of_order = known is not None and f["rank"] < known[4]
            rows.payment_states.append(
                (
                    event_id,
                    provider,
                    f["object_type"],
                    object_id,
                    f["state"],
                    f["rank"],
                    f["final"],
                    True,
                    at,
                    not out_of_order,
                    out_of_order,
                )
            )
            if known is None:
                objects[object_id] = [f["object_type"], f["state"], f["final"], at, f["rank"], at]
                objects[object_id].append(event_id)
            elif not out_of_order:
                known[1:3] = [f["state"], f["final"]]
                known[4:7] = [f["rank"], at, event_id]
        elif provider == "easypark":
            f = doc.fields
            rows.parking.append(
                (
                    provider,
                    str(i),
                    ulid(ms, rng.getrandbits(80)),
                    event_id,
                    f["licenseNumber"],
                    at - timedelta(hours=1),
                    at,
                    f["currency"],
                    str(f["price"]),
                    str(f["priceVatAmount"]),
                    str(f["priceExclusiveVatAmount"]),
                    at,
                )
            )
        if i % 100 == 50:
            reason = rng.choice(REASONS)
            body = b'{"refused": true}'
            rows.rejections.append(
                (
                    ulid(ms, rng.getrandbits(80)),
                    at,
                    provider,
                    provider,
                    reason,
                    "{}",
                    body,
                    len(body),
                )
            )
            key = (truncate(at, "minute"), provider, reason)
            refused[key] = refused.get(key, 0) + 1
        if len(rows.inbox) >= chunk:
            yield rows, {}, {}
            rows.clear()
    for object_id, (kind, state, final, first, _, last, event_id) in objects.items():
        rows.payments.append(
            (
                "ztlment",
                kind,
                object_id,
                ulid(int(first.timestamp() * 1000), rng.getrandbits(80)),
                state,
                final,
                "[]",
                first,
                last,
                event_id,
            )
        )
    yield rows, counts, refused


# -- writing -----------------------------------------------------------------------------

INBOX = (
    "inbox (id, source, provider, event_type, received_at, dedup_key, subject, status, flags, "
    "headers, document, raw_body, body_sha256, processed_at, error)"
)
DELIVERIES = (
    "deliveries (id, event_id, destination, status, attempts, next_attempt_at, "
    "last_status_code, created_at, updated_at, delivered_at)"
)
DECISIONS = (
    "decisions (id, decided_at, source, event_id, charger_id, token, result, reasons, "
    "fallback, latency_us)"
)
CONSUMPTION = "consumption (id, source, session_key, origin, token, group_id, kwh, occurred_at)"
PARKING = (
    "parking_transactions (source, parking_id, id, event_id, license_number, started_at, "
    "ended_at, currency, price, price_vat, price_excl_vat, received_at, consistent, flags)"
)
SESSIONS = (
    "charging_sessions (source, session_key, id, provider, status, charger_id, token, "
    "started_at, ended_at, energy_kwh, flags, event_ids, versions, last_occurred_at, updated_at)"
)
METERS = "meter_values (source, session_key, at, measurand, phase, value, unit, event_id)"
ATTEMPTS = (
    "delivery_attempts (id, delivery_id, attempt, started_at, duration_ms, outcome, "
    "status_code, error)"
)
PAYMENT_STATES = (
    "payment_states (event_id, source, object_type, object_id, state, state_rank, final, "
    "known, received_at, applied, out_of_order)"
)
PAYMENTS = (
    "payment_objects (source, object_type, object_id, id, state, final, flags, first_seen_at, "
    "updated_at, last_event_id)"
)
REJECTIONS = (
    "rejections (id, received_at, source, provider, reason, headers, body, body_size, "
    "method, path, status, detail, body_sha256, stored_bytes)"
)


def _sqlite_value(value: Any) -> Any:
    return iso(value) if isinstance(value, datetime) else value


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def fill_sqlite(path: str, chunks: Iterator[Any]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")

    def put(table: str, rows: list[tuple[Any, ...]], extra: tuple[Any, ...] = ()) -> None:
        if rows:
            width = len(rows[0]) + len(extra)
            conn.executemany(
                f"INSERT INTO {table} VALUES ({_marks(width)})",
                [tuple(_sqlite_value(v) for v in (*row, *extra)) for row in rows],
            )

    for rows, counts, refused in chunks:
        conn.execute("BEGIN")
        put(INBOX, rows.inbox)
        conn.executemany(
            "INSERT INTO event_docs (seq, event_id, counted) VALUES (?, ?, ?)",
            [row[:3] for row in rows.docs],
        )
        conn.executemany(
            "INSERT INTO event_terms (rowid, terms) VALUES (?, ?)",
            [(row[0], row[3]) for row in rows.docs],
        )
        put(DELIVERIES, rows.deliveries)
        put(DECISIONS, [(*r[:8], int(r[8]), r[9]) for r in rows.decisions])
        put(CONSUMPTION, rows.consumption)
        put(PARKING, rows.parking, (1, "[]"))
        put(SESSIONS, rows.sessions)
        put(METERS, rows.meters)
        put(ATTEMPTS, rows.attempts)
        put(
            PAYMENT_STATES,
            [(*r[:6], int(r[6]), 1, r[8], int(r[9]), int(r[10])) for r in rows.payment_states],
        )
        put(PAYMENTS, [(*r[:5], int(r[5]), *r[6:]) for r in rows.payments])
        put(REJECTIONS, rows.rejections, ("POST", "/hooks/x", 401, "refused", "0" * 64, 40))
        for key, n in counts.items():
            conn.execute(
                "INSERT INTO event_counts VALUES (?, ?, ?, ?, ?, ?)",
                (key[0], iso(key[1]), *key[2:], n),
            )
        for key, n in refused.items():
            conn.execute(
                "INSERT INTO rejection_counts VALUES (?, ?, ?, ?, ?, ?)",
                (iso(key[0]), key[1], key[2], n, n, 17 * n),
            )
        conn.execute("COMMIT")
        print(f"  {len(rows.inbox)} events written", file=sys.stderr, flush=True)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def fill_postgres(url: str, chunks: Iterator[Any]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # Build the GIN index once after the load, as a restore would.
        conn.execute("DROP INDEX event_docs_terms")
        conn.execute("SET synchronous_commit = off")

        def copy(table: str, rows: list[tuple[Any, ...]]) -> None:
            if rows:
                with conn.cursor().copy(f"COPY {table} FROM STDIN".encode()) as out:
                    for row in rows:
                        out.write_row(row)

        for rows, counts, refused in chunks:
            with conn.transaction():
                copy(INBOX, rows.inbox)
                copy("event_docs (seq, event_id, counted, terms)", rows.docs)
                copy(DELIVERIES, rows.deliveries)
                copy(DECISIONS, rows.decisions)
                copy(CONSUMPTION, rows.consumption)
                copy(PARKING, [(*r, True, "[]") for r in rows.parking])
                copy(SESSIONS, rows.sessions)
                copy(METERS, rows.meters)
                copy(ATTEMPTS, rows.attempts)
                copy(PAYMENT_STATES, rows.payment_states)
                copy(PAYMENTS, rows.payments)
                copy(
                    REJECTIONS,
                    [
                        (*r, "POST", "/hooks/x", 401, "refused", "0" * 64, 40)
                        for r in rows.rejections
                    ],
                )
                copy("event_counts", [(*k, n) for k, n in counts.items()])
                copy(
                    "rejection_counts",
                    [(k[0], k[1], k[2], n, n, 17 * n) for k, n in refused.items()],
                )
            print(f"  {len(rows.inbox)} events written", file=sys.stderr, flush=True)
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("CREATE INDEX event_docs_terms ON event_docs USING gin (terms)")
        conn.execute("VACUUM ANALYZE")
        # A snapshot held elsewhere meanwhile (another client of the server) keeps VACUUM
        # from marking pages all-visible, and every index-only count then reads the heap: a
        # settled gateway's tables are all-visible (autovacuum), so wait for that state.
        for _ in range(30):
            row = conn.execute(
                "SELECT coalesce(sum(relallvisible)::float / nullif(sum(relpages), 0), 1) "
                "FROM pg_class WHERE relname IN ('inbox', 'deliveries') "
                "AND relnamespace = current_schema()::regnamespace"
            ).fetchone()
            if row is not None and row[0] >= 0.95:
                break
            time.sleep(2)
            conn.execute("VACUUM inbox")
            conn.execute("VACUUM deliveries")
        else:
            print("warning: inbox not all-visible after VACUUM", file=sys.stderr)


# -- measuring ---------------------------------------------------------------------------


def _pick(url: str, sql: str) -> list[str]:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [str(r[0]) for r in conn.execute(sql).fetchall()]
        finally:
            conn.close()
    with psycopg.connect(url, autocommit=True) as pg:
        return [str(r[0]) for r in pg.execute(sql.encode()).fetchall()]


async def measure(url: str, runs: int, rng: random.Random) -> dict[str, dict[str, float]]:
    # A database filled by an older version gets the migrations added since.
    store = make_store(StorageConfig(url=url, auto_migrate=True))
    await store.open()
    plates = _pick(url, "SELECT license_number FROM parking_transactions LIMIT 2000")
    tokens = _pick(url, "SELECT token FROM consumption LIMIT 2000")
    now = datetime.now(UTC)

    def ago(**kw: float) -> datetime:
        return now - timedelta(**kw)

    def window(days: float) -> dict[str, datetime]:
        end = ago(days=rng.uniform(0, 300))
        return {"since": end - timedelta(days=days), "until": end}

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "search field licenseNumber=PLATE": lambda: queries.search_events(
            store, where=[f"licenseNumber={rng.choice(plates)}"]
        ),
        "search field state=PROCESSED (common)": lambda: queries.search_events(
            store, where=["state=PROCESSED"]
        ),
        "search field TokenId + source + status": lambda: queries.search_events(
            store,
            where=[f"TokenId={rng.choice(tokens)}"],
            source="zaptec",
            status="processed",
        ),
        "search text word (common)": lambda: queries.search_events(store, text="europark"),
        "search text two words + prefix": lambda: queries.search_events(
            store, text=f"sek {rng.choice(plates)[:3].lower()}*"
        ),
        "search text rare word": lambda: queries.search_events(
            store, text=rng.choice(tokens).lower()
        ),
        "search text + field, 7-day window": lambda: queries.search_events(
            store, text="sek", where=["currency=SEK"], **window(7)
        ),
        "search common field, selective filter (ztlment failed)": lambda: queries.search_events(
            store, text="payment", source="ztlment", status="failed"
        ),
        "search no match": lambda: queries.search_events(store, where=["licenseNumber=NONE1"]),
        "search page 3 via cursor": lambda: _third_page(store, "sek"),
        "list by source + status (no terms)": lambda: queries.search_events(
            store, source="ampeco", status="failed"
        ),
        "stats events per minute, 1 h": lambda: queries.event_counts(
            store, grain="minute", until=ago(days=rng.uniform(0, 300))
        ),
        "stats events per hour, 24 h": lambda: queries.event_counts(
            store, grain="hour", until=ago(days=rng.uniform(0, 300))
        ),
        "stats events per day, 30 d": lambda: queries.event_counts(store, grain="day"),
        "stats events per day, 365 d, by source": lambda: queries.event_counts(
            store, grain="day", by=["source"], since=ago(days=365), until=now
        ),
        "stats rejections, 24 h": lambda: queries.rejections(store, **window(1)),
        "stats rejections per day, 365 d": lambda: queries.rejections(
            store, grain="day", since=ago(days=365), until=now
        ),
        "stats deliveries, 24 h": lambda: queries.deliveries(store, **window(1)),
        "stats deliveries per hour, 7 d": lambda: queries.deliveries(
            store, grain="hour", **window(7)
        ),
        "stats backlog": lambda: queries.backlog(store),
        "stats decisions per hour, 24 h": lambda: queries.decisions(
            store, grain="hour", **window(1)
        ),
        "stats decisions per day, 30 d": lambda: queries.decisions(
            store, grain="day", **window(30)
        ),
        "stats energy per day, 30 d": lambda: queries.energy(store, **window(30)),
        "stats energy of one token, 365 d": lambda: queries.energy(
            store, token=rng.choice(tokens), since=ago(days=365), until=now
        ),
        "stats costs per vehicle per month, 31 d": lambda: queries.vehicle_costs(
            store, limit=100, **window(31)
        ),
        "stats costs of one vehicle, 365 d": lambda: queries.vehicle_costs(
            store, license_number=rng.choice(plates), since=ago(days=365), until=now
        ),
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for name, case in cases.items():
            await case()  # warm the cache once
            times = []
            for _ in range(runs):
                began = time.perf_counter()
                found = await case()
                times.append((time.perf_counter() - began) * 1000)
            times.sort()
            size = _rows_of(found)
            results[name] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 2),
                "max_ms": round(times[-1], 2),
                "rows": size,
            }
            print(f"  {name:<58} p95 {results[name]['p95_ms']:8.2f} ms", file=sys.stderr)
    finally:
        await store.close()
    return results


def _rows_of(found: Any) -> int:
    if hasattr(found, "items"):
        return len(found.items)
    return len(found) if isinstance(found, list) else 1


async def _third_page(store: Store, text: str) -> Any:
    page = await queries.search_events(store, text=text, limit=50)
    page = await queries.search_events(store, text=text, limit=50, cursor=page.next)
    return await queries.search_events(store, text=text, limit=50, cursor=page.next)


def size_of(url: str) -> dict[str, int]:
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        try:
            search = sum(
                conn.execute(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'event_terms%' "
                    "OR name LIKE 'event_docs%' OR name LIKE 'sqlite_autoindex_event_docs%'"
                ).fetchone()
            )
        except sqlite3.OperationalError:
            search = 0
        finally:
            conn.close()
        return {"total": os.path.getsize(path), "search": int(search)}
    with psycopg.connect(url, autocommit=True) as pg:
        total = pg.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
        search = pg.execute("SELECT pg_total_relation_size('event_docs')").fetchone()
    return {"total": int(total[0] if total else 0), "search": int(search[0] if search else 0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--path", default=None, help="SQLite file (default: a temporary one)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default=None, help="PostgreSQL schema to fill or reuse")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="time queries only")
    args = parser.parse_args()
    rng = random.Random(20260301)

    tmp = None
    if args.backend == "sqlite":
        if args.path is None:
            tmp = tempfile.mkdtemp(prefix="hookgate-million-")
            args.path = str(Path(tmp) / "million.db")
        url = f"sqlite:///{args.path}"
    else:
        args.schema = args.schema or f"million_{uuid.uuid4().hex[:8]}"
        joiner = "&" if "?" in args.pg_url else "?"
        url = f"{args.pg_url}{joiner}options=-csearch_path%3D{args.schema}"

    fill_seconds = 0.0
    out = ROOT / "bench" / "results"
    earlier = out / f"million-{args.backend}.json"
    if args.reuse and earlier.exists():
        # The database was filled by an earlier run: its fill time stands.
        fill_seconds = float(json.loads(earlier.read_text()).get("fill_seconds", 0.0))
    try:
        if not args.reuse:
            if args.backend == "postgresql":
                with psycopg.connect(args.pg_url, autocommit=True) as pg:
                    pg.execute(f"CREATE SCHEMA {args.schema}".encode())
            store = make_store(StorageConfig(url=url, auto_migrate=True))
            asyncio.run(_open_close(store))
            began = time.perf_counter()
            print("making bodies ...", file=sys.stderr)
            docs = pool(args.distinct, rng)
            chunks = generate(docs, args.events, args.days, rng, 50_000)
            print("filling ...", file=sys.stderr)
            if args.backend == "sqlite":
                fill_sqlite(args.path, chunks)
            else:
                fill_postgres(url, chunks)
            fill_seconds = time.perf_counter() - began
            print(f"filled in {fill_seconds:.0f} s", file=sys.stderr)
        size = size_of(url)
        print("querying ...", file=sys.stderr)
        load_before = os.getloadavg()[0]
        results = asyncio.run(measure(url, args.runs, rng))
        load = (round(load_before, 2), round(os.getloadavg()[0], 2))
    finally:
        if not args.keep:
            if args.backend == "postgresql":
                with psycopg.connect(args.pg_url, autocommit=True) as pg:
                    pg.execute(f"DROP SCHEMA IF EXISTS {args.schema} CASCADE".encode())
            elif tmp is not None:
                for name in os.listdir(tmp):
                    os.unlink(Path(tmp) / name)
                os.rmdir(tmp)
    per_million = 1_000_000 / args.events
    report = {
        "backend": args.backend,
        "events": args.events,
        "days": args.days,
        "distinct_bodies_per_provider": args.distinct,
        "runs": args.runs,
        "fill_seconds": round(fill_seconds, 1),
        "bytes_per_million_events": int(size["total"] * per_million),
        "search_bytes_per_million_events": int(size["search"] * per_million),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
        "sqlite": sqlite3.sqlite_version,
        # 1-minute load average when the timing began and ended (2 CPUs: above 2, queued).
        "load_average": list(load),
        "queries": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"million-{args.backend}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# {args.events:,} events on {args.backend}",
        "",
        f"Database: {report['bytes_per_million_events'] / 2**30:.2f} GiB per million events, "
        f"of which search {report['search_bytes_per_million_events'] / 2**30:.2f} GiB; "
        f"filled in {fill_seconds:.0f} s. Load average while timing: {load[0]} to {load[1]} "
        f"({os.cpu_count()} CPUs).",
        "",
        "| query | p50 ms | p95 ms | max ms | rows |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {r['p50_ms']} | {r['p95_ms']} | {r['max_ms']} | {r['rows']} |"
            for name, r in results.items()
        ),
    ]
    (out / f"million-{args.backend}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


async def _open_close(store: Store) -> None:
    await store.open()
    await store.close()


if __name__ == "__main__":
    raise SystemExit(main())
