"""Durability under SIGKILL: every acknowledged event must be in the database.

Usage: .venv/bin/python bench/durability.py [--kills 20] [--senders 32] [--seed N]

One fresh database, `hookgate migrate`, then `--kills` rounds. Each round starts
`hookgate serve` on 127.0.0.1, waits for /healthz, runs `--senders` concurrent asyncio
senders with distinct events for all four providers (AMPECO signed bodies, EasyPark
parkings, ZTLment (id, state) changes, Zaptec session starts and ends, plus a small share
of deliberate duplicates of events already acknowledged and the provider retries of
requests that failed), and SIGKILLs the server at a seeded random moment 0.2-2 s after the
load started. Every request answered 2xx (or 409 by EasyPark for a genuine duplicate) is
recorded as acknowledged; every request cut off at the transport level is not.

After each kill:
- "power cut" approximation: only `hookgate.db` and `hookgate.db-wal`, as they are in the
  files after the kill, are copied elsewhere and opened; every acknowledged event must be
  in the copy (the shared-memory index `-shm` is not copied, so SQLite rebuilds it from
  the WAL, as after a reboot);
- the server restarts on the same database and every acknowledged event must be there.

One extra traced round runs the server under `strace` and checks, for every acknowledged
request, that an fdatasync of the WAL file started after the WAL write holding the event
and finished before the response was written (what SIGKILL alone cannot show).

Finally the server is started cleanly, the remaining provider retries are delivered,
SIGTERM stops it, and the database is compared once more. Any acknowledged event that is
missing is a bug; it is listed with its provider, round and ack time relative to the kill.

Controls (`--control-kills`, default 3 rounds each): the same campaign against a server
patched in its own process to acknowledge before COMMIT (loss must be seen) and to run with
`synchronous=OFF` (SIGKILL cannot see it; the fsync trace must). If a control goes
unnoticed the benchmark is blind and exits 1, as it does on any loss.
Writes bench/results/durability.{json,md}; `--out DIR` writes elsewhere.

`--backend postgresql [--pg-url postgresql://postgres@127.0.0.1:5432/test]`: the same
campaign on a fresh schema of a local PostgreSQL (dropped afterwards), written to
durability-postgresql.{json,md}. The kills hit hookgate only, so after each kill the
database itself is checked (no power-cut copy), the fsync trace (SQLite's WAL) is not run,
and the only control is ack-before-commit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from hookgate.emulate.ampeco_samples import NAMES, sample
from hookgate.emulate.easypark import transaction

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
AMPECO_SECRET = "durability-ampeco-token"
ZTLMENT_SECRET = "durability-ztlment-secret"
EASYPARK_USER, EASYPARK_PASSWORD = "easypark", "durability-easypark"
ZAPTEC_USER, ZAPTEC_PASSWORD = "zaptec", "durability-zaptec"
PROVIDERS = ("ampeco", "easypark", "ztlment", "zaptec")
ZTL_FLOWS = {
    "PAYMENT_OBJECT": (
        "PENDING_COMPLIANCE_CHECKS",
        "PENDING_APPROVAL",
        "PENDING_SIGNING",
        "PENDING_PAYMENT",
        "INITIATED_PAYMENT",
        "PROCESSING_PAYMENT",
        "PROCESSED",
    ),
    "APPROVAL_OBJECT": ("PENDING_COMPLIANCE_CHECKS", "PENDING_APPROVAL", "PROCESSED"),
}
KILL_MIN_S, KILL_MAX_S = 0.2, 2.0
REQUEST_TIMEOUT_S = 10.0
ROUND_REQUEST_CAP = 200_000  # per round, a bound on top of the time bound
HEALTH_TIMEOUT_S = 30.0
_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)
_TRANSPORT = (
    OSError,
    EOFError,
    ValueError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    TimeoutError,
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _hmac(secret: str, body: bytes, algorithm: str) -> bytes:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()


# -- requests and what was acknowledged ---------------------------------------------------


@dataclass(slots=True)
class Req:
    """One delivery: what to send and how hookgate will identify the event."""

    kind: str  # ampeco | easypark | ztlment | zaptec-start | zaptec-end
    path: str
    body: bytes
    headers: dict[str, str]
    source: str
    key: str  # dedup key as hookgate computes it ("" for a Zaptec start: it is random)
    charger: str = ""  # Zaptec start: the unique ChargerId
    session: str = ""  # Zaptec end: the sessionId hookgate returned
    duplicate: bool = False
    retry: bool = False

    @property
    def ident(self) -> tuple[str, str]:
        """The event's identity in the ledger."""
        if self.kind == "zaptec-start":
            return ("zaptec-start", self.charger)
        return (self.source, self.key)


@dataclass(slots=True)
class Ack:
    kind: str
    round: str
    after_kill_s: float | None  # ack time minus kill time (negative: before the kill)
    duplicate: bool
    retry: bool
    charger: str = ""
    session: str = ""


@dataclass
class RoundStats:
    round: str
    kill_after_s: float | None = None
    startup_s: float = 0.0
    requests: int = 0
    answered: int = 0
    answered_before_kill: int = 0
    load_seconds: float = 0.0
    acknowledged: int = 0
    duplicates_sent: int = 0
    retries_sent: int = 0
    inflight_at_kill: int = 0
    transport_errors_at_kill: int = 0
    transport_errors_before_kill: int = 0
    failed_stored: int = 0  # transport-failed requests whose event is stored anyway
    failed_not_stored: int = 0
    failed_already_acked: int = 0  # failed duplicates/retries of events acknowledged before
    statuses: Counter[int] = field(default_factory=Counter)
    exit_code: int | None = None
    missing_after_restart: int = 0
    missing_in_copy: int = 0
    wal_bytes: int = 0
    db_bytes: int = 0
    failed: list[Req] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {
            k: round(v, 3) if isinstance(v, float) else v
            for k, v in self.__dict__.items()
            if k != "failed"
        }
        out["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        out["rps"] = (
            round(self.answered_before_kill / self.load_seconds, 1) if self.load_seconds else None
        )
        return out


