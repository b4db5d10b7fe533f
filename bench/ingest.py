"""Ingest benchmark: five provider scenarios against the ceiling, a hand-written baseline
and hookgate (SQLite; SQLite without in-process processing; PostgreSQL with one and with
two instances), in one run on one machine.

    .venv/bin/python bench/ingest.py [--seconds 10] [--scenarios ampeco,easypark,ztlment,mix,zaptec]
        [--peers ceiling,baseline,hookgate-sqlite,hookgate-sqlite-ingest-only,
                 hookgate-sqlite-traced,
                 hookgate-postgres,hookgate-postgres-ingest-only,hookgate-postgres-2]
        [--rates 500,1000,2000] [--quick]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]

For each scenario x peer: a fresh temporary directory and database (PostgreSQL: a fresh
schema in the --pg-url database, dropped afterwards); start the server(s) (uvicorn +
uvloop + httptools for every peer); warm up with wrk; saturate with `wrk -t1 -c64
--latency` replaying pre-signed requests (bench/lua/replay.lua; two instances: one wrk
with half the connections per instance); then the open-model generator (bench/loadgen.py,
round robin over the instances) at each fixed rate, latency measured from each request's
due time; server CPU (utime+stime, children included, from /proc; PostgreSQL's own
processes separately) over the saturation run until the server is idle again, divided by
acknowledged requests; stop with SIGTERM; check that every acknowledged event is in the
database and that no more rows exist than were sent. Writes bench/results/ingest.json and
bench/results/ingest.md. docs/benchmarks.md explains.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import hashlib
import hmac
import itertools
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import FAILED, UNFINISHED, run_open

from hookgate.emulate.ampeco_samples import NAMES, sample, session_sequence
from hookgate.emulate.base import encode
from hookgate.emulate.easypark import transaction
from hookgate.emulate.ztlment import PAYMENT_FLOW

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / "bench" / "peers"
LUA = ROOT / "bench" / "lua" / "replay.lua"
RESULTS = ROOT / "bench" / "results"
PY = sys.executable

SCENARIOS = ("ampeco", "easypark", "ztlment", "mix", "zaptec")
PEERS = (
    "ceiling",
    "baseline",
    "hookgate-sqlite",
    "hookgate-sqlite-ingest-only",
    "hookgate-sqlite-traced",
    "hookgate-postgres",
    "hookgate-postgres-ingest-only",
    "hookgate-postgres-2",
)
DEFAULT_PEERS = PEERS
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

AMPECO_SECRET = "bench-ampeco-secret"
ZTLMENT_SECRET = "bench-ztlment-secret"
EASYPARK = ("easypark", "bench-easypark")
ZAPTEC = ("zaptec", "bench-zaptec")
TOKENS = 10_000
DUPLICATE_SHARE = 0.30
# Distinct requests prepared for wrk (warm-up + saturation) per second of wrk time. A
# storing peer faster than this replays old requests (reported as `wrapped`).
WRK_RATE_BUDGET = 15_000
UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log"]
CLK_TCK = os.sysconf("SC_CLK_TCK")
TIMES = "\u00d7"  # multiplication sign


# -- requests ------------------------------------------------------------------------------


@dataclass(slots=True)
class Req:
    """One pre-built request: raw HTTP/1.1 bytes and its identity in the store.

    `key` is (source, dedup key) as both hookgate and the baseline compute it; None for a
    Zaptec session start, which is a new event every time.
    """

    raw: bytes
    key: tuple[str, str] | None
    source: str


def _raw(port: int, path: str, headers: Sequence[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"{head}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def ampeco_stream(port: int, base: int) -> Iterator[Req]:
    """AMPECO as a charge-point operator sees it: whole charging sessions (start, meter
    values, session updates, stop, CDR; 90-1,900 byte bodies) with the occasional other
    notification type in between. Signed hex HMAC-SHA256 in X-Signature."""
    other = [n for n in NAMES if "Session" not in n and "session" not in n and n != "cdr.received"]
    stamp = "2025-12-04T12:00:00+00:00"
    for seq in itertools.count(base):
        bodies = session_sequence(
            session_id=seq,
            charge_point_id=10 + seq % 500,
            evse_id=1 + seq % 2,
            id_tag=f"04A1B2{seq % 0x1000000:06X}",
            seq=seq % 100_000,
        )
        bodies.append(sample(other[seq % len(other)], seq))
        for document in bodies:
            body = encode(document)
            signature = hmac.new(AMPECO_SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = [("X-Signature", signature), ("X-Timestamp", stamp), ("X-Tenant", "bench")]
            key = ("ampeco", hashlib.sha256(body).hexdigest())
            yield Req(_raw(port, "/hooks/ampeco", headers, body), key, "ampeco")


def easypark_stream(port: int, base: int) -> Iterator[Req]:
    """EasyPark Fleet parking transactions (HTTP Basic), one per parking id."""
    auth = [("Authorization", _basic(*EASYPARK))]
    for parking_id in itertools.count(3_000_000_000 + base):
        body = encode(transaction(parking_id))
        key = ("easypark", f"parking:{parking_id}")
        yield Req(_raw(port, "/hooks/easypark", auth, body), key, "easypark")


def ztlment_stream(port: int, base: int) -> Iterator[Req]:
    """ZTLment payment objects walking through their states; base64 HMAC-SHA512."""
    for index in itertools.count(base * len(PAYMENT_FLOW)):
        object_id, state = (
            1_000_000 + index // len(PAYMENT_FLOW),
            PAYMENT_FLOW[index % len(PAYMENT_FLOW)],
        )
        body = encode({"id": object_id, "type": "PAYMENT_OBJECT", "state": state})
        digest = hmac.new(ZTLMENT_SECRET.encode(), body, hashlib.sha512).digest()
        headers = [("X-Payload-Signature", base64.b64encode(digest).decode())]
        key = ("ztlment", f"PAYMENT_OBJECT:{object_id}:{state}")
        yield Req(_raw(port, "/hooks/ztlment", headers, body), key, "ztlment")


def token_uids() -> list[str]:
    return [f"RFID{i:08X}" for i in range(TOKENS)]


def zaptec_stream(port: int, base: int) -> Iterator[Req]:
    """Zaptec session starts (HTTP Basic) with tokens that exist: every start is approved."""
    rng = random.Random(base)
    uids = token_uids()
    auth = [("Authorization", _basic(*ZAPTEC))]
    while True:
        body = encode(
            {
                "ChargerId": str(uuid.UUID(int=rng.getrandbits(128))),
                "DeviceId": f"ZAP{rng.randint(100000, 999999)}",
                "InstallationId": str(uuid.UUID(int=rng.getrandbits(128))),
                "UserId": str(uuid.UUID(int=rng.getrandbits(128))),
                "TokenId": rng.choice(uids),
            }
        )
        yield Req(_raw(port, "/hooks/zaptec/session-start", auth, body), None, "zaptec")


def mix_stream(port: int, base: int) -> Iterator[Req]:
    """Half AMPECO, a quarter each EasyPark and ZTLment; 30 % of all requests are exact
    re-deliveries of one of the previous 2,000 requests (providers retry soon)."""
    rng = random.Random(base)
    streams = [ampeco_stream(port, base), easypark_stream(port, base), ztlment_stream(port, base)]
    recent: list[Req] = []
    while True:
        if recent and rng.random() < DUPLICATE_SHARE:
            req = rng.choice(recent)
        else:
            req = next(streams[rng.choices((0, 1, 2), (2, 1, 1))[0]])
        recent.append(req)
        if len(recent) > 2000:
            del recent[:1000]
        yield req


STREAMS: dict[str, Callable[[int, int], Iterator[Req]]] = {
    "ampeco": ampeco_stream,
    "easypark": easypark_stream,
    "ztlment": ztlment_stream,
    "mix": mix_stream,
    "zaptec": zaptec_stream,
}


Window = tuple[int, int]  # (first position, requests sent) in a Prepared sequence


@dataclass
class Prepared:
    """Requests in sending order."""

    requests: list[Req]

    def offsets(self, instances: int) -> list[int]:
        """Where each of `instances` wrk processes starts replaying: evenly apart."""
        return [k * len(self.requests) // instances for k in range(instances)]

    def new_in(self, windows: Sequence[Window], earlier: Sequence[Window]) -> int:
        """Distinct events sent in `windows` and in none of the `earlier` ones, positions
        replaying from 0 past the end (a replayed keyed request is a duplicate; a replayed
        Zaptec start is a new one)."""
        reqs, n = self.requests, len(self.requests)
        if reqs[0].key is None:
            return sum(count for _, count in windows)
        seen = {reqs[i % n].key for start, count in earlier for i in range(start, start + count)}
        sent = {reqs[i % n].key for start, count in windows for i in range(start, start + count)}
        return len(sent - seen)


def build(scenario: str, port: int, base: int, count: int) -> Prepared:
    return Prepared(list(itertools.islice(STREAMS[scenario](port, base), count)))


def write_side_file(path: Path, requests: Sequence[Req]) -> None:
    with path.open("wb") as out:
        for req in requests:
            out.write(b"%d\n" % len(req.raw))
            out.write(req.raw)


# -- peers ---------------------------------------------------------------------------------


class Skip(Exception):
    """The peer cannot run here; the reason goes into the results."""


class Peer:
    """A server under test: how to prepare its storage, start it and read what it stored.

    `instances` servers (one `ports` entry each) share the storage; the load is split
    evenly across them.
    """

    name = ""
    stores = True
    instances = 1
    postgres = False  # PostgreSQL's own CPU is measured too

    def __init__(self, work: Path, ports: Sequence[int]) -> None:
        self.work = work
        self.ports = list(ports[: self.instances])

    @property
    def port(self) -> int:
        return self.ports[0]

    def prepare(self, scenario: str) -> None:
        """Create fresh storage (and the charge tokens for Zaptec)."""

    def commands(self) -> list[tuple[list[str], dict[str, str]]]:
        raise NotImplementedError

    def count(self) -> int:
        """Stored events."""
        return 0

    def keys(self) -> set[tuple[str, str]]:
        """(source, dedup key) of every stored event."""
        return set()

    def processing(self) -> dict[str, Any]:
        """hookgate: stored events by processing status, and the commonest error."""
        return {}

    def cleanup(self) -> None:
        """Drop what prepare() created outside the temporary directory."""


def _sqlite_read(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _uvicorn(app: str) -> list[str]:
    return [
        PY,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(PEERS_DIR),
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
        "--no-server-header",
        *UVICORN_FLAGS,
    ]


class Ceiling(Peer):
    name = "ceiling"
    stores = False

    def commands(self) -> list[tuple[list[str], dict[str, str]]]:
        return [([*_uvicorn("ceiling:app"), "--port", str(self.port)], {})]


class Baseline(Peer):
    name = "baseline"

    @property
    def db(self) -> Path:
        return self.work / "baseline.db"

    def prepare(self, scenario: str) -> None:
        sys.path.insert(0, str(PEERS_DIR))
        try:
            from baseline.db import create_schema, make_engine, seed_tokens
        finally:
            sys.path.remove(str(PEERS_DIR))
        engine = make_engine(str(self.db))
        create_schema(engine)
        if scenario == "zaptec":
            seed_tokens(engine, token_uids())
        engine.dispose()

    def commands(self) -> list[tuple[list[str], dict[str, str]]]:
        env = {
            "BASELINE_DB": str(self.db),
            "BASELINE_AMPECO_SECRETS": AMPECO_SECRET,
            "BASELINE_ZTLMENT_SECRETS": ZTLMENT_SECRET,
            "BASELINE_EASYPARK_USER": EASYPARK[0],
            "BASELINE_EASYPARK_PASSWORD": EASYPARK[1],
            "BASELINE_ZAPTEC_USER": ZAPTEC[0],
            "BASELINE_ZAPTEC_PASSWORD": ZAPTEC[1],
        }
        return [([*_uvicorn("baseline.app:app"), "--port", str(self.port)], env)]

    def count(self) -> int:
        return int(_sqlite_read(self.db, "SELECT count(*) FROM events")[0][0])

    def keys(self) -> set[tuple[str, str]]:
        return {(s, k) for s, k in _sqlite_read(self.db, "SELECT source, dedup_key FROM events")}


class Hookgate(Peer):
    """hookgate as an operator runs it: a TOML file, `hookgate migrate`, `hookgate serve`
    (with its processing and delivery workers in the same process, the default)."""

    name = "hookgate-sqlite"
    in_process = True
    # Extra TOML appended to each instance's file (the traced peer's [tracing] table).
    extra_toml = ""

    def storage_url(self) -> str:
        return f"sqlite:///{self.work / 'hookgate.db'}"

    def config(self, instance: int = 0) -> Path:
        return self.work / f"hookgate-{instance}.toml"

    def prepare(self, scenario: str) -> None:
        for instance, port in enumerate(self.ports):
            # wrk's 64 connections to one source are more than the edge's per-source cap
            # admits at once (ingest_in_flight_max, 32): this measures the acknowledgement
            # path, so the cap is off here; bench/shedding.py measures the cap.
            self.config(instance).write_text(
                f'[server]\nhost = "127.0.0.1"\nport = {port}\ningest_in_flight_max = 0\n'
                f'[storage]\nurl = "{self.storage_url()}"\n'
                '[logging]\nlevel = "warning"\n'
                f"[processing]\nin_process = {str(self.in_process).lower()}\n"
                f'[[sources]]\nname = "ampeco"\nprovider = "ampeco"\n'
                f'secrets = ["{AMPECO_SECRET}"]\n'
                f'[[sources]]\nname = "easypark"\nprovider = "easypark"\nauth = "basic"\n'
                f'username = "{EASYPARK[0]}"\npassword = "{EASYPARK[1]}"\n'
                f'[[sources]]\nname = "ztlment"\nprovider = "ztlment"\n'
                f'secrets = ["{ZTLMENT_SECRET}"]\n'
                f'[[sources]]\nname = "zaptec"\nprovider = "zaptec"\nauth = "basic"\n'
                f'username = "{ZAPTEC[0]}"\npassword = "{ZAPTEC[1]}"\n' + self.extra_toml,
                encoding="utf-8",
            )
        subprocess.run(
            [PY, "-m", "hookgate", "migrate", "--config", str(self.config())],
            check=True,
            capture_output=True,
        )
        if scenario == "zaptec":
            asyncio.run(self._load_tokens())

    async def _load_tokens(self) -> None:
        from hookgate.authorization.service import to_entity
        from hookgate.config import StorageConfig
        from hookgate.domain.rules import Token
        from hookgate.store import make_store

        store = make_store(StorageConfig(url=self.storage_url()))
        await store.open()
        try:
            await store.auth_put([to_entity("token", Token(uid=uid)) for uid in token_uids()])
        finally:
            await store.close()

    def commands(self) -> list[tuple[list[str], dict[str, str]]]:
        return [
            ([PY, "-m", "hookgate", "serve", "--config", str(self.config(i))], {})
            for i in range(len(self.ports))
        ]

    def count(self) -> int:
        return int(_sqlite_read(self.work / "hookgate.db", "SELECT count(*) FROM inbox")[0][0])

    def keys(self) -> set[tuple[str, str]]:
        rows = _sqlite_read(self.work / "hookgate.db", "SELECT source, dedup_key FROM inbox")
        return {(s, k) for s, k in rows}

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return _sqlite_read(self.work / "hookgate.db", sql)

    def processing(self) -> dict[str, Any]:
        counts = {str(s): int(n) for s, n in self._rows(_STATUS_SQL)}
        errors = self._rows(_ERRORS_SQL)
        return {"by_status": counts, "errors": [[str(e), int(n)] for e, n in errors]}


class HookgateIngestOnly(Hookgate):
    """The same with `[processing] in_process = false`: what acknowledging alone costs."""

    name = "hookgate-sqlite-ingest-only"
    in_process = False


class _TraceSink:
    """An OTLP/HTTP collector that takes every export and keeps only the byte count: the
    traced peer pays for building, batching, encoding and sending its spans."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        sink = self
        self.received = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                sink.received += len(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class HookgateTraced(Hookgate):
    """hookgate-sqlite with `[tracing]` on, every trace kept, spans exported over OTLP/HTTP
    to a sink in the benchmark process (what tracing costs the gateway)."""

    name = "hookgate-sqlite-traced"

    def prepare(self, scenario: str) -> None:
        self.sink = _TraceSink()
        self.extra_toml = (
            f'[tracing]\nenabled = true\notlp_endpoint = "{self.sink.url}"\nsample_ratio = 1.0\n'
        )
        super().prepare(scenario)

    def processing(self) -> dict[str, Any]:
        result = super().processing()
        result["otlp_bytes"] = self.sink.received
        return result

    def cleanup(self) -> None:
        self.sink.close()


class HookgatePostgres(Hookgate):
    """hookgate on a local PostgreSQL: a fresh schema per run (created through --pg-url,
    used through `options=-csearch_path`), dropped afterwards."""

    name = "hookgate-postgres"
    postgres = True
    admin_url = ""

    def __init__(self, work: Path, ports: Sequence[int]) -> None:
        super().__init__(work, ports)
        self.schema = f"hg_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    def storage_url(self) -> str:
        joiner = "&" if "?" in self.admin_url else "?"
        return f"{self.admin_url}{joiner}options=-csearch_path%3D{self.schema}"

    def prepare(self, scenario: str) -> None:
        if not self.admin_url:
            raise Skip("no --pg-url given")
        host = urlsplit(self.admin_url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise Skip(f"--pg-url must point at 127.0.0.1, not {host}")
        self._admin(f"CREATE SCHEMA {self.schema}")
        super().prepare(scenario)

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.encode())

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.storage_url()) as conn:
            return list(conn.execute(sql.encode()).fetchall())

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self._query(sql)

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM inbox")[0][0])

    def keys(self) -> set[tuple[str, str]]:
        return {(s, k) for s, k in self._query("SELECT source, dedup_key FROM inbox")}

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self._admin(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


class HookgatePostgresIngestOnly(HookgatePostgres):
    """PostgreSQL with `[processing] in_process = false`: acknowledging alone."""

    name = "hookgate-postgres-ingest-only"
    in_process = False


class HookgatePostgres2(HookgatePostgres):
    """Two `hookgate serve` instances on the same schema, the load split across both."""

    name = "hookgate-postgres-2"
    instances = 2


_STATUS_SQL = "SELECT status, count(*) FROM inbox GROUP BY status ORDER BY status"
_ERRORS_SQL = (
    "SELECT substr(error, 1, 100), count(*) FROM inbox WHERE status = 'failed' "
    "GROUP BY 1 ORDER BY 2 DESC LIMIT 3"
)

PEER_TYPES: dict[str, type[Peer]] = {
    "ceiling": Ceiling,
    "baseline": Baseline,
    "hookgate-sqlite": Hookgate,
    "hookgate-sqlite-ingest-only": HookgateIngestOnly,
    "hookgate-sqlite-traced": HookgateTraced,
    "hookgate-postgres": HookgatePostgres,
    "hookgate-postgres-ingest-only": HookgatePostgresIngestOnly,
    "hookgate-postgres-2": HookgatePostgres2,
}
HOOKGATE_PEERS = tuple(name for name in PEER_TYPES if name.startswith("hookgate"))


# -- process and measurement helpers ---------------------------------------------------------


def cpu_seconds(pids: int | Sequence[int]) -> float:
    """utime + stime + cutime + cstime of processes (all their threads and waited
    children), summed."""
    total = 0
    for pid in [pids] if isinstance(pids, int) else pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


def postgres_cpu_seconds() -> float:
    """CPU of every `postgres` process on the machine (the postmaster's cutime covers the
    backends that exited meanwhile): PostgreSQL's share of the work, on the same cores."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            name = text[text.index("(") + 1 : text.rindex(")")]
            if name == "postgres" or name.startswith("postgres:"):
                total += sum(int(v) for v in text.rsplit(")", 1)[1].split()[11:15])
    return total / CLK_TCK


def peak_rss_mb(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_idle(pids: Sequence[int], limit: float = 60.0) -> float:
    """Wait until the servers burn < 5 % CPU for 0.4 s (queued writes and the processing
    of stored events are done)."""
    began = time.monotonic()
    quiet = 0
    last = cpu_seconds(pids)
    while time.monotonic() - began < limit:
        time.sleep(0.2)
        now = cpu_seconds(pids)
        quiet = quiet + 1 if now - last <= 0.01 * len(pids) else 0
        last = now
        if quiet >= 2:
            break
    return time.monotonic() - began


def settle(peer: Peer, limit: float = 60.0) -> int:
    """The stored-event count once it stops changing: a server can be idle on its CPU
    while a commit (PostgreSQL: a lock wait) still completes requests wrk gave up on."""
    began = time.monotonic()
    last, same = peer.count(), 0
    while same < 2 and time.monotonic() - began < limit:
        time.sleep(0.3)
        now = peer.count()
        same = same + 1 if now == last else 0
        last = now
    return last


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def run_wrk(
    ports: Sequence[int],
    side_file: Path,
    offsets: Sequence[int],
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """wrk -t1 at saturation, one wrk per port (connections split evenly, each replaying
    the side file from its own offset), all at once; their numbers summed (latency
    percentiles: the worst instance's), and the CPU the wrk processes used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [
        subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{max(1, connections // len(ports))}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(LUA),
                f"http://127.0.0.1:{port}",
                "--",
                str(side_file),
                str(offset),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port, offset in zip(ports, offsets, strict=True)
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode:
            raise RuntimeError(f"wrk exited with {proc.returncode}: {err[-500:]}")
        outs.append(out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    parts = [_parse_wrk(out) for out in outs]
    total: dict[str, Any] = {}
    for key in ("rps", "completed", "sent", "ok_2xx", "conflict_409", "other"):
        total[key] = sum(part[key] for part in parts)
    for key in ("p50_ms", "p90_ms", "p99_ms"):
        total[key] = max(part[key] for part in parts)
    total["socket_errors"] = {
        name: sum(part["socket_errors"].get(name, 0) for part in parts)
        for name in ("connect", "read", "write", "timeout")
    }
    if not any(total["socket_errors"].values()):
        total["socket_errors"] = {}
    total["wrk_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    total["sent_per_instance"] = [part["sent"] for part in parts]
    return total


def _parse_wrk(out: str) -> dict[str, Any]:

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else math.nan

    replay = re.search(r"REPLAY sent=(\d+) ok=(\d+) conflict=(\d+) other=(\d+)", out)
    if replay is None:
        raise RuntimeError(f"wrk printed no REPLAY line:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    completed = re.search(r"(\d+) requests in ([\d.]+)(\w+),", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    sent, ok, conflict, other = (int(v) for v in replay.groups())
    return {
        "rps": float(rps.group(1)) if rps else math.nan,
        "completed": int(completed.group(1)) if completed else ok + conflict + other,
        "sent": sent,
        "ok_2xx": ok,
        "conflict_409": conflict,
        "other": other,
        "p50_ms": pct("50"),
        "p90_ms": pct("90"),
        "p99_ms": pct("99"),
        "socket_errors": dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
        if errors
        else {},
    }


def log_problems(path: Path) -> list[str]:
    """Lines of the server's output that report errors (first few)."""
    if not path.exists():
        return []
    bad = re.compile(r"error|traceback|exception|critical", re.IGNORECASE)
    lines = [line for line in path.read_text(errors="replace").splitlines() if bad.search(line)]
    return lines[:20] + ([f"... {len(lines) - 20} more"] if len(lines) > 20 else [])


# -- correctness ---------------------------------------------------------------------------


def _acked(status: int, req: Req) -> bool:
    """An acknowledgement the provider counts as delivered: 2xx, or EasyPark's 409."""
    return 200 <= status < 300 or (status == 409 and req.source == "easypark")


def check_wrk(
    seq: Prepared,
    windows: Sequence[Window],
    earlier: Sequence[Window],
    wrk: dict[str, Any],
    rows: int,
    stores: bool,
) -> dict[str, Any]:
    """Bounds for wrk windows (one per instance), where the answer of each single request
    is unknown: new events acknowledged <= rows added <= new events sent."""
    sent = wrk["sent"]
    new = seq.new_in(windows, earlier)
    acked = wrk["ok_2xx"] + wrk["conflict_409"]
    lower = new - (sent - acked)
    share = len(seq.requests) // len(windows)
    offsets = seq.offsets(len(windows))
    result = {
        "sent": sent,
        "acked": acked,
        "new_events_sent": new,
        "rows_added": rows,
        "wrapped": any(
            start + count > offset + share
            for (start, count), offset in zip(windows, offsets, strict=True)
        ),
    }
    if stores:
        result["lost_at_least"] = max(0, lower - rows)
        result["phantom_rows"] = max(0, rows - new)
        result["ok"] = lower <= rows <= new and wrk["other"] == 0
    return result


def check_open(
    seq: Prepared, statuses: list[int], rows: int, stored: set[tuple[str, str]], stores: bool
) -> dict[str, Any]:
    """Exact per-event check: every acknowledged event is stored, once; nothing else."""
    reqs = seq.requests[: len(statuses)]
    acked_new: set[tuple[str, str]] = set()
    acked_starts = 0
    sent_keys: set[tuple[str, str]] = set()
    refused: set[tuple[str, str]] = set()
    easypark_new: dict[tuple[str, str], int] = {}
    bad_status: dict[str, int] = {}
    for req, status in zip(reqs, statuses, strict=True):
        if status not in (UNFINISHED, FAILED) and not _acked(status, req):
            bad_status[str(status)] = bad_status.get(str(status), 0) + 1
        if req.key is None:
            acked_starts += _acked(status, req)
            continue
        sent_keys.add(req.key)
        if _acked(status, req):
            acked_new.add(req.key)
        elif status not in (UNFINISHED, FAILED):
            refused.add(req.key)
        if req.source == "easypark" and 200 <= status < 300:
            easypark_new[req.key] = easypark_new.get(req.key, 0) + 1
    unanswered = sum(1 for s in statuses if s in (UNFINISHED, FAILED))
    result: dict[str, Any] = {
        "requests": len(statuses),
        "unanswered": unanswered,
        "non_ack_statuses": bad_status,
        "rows_added": rows,
    }
    if not stores:
        return result
    if seq.requests[0].key is None:  # Zaptec starts: counts only
        result["acked_new"] = acked_starts
        result["lost_at_least"] = max(0, acked_starts - rows)
        result["phantom_rows"] = max(0, rows - acked_starts - unanswered)
        result["ok"] = acked_starts <= rows <= acked_starts + unanswered and not bad_status
        return result
    lost = acked_new - stored
    phase_stored = sent_keys & stored
    result.update(
        {
            "acked_new": len(acked_new),
            "stored_events": len(phase_stored),
            "lost": len(lost),
            "lost_examples": sorted(f"{s}:{k}" for s, k in lost)[:5],
            "stored_unacked": len(phase_stored - acked_new),
            "stored_despite_refusal": len((phase_stored - acked_new) & refused),
            "rows_match_stored_events": rows == len(phase_stored),
            "easypark_double_200": sum(1 for n in easypark_new.values() if n > 1),
        }
    )
    result["ok"] = (
        not lost
        and not bad_status
        and rows == len(phase_stored)
        and result["stored_despite_refusal"] == 0
        and result["easypark_double_200"] == 0
        and len(phase_stored - acked_new) <= unanswered
    )
    return result


# -- one run -------------------------------------------------------------------------------


@dataclass
class Plan:
    seconds: float
    warmup: float
    wrk_warmup: float
    rates: list[int]
    connections: int


def run_peer(
    peer: Peer,
    scenario: str,
    plan: Plan,
    wrk_seq: Prepared,
    side: Path,
    rate_seqs: dict[int, Prepared],
) -> dict[str, Any]:
    peer.prepare(scenario)
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for instance, (cmd, env) in enumerate(peer.commands()):
        log = peer.work / f"server-{instance}.log"
        logs.append(log)
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=peer.work,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    pids = [proc.pid for proc in procs]
    result: dict[str, Any] = {"peer": peer.name, "scenario": scenario, "instances": len(procs)}

    def db_cpu() -> float:
        return postgres_cpu_seconds() if peer.postgres else 0.0

    try:
        for port, proc in zip(peer.ports, procs, strict=True):
            wait_port(port, proc)
        started = cpu_seconds(pids)
        offsets = wrk_seq.offsets(len(procs))
        warm = run_wrk(peer.ports, side, offsets, plan.wrk_warmup, plan.connections)
        warm_windows = list(zip(offsets, warm["sent_per_instance"], strict=True))
        wait_idle(pids)
        rows0 = settle(peer)
        cpu0, db0 = cpu_seconds(pids), db_cpu()
        sat_offsets = [o + n for o, n in warm_windows]
        sat = run_wrk(peer.ports, side, sat_offsets, plan.seconds, plan.connections)
        cpu1, db1 = cpu_seconds(pids), db_cpu()
        sat["drain_s"] = wait_idle(pids)
        cpu2, db2 = cpu_seconds(pids), db_cpu()
        rows1 = settle(peer)
        acked = sat["ok_2xx"] + sat["conflict_409"]
        per_1k = 1e6 / acked if acked else math.nan
        sat["server_cpu_s"] = cpu1 - cpu0
        sat["cpu_ms_per_1k"] = (cpu1 - cpu0) * per_1k
        # Until idle again: the processing of the stored events finishes after wrk stops.
        sat["cpu_ms_per_1k_with_drain"] = (cpu2 - cpu0) * per_1k
        if peer.postgres:
            sat["postgres_cpu_s"] = db2 - db0
            sat["postgres_cpu_ms_per_1k"] = (db1 - db0) * per_1k
            sat["postgres_cpu_ms_per_1k_with_drain"] = (db2 - db0) * per_1k
        result["startup_cpu_s"] = started
        result["saturation"] = sat
        sat_windows = list(zip(sat_offsets, sat["sent_per_instance"], strict=True))
        result["checks"] = {
            "warmup": check_wrk(wrk_seq, warm_windows, [], warm, rows0, peer.stores),
            "saturation": check_wrk(
                wrk_seq, sat_windows, warm_windows, sat, rows1 - rows0, peer.stores
            ),
        }
        rows = rows1
        result["rates"] = {}
        statuses: dict[int, list[int]] = {}
        for rate in plan.rates:
            cpu_before, db_before = cpu_seconds(pids), db_cpu()
            run = run_open(
                peer.ports if len(peer.ports) > 1 else peer.port,
                [r.raw for r in rate_seqs[rate].requests],
                rate,
                plan.seconds,
                plan.warmup,
            )
            summary = run.summary()
            summary["drain_s"] = wait_idle(pids)
            summary["server_cpu_s"] = cpu_seconds(pids) - cpu_before
            answered = sum(1 for st in run.statuses if st > 0)
            summary["cpu_ms_per_1k"] = (
                summary["server_cpu_s"] * 1e6 / answered if answered else math.nan
            )
            if peer.postgres:
                summary["postgres_cpu_s"] = db_cpu() - db_before
            now = settle(peer)
            summary["rows_added"] = now - rows
            rows = now
            result["rates"][str(rate)] = summary
            statuses[rate] = run.statuses
            del run
        result["peak_rss_mb"] = peak_rss_mb(pids)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes: list[int | str] = []
        for proc in procs:
            try:
                codes.append(proc.wait(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                codes.append("killed after 60 s")
        result["exit_code"] = codes[0] if len(codes) == 1 else codes
    stored = peer.keys() if peer.stores else set()
    result["rows_total"] = peer.count() if peer.stores else 0
    result["processing"] = peer.processing()
    for rate in plan.rates:
        if str(rate) in result.get("rates", {}):
            result["checks"][f"rate_{rate}"] = check_open(
                rate_seqs[rate],
                statuses[rate],
                result["rates"][str(rate)]["rows_added"],
                stored,
                peer.stores,
            )
    result["server_log_problems"] = [line for log in logs for line in log_problems(log)]
    return result


# -- report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {}
    for module in (
        "uvicorn",
        "uvloop",
        "httptools",
        "starlette",
        "fastapi",
        "pydantic",
        "sqlalchemy",
        "psycopg",
    ):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[module] = version(module)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    wrk = wrk.split("\n")[0]
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version(),
        "wrk": wrk.strip(),
        "packages": versions,
        "commit": git_commit(),
    }


def postgres_version() -> str | None:
    url = HookgatePostgres.admin_url
    if not url:
        return None
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute(b"SHOW server_version").fetchone()
    except Exception as exc:
        return f"unreachable: {type(exc).__name__}"
    return str(row[0]) if row else None


def git_commit() -> str | None:
    """HEAD's commit, read from .git files (no git command)."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: HEAD in its own git dir, refs in the common one
            git = Path(git.read_text().split("gitdir:", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / "commondir").exists():
            git = (git / (git / "commondir").read_text().strip()).resolve()
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        packed = git / "packed-refs"
        if packed.exists():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    except OSError:
        return None
    return None


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "∞"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or any(math.isnan(v) or math.isinf(v) for v in (a, b)):
        return "-"
    value = a / b
    if value < 0.01:
        return f"<0.01{TIMES}"
    return f"{value:.2f}{TIMES}" if value < 100 else f"{value:.0f}{TIMES}"


def _cpu_total(sat: dict[str, Any]) -> float:
    """Server CPU per 1,000 acknowledged events until idle again, PostgreSQL's included."""
    own = float(sat.get("cpu_ms_per_1k_with_drain", sat["cpu_ms_per_1k"]))
    return own + float(sat.get("postgres_cpu_ms_per_1k_with_drain", 0.0))


def _cpu(sat: dict[str, Any]) -> str:
    own = float(sat.get("cpu_ms_per_1k_with_drain", sat["cpu_ms_per_1k"]))
    if "postgres_cpu_ms_per_1k_with_drain" in sat:
        return f"{own:.0f} + {sat['postgres_cpu_ms_per_1k_with_drain']:.0f}"
    return f"{own:.0f}"


def summary_tables(report: dict[str, Any]) -> list[str]:
    """Scenario x peer overviews: throughput with the two ratios, p99 per rate, CPU."""
    scenarios = report["scenarios"]
    peers: list[str] = []
    for runs in scenarios.values():
        peers += [run["peer"] for run in runs if run["peer"] not in peers]
    rates = report["plan"]["rates"]
    head = "| scenario | " + " | ".join(peers) + " |"
    rule = "|---|" + "---:|" * len(peers)
    sat = [
        "#### Throughput at saturation, req/s (hookgate: ÷ ceiling, ÷ baseline)",
        "",
        head,
        rule,
    ]
    p99 = [
        f"#### p99 acknowledgement latency in ms at {' / '.join(str(r) for r in rates)} req/s",
        "",
        head,
        rule,
    ]
    cpu = ["#### Server CPU ms per 1,000 events (+ PostgreSQL's)", "", head, rule]
    for scenario, runs in scenarios.items():
        by_peer = {run["peer"]: run for run in runs if "saturation" in run}
        sat_row, p99_row, cpu_row = [scenario], [scenario], [scenario]
        for peer in peers:
            run = by_peer.get(peer)
            if run is None:
                sat_row.append("-")
                p99_row.append("-")
                cpu_row.append("-")
                continue
            rps = run["saturation"]["rps"]
            cell = f"{rps:.0f}"
            if peer.startswith("hookgate"):
                ratios = [
                    _ratio(rps, by_peer[other]["saturation"]["rps"])
                    for other in ("ceiling", "baseline")
                    if other in by_peer
                ]
                if ratios:
                    cell += f" ({', '.join(ratios)})"
            sat_row.append(cell)
            p99_row.append(
                " / ".join(_ms(run["rates"].get(str(r), {}).get("p99_ms")) for r in rates)
            )
            cpu_row.append(_cpu(run["saturation"]))
        sat.append("| " + " | ".join(sat_row) + " |")
        p99.append("| " + " | ".join(p99_row) + " |")
        cpu.append("| " + " | ".join(cpu_row) + " |")
    return [*sat, "", *p99, "", *cpu, ""]


GOAL_RATE = 1000  # the latency goal: p99 under 10 ms at this rate


def goals_table(report: dict[str, Any]) -> list[str]:
    """The issue's goals per hookgate peer, over every scenario of the run."""
    scenarios = report["scenarios"]
    rows = [
        "#### Goals (this machine; goals for the code, not assertions in tests)",
        "",
        f"| peer | ≥ 0.40{TIMES} ceiling | ≥ 3{TIMES} baseline | p99 < 10 ms at "
        f"{GOAL_RATE}/s | acknowledged events lost |",
        "|---|---|---|---|---:|",
    ]
    for hook in HOOKGATE_PEERS:
        vs_ceiling: list[float] = []
        vs_baseline: list[float] = []
        p99: list[float] = []
        lost = 0
        seen = False
        for runs in scenarios.values():
            by_peer = {run["peer"]: run for run in runs if "saturation" in run}
            run = by_peer.get(hook)
            if run is None:
                continue
            seen = True
            rps = run["saturation"]["rps"]
            for other, into in (("ceiling", vs_ceiling), ("baseline", vs_baseline)):
                if other in by_peer and by_peer[other]["saturation"]["rps"]:
                    into.append(rps / by_peer[other]["saturation"]["rps"])
            at = run["rates"].get(str(GOAL_RATE), {}).get("p99_ms")
            if str(GOAL_RATE) in run["rates"]:
                p99.append(math.inf if at is None else float(at))
            for check in run.get("checks", {}).values():
                lost += int(check.get("lost", 0) or 0) + int(check.get("lost_at_least", 0) or 0)
        if not seen:
            continue

        def verdict(values: list[float], ok: Callable[[float], bool], fmt: str) -> str:
            if not values:
                return "not measured"
            met = sum(ok(v) for v in values)
            span = f"{fmt.format(min(values))} to {fmt.format(max(values))}"
            return f"{'met' if met == len(values) else f'{met} of {len(values)}'} ({span})"

        rows.append(
            f"| {hook} | {verdict(vs_ceiling, lambda v: v >= 0.40, '{:.2f}' + TIMES)} "
            f"| {verdict(vs_baseline, lambda v: v >= 3, '{:.1f}' + TIMES)} "
            f"| {verdict(p99, lambda v: v < 10, '{:.1f} ms')} | {lost} |"
        )
    return [*rows, ""]


def markdown(report: dict[str, Any]) -> str:
    rates = report["plan"]["rates"]
    box, plan = report["machine"], report["plan"]
    lines = [
        f"Ingest benchmark, {report['finished_at']}: {box['nproc']} cores ({box['cpu']}), "
        f"Python {box['python']}, commit {str(box['commit'])[:12]}. "
        f"wrk -t1 -c{plan['connections']} {plan['seconds']:g} s at saturation; open model "
        f"{plan['seconds']:g} s per rate after {plan['warmup']:g} s warm-up. Latencies in ms "
        "(acknowledgement, from each request's due time).",
        "",
    ]
    lines += goals_table(report)
    lines += summary_tables(report)
    for scenario, runs in report["scenarios"].items():
        lines.append(f"### {scenario}")
        lines.append("")
        header = "| peer | sat. req/s |"
        rule = "|---|---:|"
        for rate in rates:
            header += f" p50 / p99 / p99.9 @{rate}/s |"
            rule += "---:|"
        header += " CPU ms per 1k (+ PostgreSQL) |"
        rule += "---:|"
        lines += [header, rule]
        by_peer = {run["peer"]: run for run in runs}
        for run in runs:
            if "skipped" in run:
                lines.append(f"| {run['peer']} | skipped: {run['skipped']} |")
                continue
            if "error" in run:
                lines.append(f"| {run['peer']} | failed: {run['error']} |")
                continue
            row = f"| {run['peer']} | {run['saturation']['rps']:.0f} |"
            for rate in rates:
                r = run["rates"].get(str(rate), {})
                row += (
                    f" {_ms(r.get('p50_ms'))} / {_ms(r.get('p99_ms'))} / {_ms(r.get('p999_ms'))} |"
                )
            row += f" {_cpu(run['saturation'])} |"
            lines.append(row)
        for hook in HOOKGATE_PEERS:
            if "saturation" not in by_peer.get(hook, {}):
                continue
            for other in ("ceiling", "baseline"):
                if "saturation" not in by_peer.get(other, {}):
                    continue
                a, b = by_peer[hook], by_peer[other]
                sat_a, sat_b = a["saturation"], b["saturation"]
                row = f"| *{hook} ÷ {other}* | {_ratio(sat_a['rps'], sat_b['rps'])} |"
                for rate in rates:
                    ra, rb = a["rates"].get(str(rate), {}), b["rates"].get(str(rate), {})
                    cells = [_ratio(ra.get(k), rb.get(k)) for k in ("p50_ms", "p99_ms", "p999_ms")]
                    row += f" {' / '.join(cells)} |"
                row += f" {_ratio(_cpu_total(sat_a), _cpu_total(sat_b))} |"
                lines.append(row)
        lines.append("")
        notes = []
        for run in runs:
            if "checks" not in run:
                continue
            problems = [name for name, c in run["checks"].items() if c.get("ok") is False]
            overloaded = [
                rate for rate in rates if run["rates"].get(str(rate), {}).get("unfinished_measured")
            ]
            sat = run["saturation"]
            errors = sum(sat["socket_errors"].values()) if sat["socket_errors"] else 0
            stored = f"{run['rows_total']} rows, " if run["peer"] != "ceiling" else ""
            text = f"{run['peer']}: {stored}"
            text += "checks OK" if not problems else f"**CHECK FAILED: {', '.join(problems)}**"
            if sat["other"]:
                text += f", {sat['other']} non-2xx at saturation"
            if sat["conflict_409"]:
                text += f", {sat['conflict_409']} EasyPark duplicates answered 409 at saturation"
            if errors:
                text += f", wrk socket errors {sat['socket_errors']}"
            for rate in rates:
                summary = run["rates"].get(str(rate), {})
                refused = run["checks"].get(f"rate_{rate}", {}).get("non_ack_statuses")
                if refused:
                    text += f", answers {refused} at {rate}/s"
                if summary.get("errors"):
                    text += f", connection errors {summary['errors']} at {rate}/s"
            if overloaded:
                rates_text = ", ".join(f"{r}/s" for r in overloaded)
                text += f"; cannot sustain {rates_text} (∞: no answer within 5 s)"
            failed = run.get("processing", {}).get("by_status", {}).get("failed")
            if failed:
                errors = run["processing"].get("errors") or [["?", failed]]
                text += f"; **processing failed for {failed} events** (e.g. {errors[0][0]!r})"
            if run["checks"]["saturation"].get("wrapped") and run["peer"] != "ceiling":
                text += "; wrk replayed requests (more than prepared)"
            notes.append(text)
        if notes:
            lines.append("Checks: " + "; ".join(notes) + ".")
            lines.append("")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10, help="per measured run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--peers", default=",".join(DEFAULT_PEERS))
    parser.add_argument("--rates", default="500,1000,2000")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-ups (smoke run)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("HOOKGATE_BENCH_PG_URL", PG_URL),
        help="a database of the local PostgreSQL; each run gets a fresh schema in it",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="only rewrite ingest.md (in --out) from an ingest.json; measure nothing",
    )
    args = parser.parse_args()
    if args.render is not None:
        text = markdown(json.loads(args.render.read_text()))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ingest.md").write_text(text + "\n")
        print(text)
        return
    scenarios = [s for s in args.scenarios.split(",") if s]
    peers = [p for p in args.peers.split(",") if p]
    for name in scenarios:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    for name in peers:
        if name not in PEERS:
            parser.error(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    seconds = 3.0 if args.quick else args.seconds
    plan = Plan(
        seconds=seconds,
        warmup=1.0 if args.quick else 2.0,
        wrk_warmup=1.0 if args.quick else 2.0,
        rates=[int(r) for r in args.rates.split(",") if r],
        connections=args.connections,
    )
    HookgatePostgres.admin_url = args.pg_url
    port = free_port()
    ports = [port, free_port()]
    while ports[1] == port:
        ports[1] = free_port()
    began = time.monotonic()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "plan": {
            "seconds": plan.seconds,
            "warmup": plan.warmup,
            "wrk_warmup": plan.wrk_warmup,
            "rates": plan.rates,
            "connections": plan.connections,
            "wrk": f"wrk -t1 -c{plan.connections} -d{plan.seconds:g}s --latency",
            "open_model": "bench/loadgen.py: max 128 connections, 5 s grace",
            "duplicate_share_in_mix": DUPLICATE_SHARE,
            "tokens": TOKENS,
        },
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="hookgate-bench-") as tmp:
        root = Path(tmp)
        for scenario in scenarios:
            t = time.monotonic()
            wrk_count = int(WRK_RATE_BUDGET * (plan.seconds + plan.wrk_warmup))
            wrk_seq = build(scenario, port, 0, wrk_count)
            side = root / f"{scenario}.requests"
            write_side_file(side, wrk_seq.requests)
            rate_seqs = {
                rate: build(
                    scenario, port, 10_000_000 * (k + 1), int(rate * (plan.warmup + plan.seconds))
                )
                for k, rate in enumerate(plan.rates)
            }
            gc.collect()
            gc.freeze()
            print(
                f"[{scenario}] {wrk_count} + {sum(len(s.requests) for s in rate_seqs.values())} "
                f"requests prepared in {time.monotonic() - t:.1f} s "
                f"({side.stat().st_size / 1e6:.0f} MB side file)",
                flush=True,
            )
            runs = []
            for name in peers:
                work = root / f"{scenario}-{name}"
                work.mkdir()
                peer = PEER_TYPES[name](work, ports)
                t = time.monotonic()
                try:
                    run = run_peer(peer, scenario, plan, wrk_seq, side, rate_seqs)
                except Skip as exc:
                    run = {"peer": name, "scenario": scenario, "skipped": str(exc)}
                except Exception as exc:
                    run = {
                        "peer": name,
                        "scenario": scenario,
                        "error": f"{type(exc).__name__}: {exc}",
                    }
                    logs = sorted(work.glob("server-*.log"))
                    problems = [line for log in logs for line in log_problems(log)]
                    run["server_log_problems"] = problems
                finally:
                    peer.cleanup()
                    shutil.rmtree(work, ignore_errors=True)
                runs.append(run)
                print(
                    f"[{scenario}] {name}: {one_line(run, plan)} ({time.monotonic() - t:.0f} s)",
                    flush=True,
                )
                for check, outcome in run.get("checks", {}).items():
                    if outcome.get("ok") is False:
                        print(
                            f"  !!! MISMATCH {scenario}/{name}/{check}: {outcome}", file=sys.stderr
                        )
                for line in run.get("server_log_problems", [])[:5]:
                    print(f"  server log: {line[:300]}", file=sys.stderr)
            report["scenarios"][scenario] = runs
            write_report(report, args.out, partial=True)
            side.unlink()
            gc.unfreeze()
            del wrk_seq, rate_seqs
            gc.collect()
    report["wall_seconds"] = round(time.monotonic() - began, 1)
    print(write_report(report, args.out, partial=False))


def write_report(report: dict[str, Any], out: Path, *, partial: bool) -> str:
    """ingest.json and ingest.md; after each scenario too, so a cut-off run keeps those."""
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    report["partial"] = partial
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    text = markdown(report)
    (out / "ingest.md").write_text(text + "\n")
    return text


def one_line(run: dict[str, Any], plan: Plan) -> str:
    if "skipped" in run:
        return f"skipped ({run['skipped']})"
    if "error" in run:
        return f"FAILED ({run['error']})"
    sat = run["saturation"]
    parts = [f"{sat['rps']:.0f} req/s, {sat['cpu_ms_per_1k']:.0f} CPU ms/1k"]
    for rate in plan.rates:
        r = run["rates"].get(str(rate))
        if r:
            parts.append(
                f"@{rate}: p50 {_ms(r['p50_ms'])} p99 {_ms(r['p99_ms'])} p99.9 {_ms(r['p999_ms'])}"
            )
    bad = [name for name, c in run.get("checks", {}).items() if c.get("ok") is False]
    parts.append("checks OK" if not bad else f"CHECKS FAILED {bad}")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