class Ledger:
    """Everything the senders were told, and the event generators (one event loop: no locks)."""

    def __init__(self, seed: int, dup_share: float) -> None:
        self.seed = seed
        self.dup_share = dup_share
        self.acked: dict[tuple[str, str], Ack] = {}  # (source, dedup key) for inbox events
        self.starts: dict[str, Ack] = {}  # Zaptec sessionId -> the acknowledged start
        self.unacked: dict[tuple[str, str], Req] = {}  # failed and not acknowledged since
        self.retry: deque[Req] = deque()
        self.dup_pool: list[Req] = []
        self.pending_ends: list[tuple[str, str]] = []  # (sessionId, ChargerId)
        self.non_2xx: Counter[str] = Counter()
        self.non_2xx_samples: list[dict[str, Any]] = []
        self.duplicate_answered_as_new: list[dict[str, Any]] = []
        self.unexpected_errors: list[str] = []
        self._seq = 0
        self._ampeco_seen: set[str] = set()
        self._ztl: tuple[int, str, list[str]] | None = None

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # -- generators ------------------------------------------------------------------------

    def ampeco(self) -> Req:
        while True:
            n = self._next()
            body = msgspec.json.encode(sample(NAMES[n % len(NAMES)], n))
            key = hashlib.sha256(body).hexdigest()
            if key not in self._ampeco_seen:  # only distinct bodies: duplicates are deliberate
                self._ampeco_seen.add(key)
                break
        headers = {
            "Content-Type": "application/json",
            "X-Signature": _hmac(AMPECO_SECRET, body, "sha256").hex(),
            "X-Timestamp": "2025-12-04T12:00:00Z",
            "X-Tenant": "durability",
        }
        return Req("ampeco", "/hooks/ampeco", body, headers, "ampeco", key)

    def easypark(self) -> Req:
        parking_id = 5_000_000_000 + self.seed % 1000 * 10_000_000 + self._next()
        body = msgspec.json.encode(transaction(parking_id))
        headers = {
            "Content-Type": "application/json",
            "Authorization": _basic(EASYPARK_USER, EASYPARK_PASSWORD),
        }
        return Req(
            "easypark", "/hooks/easypark", body, headers, "easypark", f"parking:{parking_id}"
        )

    def ztlment(self, rng: random.Random) -> Req:
        if self._ztl is None or not self._ztl[2]:
            object_type = rng.choice(tuple(ZTL_FLOWS))
            flow = list(ZTL_FLOWS[object_type])[: rng.randint(1, len(ZTL_FLOWS[object_type]))]
            self._ztl = (self.seed % 1000 * 10_000_000 + self._next(), object_type, flow)
        object_id, object_type, flow = self._ztl
        state = flow.pop(0)
        body = msgspec.json.encode({"id": object_id, "type": object_type, "state": state})
        headers = {
            "Content-Type": "application/json",
            "X-Payload-Signature": base64.b64encode(_hmac(ZTLMENT_SECRET, body, "sha512")).decode(),
        }
        return Req(
            "ztlment",
            "/hooks/ztlment",
            body,
            headers,
            "ztlment",
            f"{object_type}:{object_id}:{state}",
        )

    def zaptec_start(self) -> Req:
        n = self._next()
        charger = f"DUR{self.seed}-{n}"
        body = msgspec.json.encode(
            {
                "ChargerId": charger,
                "DeviceId": f"ZAP{n:06d}",
                "InstallationId": f"inst-{n % 97}",
                "UserId": f"user-{n % 1013}",
                "TokenId": f"RFID{n:08X}",
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Authorization": _basic(ZAPTEC_USER, ZAPTEC_PASSWORD),
        }
        return Req(
            "zaptec-start",
            "/hooks/zaptec/session-start",
            body,
            headers,
            "zaptec",
            "",
            charger=charger,
        )

    def zaptec_end(self, session: str, charger: str, rng: random.Random) -> Req:
        body = msgspec.json.encode(
            {
                "SessionId": session,
                "ChargerId": charger,
                "StartDateTime": "2025-12-04T10:00:00Z",
                "EndDateTime": "2025-12-04T12:00:00Z",
                "Energy": round(rng.uniform(1, 45), 3),
                "SignedSession": 'OCMF|{"FV":"1.0","GI":"ZAPTEC GO"}|{"SA":"ECDSA"}',
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Authorization": _basic(ZAPTEC_USER, ZAPTEC_PASSWORD),
        }
        return Req(
            "zaptec-end",
            "/hooks/zaptec/session-end",
            body,
            headers,
            "zaptec",
            f"end:{session}",
            charger=charger,
            session=session,
        )

    def next_request(self, rng: random.Random, *, retries: bool, duplicates: bool) -> Req:
        if retries and self.retry:
            req = self.retry.popleft()
            req.retry = True
            return req
        if duplicates and self.dup_pool and rng.random() < self.dup_share:
            original = rng.choice(self.dup_pool)
            return Req(
                original.kind,
                original.path,
                original.body,
                original.headers,
                original.source,
                original.key,
                original.charger,
                original.session,
                duplicate=True,
            )
        provider = rng.choice(PROVIDERS)
        if provider == "ampeco":
            return self.ampeco()
        if provider == "easypark":
            return self.easypark()
        if provider == "ztlment":
            return self.ztlment(rng)
        if self.pending_ends and rng.random() < 0.5:
            i = rng.randrange(len(self.pending_ends))
            self.pending_ends[i], self.pending_ends[-1] = (
                self.pending_ends[-1],
                self.pending_ends[i],
            )
            session, charger = self.pending_ends.pop()
            return self.zaptec_end(session, charger, rng)
        return self.zaptec_start()

    # -- outcomes --------------------------------------------------------------------------

    def is_acked(self, req: Req) -> bool:
        return req.ident in self.acked if req.kind != "zaptec-start" else False

    def acknowledged(self, req: Req, status: int, body: bytes, ack: Ack) -> str:
        """Record a 2xx (or EasyPark 409); returns the text the event leaves in the WAL (the
        dedup key, or the sessionId of a Zaptec start)."""
        if req.kind == "easypark" and req.duplicate and status != 409:
            # The original was acknowledged: a 200 here means it was not in the inbox.
            self.duplicate_answered_as_new.append(
                {"key": req.key, "status": status, "original": _ack_doc(self.acked[req.ident])}
            )
        self.unacked.pop(req.ident, None)
        if req.kind == "zaptec-start":
            session = str(msgspec.json.decode(body)["sessionId"])
            ack.charger = req.charger
            ack.session = session
            self.starts[session] = ack
            self.pending_ends.append((session, req.charger))
            return session
        ack.session = req.session
        self.acked.setdefault(req.ident, ack)
        if not req.duplicate and not req.retry:
            self.dup_pool.append(req)
        return req.key

    def failed(self, req: Req) -> None:
        """A transport failure: not acknowledged; the provider will retry (not a start)."""
        if req.duplicate or self.is_acked(req):
            return
        self.unacked[req.ident] = req
        if req.kind != "zaptec-start":
            self.retry.append(req)

    def refused(self, req: Req, status: int, body: bytes) -> None:
        """A non-2xx answer: counted and shown; providers retry 5xx."""
        self.non_2xx[f"{req.kind} {status}"] += 1
        if len(self.non_2xx_samples) < 10:
            self.non_2xx_samples.append(
                {"kind": req.kind, "status": status, "body": body[:300].decode("utf-8", "replace")}
            )
        if status >= 500 and not req.duplicate and not self.is_acked(req):
            self.unacked[req.ident] = req
            if req.kind != "zaptec-start":
                self.retry.append(req)


def _ack_doc(ack: Ack) -> dict[str, Any]:
    return {k: getattr(ack, k) for k in Ack.__slots__}


# -- HTTP: raw asyncio keep-alive client (cheap on the CPU, like bench/decisions.py) ------


class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, req: Req, bench_id: int) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        assert self.reader is not None
        head = [f"POST {req.path} HTTP/1.1", "Host: 127.0.0.1", f"X-Bench-Id: {bench_id}"]
        head += [f"{k}: {v}" for k, v in req.headers.items()]
        head.append(f"Content-Length: {len(req.body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + req.body)
        await self.writer.drain()
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response[9:12])
        match = _CONTENT_LENGTH.search(response)
        body = await self.reader.readexactly(int(match.group(1))) if match else b""
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class LoadCtx:
    port: int
    ledger: Ledger
    stats: RoundStats
    rng_seed: str
    retries: bool
    duplicates: bool
    killed: bool = False
    kill_at: float = 0.0
    started: float = 0.0
    hard_stop: float = 0.0
    inflight: int = 0
    bench_ids: int = 0
    needles: dict[int, str] = field(default_factory=dict)  # bench id -> text in the WAL
    acks: list[Ack] = field(default_factory=list)
    stop_when_idle: bool = False


async def _sender(ctx: LoadCtx, index: int) -> None:
    loop = asyncio.get_running_loop()
    rng = random.Random(f"{ctx.rng_seed}-{index}")
    conn = Conn(ctx.port)
    ledger, stats = ctx.ledger, ctx.stats
    try:
        while not ctx.killed and loop.time() < ctx.hard_stop and stats.requests < ROUND_REQUEST_CAP:
            if ctx.stop_when_idle:
                if not ledger.retry:
                    return
                req = ledger.retry.popleft()
                req.retry = True
            else:
                req = ledger.next_request(rng, retries=ctx.retries, duplicates=ctx.duplicates)
            ctx.bench_ids += 1
            bench_id = ctx.bench_ids
            stats.requests += 1
            stats.duplicates_sent += req.duplicate
            stats.retries_sent += req.retry
            ctx.inflight += 1
            try:
                status, body = await asyncio.wait_for(
                    conn.exchange(req, bench_id), REQUEST_TIMEOUT_S
                )
            except _TRANSPORT as exc:
                conn.close()
                if ctx.killed:
                    stats.transport_errors_at_kill += 1
                else:
                    stats.transport_errors_before_kill += 1
                    if len(ledger.unexpected_errors) < 10:
                        ledger.unexpected_errors.append(f"{req.kind}: {type(exc).__name__}: {exc}")
                stats.failed.append(req)
                ledger.failed(req)
                if not ctx.killed:
                    await asyncio.sleep(0.01)
                continue
            finally:
                ctx.inflight -= 1
            stats.answered += 1
            stats.answered_before_kill += not ctx.killed
            stats.statuses[status] += 1
            if 200 <= status < 300 or (status == 409 and req.kind == "easypark"):
                # after_kill_s holds the loop time until the round ends (see _run_load)
                ack = Ack(req.kind, stats.round, loop.time(), req.duplicate, req.retry)
                ctx.acks.append(ack)
                stats.acknowledged += 1
                needle = ledger.acknowledged(req, status, body, ack)
                if not req.duplicate and not req.retry:
                    ctx.needles[bench_id] = needle
            else:
                ledger.refused(req, status, body)
    finally:
        conn.close()


async def _run_load(
    ctx: LoadCtx, senders: int, kill_after: float | None, pid: int, on_loaded: Any = None
) -> None:
    """Senders; after `kill_after` seconds SIGKILL the server (None: run until retries drain)."""
    loop = asyncio.get_running_loop()
    ctx.started = loop.time()
    ctx.hard_stop = ctx.started + (kill_after if kill_after is not None else 60.0) + 10.0
    tasks = [asyncio.create_task(_sender(ctx, i)) for i in range(senders)]
    if kill_after is None:
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        ctx.stats.load_seconds = loop.time() - ctx.started
        for ack in ctx.acks:
            ack.after_kill_s = None
        return
    await asyncio.sleep(kill_after)
    if on_loaded is not None:
        on_loaded()
    ctx.stats.inflight_at_kill = ctx.inflight
    ctx.killed = True
    ctx.kill_at = loop.time()
    os.kill(pid, signal.SIGKILL)
    ctx.stats.load_seconds = ctx.kill_at - ctx.started
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for ack in ctx.acks:
        assert ack.after_kill_s is not None
        ack.after_kill_s = round(ack.after_kill_s - ctx.kill_at, 6)


# -- the server -----------------------------------------------------------------------------


def write_config(work: Path, port: int, storage_url: str, zaptec_extra: str = "") -> Path:
    text = f"""
[server]
host = "{HOST}"
port = {port}
max_body_bytes = 65536

[storage]
url = "{storage_url}"

[logging]
level = "warning"

[[sources]]
name = "ampeco"
provider = "ampeco"
secrets = ["{AMPECO_SECRET}"]

[[sources]]
name = "easypark"
provider = "easypark"
auth = "basic"
username = "{EASYPARK_USER}"
password = "{EASYPARK_PASSWORD}"

[[sources]]
name = "ztlment"
provider = "ztlment"
secrets = ["{ZTLMENT_SECRET}"]

[[sources]]
name = "zaptec"
provider = "zaptec"
auth = "basic"
username = "{ZAPTEC_USER}"
password = "{ZAPTEC_PASSWORD}"
unknown_token = "allow"
{zaptec_extra}"""
    path = work / "hookgate.toml"
    path.write_text(text.lstrip(), encoding="utf-8")
    return path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def healthy(port: int) -> bool:
    conn = http.client.HTTPConnection(HOST, port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def start_server(
    config: Path, port: int, label: str, launcher: str | None = None
) -> tuple[subprocess.Popen[bytes], float]:
    """`hookgate serve` (or, for a control, the same CLI after `launcher` patched it)."""
    work = config.parent
    began = time.perf_counter()
    head = [sys.executable, "-c", launcher] if launcher else [sys.executable, "-m", "hookgate"]
    with open(work / f"serve-{label}.log", "wb") as log:
        proc = subprocess.Popen(
            [*head, "serve", "--config", str(config)],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while not healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            tail = (work / f"serve-{label}.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"hookgate serve ({label}) did not become healthy:\n{tail}")
        time.sleep(0.03)
    return proc, time.perf_counter() - began


# -- the database ---------------------------------------------------------------------------


@dataclass
class DbState:
    inbox: set[tuple[str, str]]
    inbox_ids: set[str]
    decisions: dict[str, tuple[str, str]]  # sessionId -> (charger, event id)
    decision_chargers: set[str]
    sessions: dict[str, str]  # sessionId -> status

    @classmethod
    def read(cls, db: Path, *, read_only: bool) -> DbState:
        uri = f"file:{db}?mode=ro" if read_only else f"file:{db}"
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            return cls.query(lambda sql: list(conn.execute(sql)))
        finally:
            conn.close()

    @classmethod
    def read_pg(cls, url: str) -> DbState:
        import psycopg

        with psycopg.connect(url) as conn:
            return cls.query(lambda sql: list(conn.execute(sql.encode()).fetchall()))

    @classmethod
    def query(cls, rows: Callable[[str], list[tuple[Any, ...]]]) -> DbState:
        inbox = {(str(s), str(k)) for s, k in rows("SELECT source, dedup_key FROM inbox")}
        inbox_ids = {str(r[0]) for r in rows("SELECT id FROM inbox WHERE source='zaptec'")}
        decisions: dict[str, tuple[str, str]] = {}
        chargers: set[str] = set()
        for session, charger, event in rows(
            "SELECT session_id, charger_id, event_id FROM decisions WHERE source = 'zaptec'"
        ):
            chargers.add(str(charger))
            if session is not None:
                decisions[str(session)] = (str(charger), str(event))
        sessions = {
            str(s): str(st)
            for s, st in rows(
                "SELECT session_id, status FROM authorized_sessions WHERE source = 'zaptec'"
            )
        }
        return cls(inbox, inbox_ids, decisions, chargers, sessions)

    def has(self, req: Req) -> bool:
        if req.kind == "zaptec-start":
            return req.charger in self.decision_chargers
        return (req.source, req.key) in self.inbox


@dataclass
class Db:
    """Where a campaign's events live: a SQLite file in the work directory, or a fresh
    schema in a local PostgreSQL database (created here, dropped afterwards)."""

    backend: str  # sqlite | postgresql
    path: Path  # the SQLite file
    pg_url: str = ""  # PostgreSQL: the database to create the schema in
    schema: str = ""

    @property
    def storage_url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        joiner = "&" if "?" in self.pg_url else "?"
        return f"{self.pg_url}{joiner}options=-csearch_path%3D{self.schema}"

    def create(self) -> None:
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}".encode())

    def drop(self) -> None:
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE".encode())

    def state(self, *, read_only: bool) -> DbState:
        if self.backend == "postgresql":
            return DbState.read_pg(self.storage_url)
        return DbState.read(self.path, read_only=read_only)


def missing(ledger: Ledger, state: DbState) -> list[dict[str, Any]]:
    """Every acknowledged event that the database lacks, with what is wrong."""
    out: list[dict[str, Any]] = []

    def add(source: str, key: str, problem: str, ack: Ack) -> None:
        out.append({"source": source, "key": key, "problem": problem, **_ack_doc(ack)})

    for (source, key), ack in ledger.acked.items():
        if (source, key) not in state.inbox:
            add(source, key, "not in inbox", ack)
        elif ack.kind == "zaptec-end" and state.sessions.get(ack.session) != "ended":
            add(source, key, f"session is {state.sessions.get(ack.session)!r}, not 'ended'", ack)
    for session, ack in ledger.starts.items():
        decision = state.decisions.get(session)
        if decision is None:
            add("zaptec", f"session:{session}", "no decision row with this sessionId", ack)
        elif decision[0] != ack.charger:
            add("zaptec", f"session:{session}", f"decision is for charger {decision[0]}", ack)
        elif decision[1] not in state.inbox_ids:
            add("zaptec", f"session:{session}", "the decision's start event is not in inbox", ack)
        elif session not in state.sessions:
            add("zaptec", f"session:{session}", "not in authorized_sessions", ack)
    return out


def note_lost(lost: dict[str, dict[str, Any]], gone: list[dict[str, Any]], where: str) -> None:
    for item in gone:
        entry = lost.setdefault(f"{item['source']}|{item['key']}", {**item, "seen_in": []})
        entry["seen_in"].append(where)


def power_cut_copy(db: Path, into: Path) -> tuple[Path, int, int]:
    """Copy only the database file and its WAL as they are now (no -shm)."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir()
    target = into / db.name
    shutil.copyfile(db, target)
    wal = db.with_name(db.name + "-wal")
    wal_bytes = 0
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))
        wal_bytes = wal.stat().st_size
    return target, db.stat().st_size, wal_bytes


# -- fsync ordering under strace ------------------------------------------------------------

_STRACE_LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((\d+)")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_DURATION = re.compile(r"<(\d+\.\d+)>\s*$")
_BENCH_ID = re.compile(r"X-Bench-Id: (\d+)")


def parse_strace(path: Path) -> list[tuple[float, float, str, int, str]]:
    """(start, end, syscall, fd, text) in start order, unfinished/resumed pairs joined."""
    calls = []
    pending: dict[str, tuple[float, str]] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            match = _STRACE_LINE.match(line.rstrip("\n"))
            if not match:
                continue
            pid, ts, rest = match.group(1), float(match.group(2)), match.group(3)
            if rest.endswith("<unfinished ...>"):
                pending[pid] = (ts, rest[: -len("<unfinished ...>")])
                continue
            resumed = _RESUMED.match(rest)
            if resumed:
                if pid not in pending:
                    continue
                start, head = pending.pop(pid)
                rest, end = head + resumed.group(2), ts
            else:
                duration = _DURATION.search(rest)
                start, end = ts, ts + (float(duration.group(1)) if duration else 0.0)
            call = _CALL.match(rest)
            if call:
                calls.append((start, end, call.group(1), int(call.group(2)), rest))
    calls.sort(key=lambda c: c[0])
    return calls


_NEEDLE = re.compile(
    r"parking:\d+|end:[0-9a-f-]{36}|(?:PAYMENT|APPROVAL)_OBJECT:\d+:[A-Z_]+|[0-9a-f]{64}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def check_fsync_order(
    calls: list[tuple[float, float, str, int, str]], wal_fds: set[int], needles: dict[int, str]
) -> dict[str, Any]:
    """For every acknowledged request: the WAL write that first holds its event, then an
    fdatasync of the WAL, then the 2xx written to the socket."""
    current: dict[int, int] = {}  # socket fd -> bench id of the request read on it
    acks: list[tuple[float, int]] = []
    first_written: dict[str, float] = {}
    syncs: list[tuple[float, float]] = []
    wal_writes = 0
    for start, end, name, fd, text in calls:
        if fd in wal_fds:
            if name in ("pwrite64", "write", "writev"):
                wal_writes += 1
                for found in _NEEDLE.findall(text):
                    first_written.setdefault(found, end)
            elif name in ("fdatasync", "fsync"):
                syncs.append((start, end))
            continue
        if name in ("read", "recvfrom"):
            request = _BENCH_ID.search(text)
            if request:
                current[fd] = int(request.group(1))
        elif name in ("write", "writev", "sendto", "sendmsg") and (
            '"HTTP/1.1 2' in text or '"HTTP/1.1 409' in text
        ):
            bench_id = current.pop(fd, None)
            if bench_id is not None:
                acks.append((start, bench_id))
    ok = violations = not_found = 0
    examples: list[dict[str, Any]] = []
    for ack_at, bench_id in acks:
        needle = needles.get(bench_id)
        if not needle:
            continue  # a duplicate or a retry: its event was written before the trace
        written = first_written.get(needle)
        if written is None:
            not_found += 1
            continue
        if any(s >= written and e <= ack_at for s, e in syncs):
            ok += 1
        else:
            violations += 1
            if len(examples) < 5:
                examples.append({"needle": needle, "wal_write_end": written, "ack_write": ack_at})
    return {
        "acks_traced": len(acks),
        "checked": ok + violations,
        "fsync_before_ack": ok,
        "violations": violations,
        "needle_not_found": not_found,
        "wal_fdatasyncs": len(syncs),
        "wal_writes": wal_writes,
        "violation_examples": examples,
    }


def wal_fds(pid: int, db: Path) -> set[int]:
    fds = set()
    wal = str(db) + "-wal"
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wal:
                    fds.add(int(fd))
    return fds


def wait_traced(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            traced = all(
                "TracerPid:\t0" not in Path(f"/proc/{pid}/task/{t}/status").read_text()
                for t in tasks
            )
        except OSError:
            return False
        if traced:
            return True
        time.sleep(0.05)
    return False


# -- the run --------------------------------------------------------------------------------


def after_kill(
    ledger: Ledger, stats: RoundStats, db: Db, work: Path, lost: dict[str, dict[str, Any]]
) -> None:
    """SQLite: the power-cut copy, every acknowledged event must be in db + WAL as left in
    the files. PostgreSQL (which the kill does not touch): the database as it is now."""
    if db.backend == "postgresql":
        state = db.state(read_only=True)
        where = f"PostgreSQL after kill {stats.round}"
    else:
        copy, stats.db_bytes, stats.wal_bytes = power_cut_copy(db.path, work / "copy")
        state = DbState.read(copy, read_only=False)
        where = f"copy of db + WAL after kill {stats.round}"
    gone = missing(ledger, state)
    stats.missing_in_copy = len(gone)
    note_lost(lost, gone, where)
    for req in stats.failed:
        if req.duplicate:
            stats.failed_already_acked += 1
        elif state.has(req):
            stats.failed_stored += 1
        else:
            stats.failed_not_stored += 1
    shutil.rmtree(work / "copy", ignore_errors=True)


def check_live(
    ledger: Ledger, stats: RoundStats, db: Db, lost: dict[str, dict[str, Any]], where: str
) -> None:
    gone = missing(ledger, db.state(read_only=True))
    stats.missing_after_restart = len(gone)
    note_lost(lost, gone, where)


# -- controls: the same campaign against deliberately broken servers -------------------------

# Each patches hookgate in the server process only (src/ is untouched) and then runs the CLI.
# The code names the SQLite store; control_code() swaps in the PostgreSQL one.
CONTROLS: dict[str, dict[str, str]] = {
    "ack-before-commit": {
        "expect": "acknowledged events lost after SIGKILL",
        "code": """
import asyncio
from hookgate.store import sqlite as s
from hookgate.store.base import IngestResult, SessionEndResult
_pending = set()
def _later(coro):
    task = asyncio.ensure_future(coro)
    _pending.add(task)
    task.add_done_callback(_pending.discard)
real_ingest, real_start, real_end = (
    s.SqliteStore.ingest, s.SqliteStore.record_session_start, s.SqliteStore.record_session_end)
async def ingest(self, event, consumption=None):
    _later(real_ingest(self, event, consumption))
    return IngestResult(True, event.id)
async def record_session_start(self, event, decision, *args, **kwargs):
    _later(real_start(self, event, decision, *args, **kwargs))
async def record_session_end(self, event, end):
    _later(real_end(self, event, end))
    return SessionEndResult(True, event.id, True)
s.SqliteStore.ingest = ingest
s.SqliteStore.record_session_start = record_session_start
s.SqliteStore.record_session_end = record_session_end
from hookgate.cli import main
main()
""",
    },
    "synchronous-off": {
        "expect": "no loss under SIGKILL (the page cache survives it), fsync-before-ack violations",
        "code": """
from hookgate.store import sqlite as s
real_connect = s._connect
def _connect(path):
    conn = real_connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    return conn
s._connect = _connect
from hookgate.cli import main
main()
""",
    },
}


SQLITE_ONLY_CONTROLS = ("synchronous-off",)


def control_code(name: str, backend: str) -> str:
    code = CONTROLS[name]["code"]
    if backend == "postgresql":
        code = code.replace("import sqlite as s", "import postgres as s")
        code = code.replace("SqliteStore", "PostgresStore")
    return code


@dataclass
class Campaign:
    """One database, N kill rounds, an optional traced round, a clean final start."""

    name: str
    seed: int
    senders: int
    dup_share: float
    launcher: str | None = None
    zaptec_extra: str = ""  # extra TOML lines for the zaptec source
    backend: str = "sqlite"
    pg_url: str = ""
    ledger: Ledger = field(init=False)
    lost: dict[str, dict[str, Any]] = field(default_factory=dict)
    rounds: list[RoundStats] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=lambda: {"ran": False})
    final: dict[str, Any] = field(default_factory=dict)
    cut_short: bool = False

    def __post_init__(self) -> None:
        self.ledger = Ledger(self.seed, self.dup_share)

    def run(self, delays: list[float], *, trace: bool, deadline: float, keep: bool) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"hookgate-durability-{self.name}-"))
        port = free_port()
        schema = f"hg_durability_{os.getpid()}_{self.name.replace('-', '_')}"
        db = Db(self.backend, work / "hookgate.db", self.pg_url, schema)
        db.create()
        config = write_config(work, port, db.storage_url, self.zaptec_extra)
        print(
            f"[{self.name}] {self.backend}, work dir {work}, port {port}, seed {self.seed}, "
            f"kills {len(delays)}"
        )
        try:
            subprocess.run(
                [sys.executable, "-m", "hookgate", "migrate", "--config", str(config)],
                check=True,
                capture_output=True,
                timeout=120,
            )
            for number, delay in enumerate(delays, 1):
                if time.monotonic() > deadline:
                    self.cut_short = True
                    print(f"[{self.name}] time budget spent: stopping after {number - 1} rounds")
                    break
                self.kill_round(config, port, db, str(number), delay)
            if trace and self.backend == "sqlite":
                self.traced_round(config, port, db)
            elif trace:
                self.trace = {"ran": False, "why": "the fsync trace reads SQLite's WAL file"}
            self.final_round(config, port, db)
        finally:
            if keep:
                print(f"[{self.name}] kept {work} (schema {schema})")
            else:
                shutil.rmtree(work, ignore_errors=True)
                db.drop()

    def kill_round(self, config: Path, port: int, db: Db, label: str, delay: float) -> None:
        stats = RoundStats(round=label, kill_after_s=delay)
        proc, stats.startup_s = start_server(config, port, label, self.launcher)
        check_live(self.ledger, stats, db, self.lost, f"after restart before round {label}")
        ctx = LoadCtx(
            port, self.ledger, stats, f"{self.seed}-{label}", retries=True, duplicates=True
        )
        asyncio.run(_run_load(ctx, self.senders, delay, proc.pid))
        stats.exit_code = proc.wait(10)
        after_kill(self.ledger, stats, db, config.parent, self.lost)
        self.rounds.append(stats)
        print(
            f"[{self.name}] round {label:>2}: kill after {delay:.2f}s, {stats.requests} requests, "
            f"{stats.acknowledged} acked, in flight {stats.inflight_at_kill}, transport errors "
            f"{stats.transport_errors_at_kill}+{stats.transport_errors_before_kill} (stored "
            f"{stats.failed_stored}), missing in copy {stats.missing_in_copy}, "
            f"exit {stats.exit_code}"
        )

    def traced_round(self, config: Path, port: int, db: Db) -> None:
        """One kill round with the server under strace: fresh events only, 4 senders."""
        if not shutil.which("strace"):
            self.trace = {"ran": False, "why": "strace is not installed"}
            return
        stats = RoundStats(round="traced", kill_after_s=1.5)
        proc, stats.startup_s = start_server(config, port, "traced", self.launcher)
        check_live(self.ledger, stats, db, self.lost, "after restart before the traced round")
        out = config.parent / "strace.txt"
        tracer = subprocess.Popen(
            [
                "strace", "-f", "-p", str(proc.pid), "-ttt", "-T", "-s", "4200", "-o", str(out),
                "-e", "trace=read,write,writev,pwrite64,fdatasync,fsync,recvfrom,sendto,sendmsg",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        if not wait_traced(proc.pid, 10):
            tracer.kill()
            err = tracer.communicate(timeout=10)[1].decode(errors="replace")[-500:]
            proc.kill()
            proc.wait(10)
            self.trace = {"ran": False, "why": f"strace could not attach: {err}"}
            return
        fds: set[int] = set()
        ctx = LoadCtx(
            port, self.ledger, stats, f"{self.seed}-traced", retries=False, duplicates=False
        )

        def grab_fds() -> None:
            fds.update(wal_fds(proc.pid, db.path))

        asyncio.run(_run_load(ctx, 4, 1.5, proc.pid, on_loaded=grab_fds))
        stats.exit_code = proc.wait(10)
        try:
            tracer.wait(30)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait(10)
        after_kill(self.ledger, stats, db, config.parent, self.lost)
        self.rounds.append(stats)
        result = check_fsync_order(parse_strace(out), fds, ctx.needles)
        out.unlink(missing_ok=True)
        self.trace = {"ran": True, "wal_fds": sorted(fds), **result}
        print(
            f"[{self.name}] traced round: {result['checked']} acks checked, "
            f"{result['fsync_before_ack']} with fdatasync before the ack, "
            f"{result['violations']} violations"
        )

    def final_round(self, config: Path, port: int, db: Db) -> None:
        """Clean start, the remaining provider retries, SIGTERM, then compare once more."""
        stats = RoundStats(round="final")
        proc, stats.startup_s = start_server(config, port, "final", self.launcher)
        check_live(self.ledger, stats, db, self.lost, "after the last restart")
        retries_left = len(self.ledger.retry)
        ctx = LoadCtx(
            port, self.ledger, stats, f"{self.seed}-final", retries=True, duplicates=False
        )
        ctx.stop_when_idle = True
        asyncio.run(_run_load(ctx, min(self.senders, 8), None, proc.pid))
        proc.send_signal(signal.SIGTERM)
        stats.exit_code = proc.wait(60)
        self.rounds.append(stats)
        state = db.state(read_only=False)
        note_lost(self.lost, missing(self.ledger, state), "after the clean stop")
        unacked = self.ledger.unacked.values()
        self.final = {
            "retries_delivered": retries_left,
            "retry_answers": {str(k): v for k, v in sorted(stats.statuses.items())},
            "sigterm_exit_code": stats.exit_code,
            "inbox_rows": len(state.inbox),
            "unacknowledged_left": len(unacked),
            "unacknowledged_left_by_kind": dict(sorted(Counter(r.kind for r in unacked).items())),
            "unacknowledged_left_stored": sum(state.has(r) for r in unacked),
        }

    def totals(self) -> dict[str, Any]:
        ledger, rounds = self.ledger, self.rounds
        kills = [r for r in rounds if r.kill_after_s is not None]
        numbered = [r for r in kills if r.round.isdigit()]
        acknowledged = len(ledger.acked) + len(ledger.starts)
        by_kind = Counter(a.kind for a in ledger.acked.values()) + Counter(
            a.kind for a in ledger.starts.values()
        )
        lost_by_kind = Counter(item["kind"] for item in self.lost.values())
        load_s = sum(r.load_seconds for r in numbered)
        answered = sum(r.answered_before_kill for r in numbered)
        return {
            "rounds": len(numbered),
            "traced_round": self.trace.get("ran", False),
            "cut_short_by_time_budget": self.cut_short,
            "requests": sum(r.requests for r in rounds),
            "acknowledged_events": acknowledged,
            "acknowledged_by_kind": dict(sorted(by_kind.items())),
            "stored": acknowledged - len(self.lost),
            "lost": len(self.lost),
            "lost_by_kind": dict(sorted(lost_by_kind.items())),
            "acknowledgements": sum(r.acknowledged for r in rounds),
            "duplicates_sent": sum(r.duplicates_sent for r in rounds),
            "duplicate_easypark_answered_200_not_409": len(ledger.duplicate_answered_as_new),
            "retries_sent": sum(r.retries_sent for r in rounds),
            "inflight_at_kill": sum(r.inflight_at_kill for r in kills),
            "transport_errors": sum(
                r.transport_errors_at_kill + r.transport_errors_before_kill for r in rounds
            ),
            "transport_errors_at_kill": sum(r.transport_errors_at_kill for r in rounds),
            "transport_errors_before_kill": sum(r.transport_errors_before_kill for r in rounds),
            "stored_but_unacknowledged": sum(r.failed_stored for r in kills),
            "unacknowledged_not_stored": sum(r.failed_not_stored for r in kills),
            "failed_duplicates_of_acknowledged": sum(r.failed_already_acked for r in kills),
            "non_2xx": dict(ledger.non_2xx),
            "load_seconds": round(load_s, 3),
            "rps_during_rounds": round(answered / load_s, 1) if load_s else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dup-share", type=float, default=0.02, help="deliberate duplicates")
    parser.add_argument("--max-seconds", type=float, default=300, help="no new kill round after")
    parser.add_argument("--no-trace", action="store_true", help="skip the strace fsync round")
    parser.add_argument("--control-kills", type=int, default=3, help="0 skips the controls")
    parser.add_argument(
        "--zaptec-on-error",
        choices=["deny", "allow", "allow_known"],
        default="deny",
        help="the zaptec source's fallback policy (default deny, as shipped)",
    )
    parser.add_argument(
        "--zaptec-deadline-ms", type=int, default=2000, help="decision_deadline_ms (10..30000)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "HOOKGATE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL on this machine; each campaign gets a fresh schema, dropped after",
    )
    args = parser.parse_args()
    if args.backend == "postgresql":
        from urllib.parse import urlsplit

        if urlsplit(args.pg_url).hostname not in ("127.0.0.1", "localhost"):
            parser.error("--pg-url must point at 127.0.0.1")
    if not 1 <= args.kills <= 500 or not 1 <= args.senders <= 512:
        parser.error("--kills 1..500, --senders 1..512")
    if not 0 <= args.control_kills <= 20 or not 0 <= args.dup_share <= 0.5:
        parser.error("--control-kills 0..20, --dup-share 0..0.5")
    if not 10 <= args.zaptec_deadline_ms <= 30000:
        parser.error("--zaptec-deadline-ms 10..30000")

    began = time.monotonic()
    master = random.Random(args.seed)
    delays = [round(master.uniform(KILL_MIN_S, KILL_MAX_S), 3) for _ in range(args.kills)]
    zaptec_extra = (
        f'on_error = "{args.zaptec_on_error}"\ndecision_deadline_ms = {args.zaptec_deadline_ms}\n'
    )
    main_run = Campaign(
        "hookgate",
        args.seed,
        args.senders,
        args.dup_share,
        zaptec_extra=zaptec_extra,
        backend=args.backend,
        pg_url=args.pg_url,
    )
    main_run.run(delays, trace=not args.no_trace, deadline=began + args.max_seconds, keep=args.keep)
    controls = {}
    if args.control_kills:
        for name in CONTROLS:
            if args.backend != "sqlite" and name in SQLITE_ONLY_CONTROLS:
                continue
            run = Campaign(
                name,
                args.seed,
                args.senders,
                args.dup_share,
                control_code(name, args.backend),
                backend=args.backend,
                pg_url=args.pg_url,
            )
            rng = random.Random(f"{args.seed}-{name}")
            run.run(
                [round(rng.uniform(KILL_MIN_S, KILL_MAX_S), 3) for _ in range(args.control_kills)],
                trace=not args.no_trace,
                deadline=began + args.max_seconds + 60,
                keep=args.keep,
            )
            controls[name] = run
    report(args, main_run, controls, time.monotonic() - began)


def pg_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(b"SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def report(
    args: argparse.Namespace,
    run: Campaign,
    controls: dict[str, Campaign],
    elapsed: float,
) -> None:
    totals = run.totals()
    totals["kills_requested"] = args.kills
    totals["runtime_seconds"] = round(elapsed, 1)
    control_docs = {}
    for name, control in controls.items():
        t = control.totals()
        trace = control.trace
        if name == "ack-before-commit":
            detected = t["lost"] > 0
        elif trace.get("ran"):
            detected = trace["violations"] > 0
        else:
            detected = None  # no strace: this control cannot be checked here
        control_docs[name] = {
            "expect": CONTROLS[name]["expect"],
            "detected": detected,
            "rounds": t["rounds"],
            "acknowledged_events": t["acknowledged_events"],
            "lost": t["lost"],
            "lost_by_kind": t["lost_by_kind"],
            "fsync_trace": {
                k: trace.get(k) for k in ("ran", "checked", "fsync_before_ack", "violations", "why")
            },
            "lost_examples": list(control.lost.values())[:5],
        }
    document = {
        "seed": args.seed,
        "senders": args.senders,
        "dup_share": args.dup_share,
        "zaptec": {
            "on_error": args.zaptec_on_error,
            "decision_deadline_ms": args.zaptec_deadline_ms,
        },
        "kill_window_seconds": [KILL_MIN_S, KILL_MAX_S],
        "backend": args.backend,
        "host": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "postgresql": pg_version(args.pg_url) if args.backend == "postgresql" else None,
        },
        "totals": totals,
        "lost_events": list(run.lost.values())[:100],
        "fsync_trace": run.trace,
        "final": run.final,
        "controls": control_docs,
        "non_2xx_samples": run.ledger.non_2xx_samples,
        "unexpected_transport_errors": run.ledger.unexpected_errors,
        "duplicate_answered_as_new": run.ledger.duplicate_answered_as_new[:20],
        "rounds": [r.summary() for r in run.rounds],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "durability" if args.backend == "sqlite" else f"durability-{args.backend}"
    (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(document))
    print(markdown(document))
    failed = [name for name, doc in control_docs.items() if doc["detected"] is False]
    if run.lost:
        print(f"LOST {len(run.lost)} acknowledged events: see durability.json lost_events")
    if failed:
        print(f"controls not detected: {failed}: the benchmark may be blind")
    if run.lost or failed:
        sys.exit(1)


def markdown(doc: dict[str, Any]) -> str:
    t = doc["totals"]
    trace = doc["fsync_trace"]
    final = doc["final"]
    zaptec = doc["zaptec"]
    policy = ""
    if zaptec["on_error"] != "deny" or zaptec["decision_deadline_ms"] != 2000:
        policy = (
            f" --zaptec-on-error {zaptec['on_error']} "
            f"--zaptec-deadline-ms {zaptec['decision_deadline_ms']}"
        )
    pg = doc.get("backend", "sqlite") == "postgresql"
    backend = " --backend postgresql" if pg else ""
    store = (
        f"PostgreSQL {doc['host'].get('postgresql')} (a fresh schema per campaign)"
        if pg
        else f"SQLite {doc['host']['sqlite']}"
    )
    verdict = (
        "**0 acknowledged events lost.**" if t["lost"] == 0 else f"**{t['lost']} LOST: a bug.**"
    )
    lines = [
        "# Durability under SIGKILL",
        "",
        f"`bench/durability.py --kills {t['kills_requested']} --senders {doc['senders']} "
        f"--seed {doc['seed']}{policy}{backend}` on {doc['host']['cpus']} CPUs, "
        f"{store}, Python {doc['host']['python']}; total runtime "
        f"{t['runtime_seconds']} s (controls included). Written by the script; see "
        "docs/durability.md.",
        "",
        verdict,
        "",
        "| measure | value |",
        "|---|---|",
        f"| rounds: SIGKILL at a random moment {doc['kill_window_seconds'][0]}-"
        f"{doc['kill_window_seconds'][1]} s into the load | {t['rounds']}"
        f"{' + 1 traced' if t['traced_round'] else ''} |",
        f"| concurrent senders | {doc['senders']} |",
        f"| zaptec source | auth basic, unknown_token allow, on_error {zaptec['on_error']}, "
        f"decision_deadline_ms {zaptec['decision_deadline_ms']} |",
        f"| requests sent | {t['requests']} |",
        f"| acknowledged events (2xx, or EasyPark 409) | {t['acknowledged_events']} |",
        f"| ... by kind | {', '.join(f'{k} {v}' for k, v in t['acknowledged_by_kind'].items())} |",
        f"| acknowledged events stored | {t['stored']} |",
        f"| **acknowledged events lost** | **{t['lost']}** |",
        f"| requests in flight at the kills | {t['inflight_at_kill']} |",
        f"| transport errors (at a kill / unprovoked) | {t['transport_errors_at_kill']} / "
        f"{t['transport_errors_before_kill']} |",
        f"| ... event stored but unacknowledged | {t['stored_but_unacknowledged']} |",
        f"| ... event not stored (the provider retries) | {t['unacknowledged_not_stored']} |",
        f"| ... duplicates of events acknowledged earlier | "
        f"{t['failed_duplicates_of_acknowledged']} |",
        f"| deliberate duplicates sent (originals acknowledged) | {t['duplicates_sent']} |",
        f"| EasyPark duplicates answered 200 instead of 409 | "
        f"{t['duplicate_easypark_answered_200_not_409']} |",
        f"| provider retries sent (after a transport error) | {t['retries_sent']} |",
        f"| non-2xx answers | {t['non_2xx'] or 'none'} |",
        f"| requests/s during the kill rounds | {t['rps_during_rounds']} |",
        f"| seed | {doc['seed']} |",
    ]
    if pg:
        lines += [
            "",
            "PostgreSQL runs on, untouched by the kills: after each kill the database itself "
            "is read (the SQLite run's power-cut copy of db + WAL has no equivalent here).",
        ]
    if trace.get("ran"):
        lines += [
            "",
            "## fsync before ack (traced round)",
            "",
            f"One more kill round with the server under `strace -f` (4 senders): "
            f"{trace['checked']} acknowledged requests checked. For "
            f"{trace['fsync_before_ack']} of them an fdatasync of the WAL file started after "
            f"the WAL write that first held the event and returned before the 2xx was written "
            f"to the socket; violations: {trace['violations']}; event not found in a traced "
            f"WAL write: {trace['needle_not_found']}. {trace['wal_writes']} WAL writes, "
            f"{trace['wal_fdatasyncs']} WAL fdatasyncs (group commit: one per batch).",
        ]
    else:
        lines += ["", f"fsync trace: not run ({trace.get('why', 'disabled')})."]
    if final:
        lines += [
            "",
            "## Final clean start",
            "",
            f"{final['retries_delivered']} pending provider retries delivered (answers "
            f"{final['retry_answers'] or 'none'}); SIGTERM exit code "
            f"{final['sigterm_exit_code']}; {final['inbox_rows']} inbox rows. "
            f"{final['unacknowledged_left']} events were never acknowledged "
            f"({final['unacknowledged_left_by_kind'] or 'none'}; "
            f"{final['unacknowledged_left_stored']} of them stored): Zaptec session starts cut "
            "off by a kill, which the bench does not retry (a new plug-in would be a new start).",
        ]
    if doc["controls"]:
        lines += [
            "",
            "## Controls: does the benchmark see the failures it looks for?",
            "",
            "The same campaign, shorter, against a server patched in its own process "
            "(src/ untouched).",
            "",
            "| control | expected | acknowledged | lost | fsync trace (checked / violations) "
            "| detected |",
            "|---|---|---|---|---|---|",
        ]
        verdicts = {True: "yes", False: "**NO**", None: "not checked"}
        for name, c in doc["controls"].items():
            ft = c["fsync_trace"]
            traced = f"{ft['checked']} / {ft['violations']}" if ft.get("ran") else "not run"
            lines.append(
                f"| {name} | {c['expect']} | {c['acknowledged_events']} | {c['lost']} "
                f"{c['lost_by_kind'] or ''} | {traced} | {verdicts[c['detected']]} |"
            )
    lines += [
        "",
        "## Rounds",
        "",
        "| round | kill after s | startup s | requests | acked | req/s | in flight | "
        "transport errors | stored unacked | missing "
        f"({'after the kill' if pg else 'copy'} / restart) | exit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rounds"]:
        kill = "-" if r["kill_after_s"] is None else f"{r['kill_after_s']:.2f}"
        early = r["transport_errors_before_kill"]
        lines.append(
            f"| {r['round']} | {kill} | {r['startup_s']:.2f} | {r['requests']} | "
            f"{r['acknowledged']} | {r['rps'] if r['rps'] is not None else '-'} | "
            f"{r['inflight_at_kill']} | {r['transport_errors_at_kill']}"
            f"{f' (+{early} unprovoked)' if early else ''} | {r['failed_stored']} | "
            f"{r['missing_in_copy']} / {r['missing_after_restart']} | {r['exit_code']} |"
        )
    if doc["lost_events"]:
        lines += ["", "## Lost events", ""]
        lines += [f"- {json.dumps(item)}" for item in doc["lost_events"][:30]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
