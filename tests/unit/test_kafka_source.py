"""The Kafka source against librdkafka's mock cluster: real protocol, real sockets, a real
SQLite inbox. Each test has its own topic and consumer group."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hookgate.authorization.service import AuthorizationService
from hookgate.config import AmpecoSource, Config, ConfigError, parse_config
from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.errors import StoreError
from hookgate.domain.events import InboundEvent, IngestResult
from hookgate.ingress.asgi import Ingress
from hookgate.ingress.pipeline import Pipeline
from hookgate.metrics import Metrics
from hookgate.oauth import TokenIssuer
from hookgate.providers import build_providers
from hookgate.providers.ampeco import Ampeco
from hookgate.providers.base import Call
from hookgate.sources.kafka import (
    KafkaSource,
    consumer_settings,
    start_kafka_sources,
    stop_kafka_sources,
)
from hookgate.store.sqlite import SqliteStore
from support.kafka import (
    CODECS,
    MockCluster,
    ampeco_body,
    ampeco_fixture,
    signature,
)
from support.polling import until_async

SECRET = "ampeco-api-token"
# The next-generation group protocol (KIP-848) assigns at once. With the classic protocol
# (the default, used by the wiring test) the mock cluster waits out an initial rebalance
# delay, and a departed member's session timeout before the next member of the group joins.
FAST = {"group.protocol": "consumer"}
_names = itertools.count()


class FlakyStore(SqliteStore):
    """A real SQLite store whose writes can be made to fail, as a full disk would."""

    def __init__(self, path: str) -> None:
        super().__init__(path, auto_migrate=True)
        self.calls = 0
        self.failing = False
        self.fail_calls: set[int] = set()
        self.crash_calls: set[int] = set()
        self.delay = 0.0
        self.entered = asyncio.Event()

    async def ingest(
        self, event: InboundEvent, consumption: ConsumptionReport | None = None
    ) -> IngestResult:
        self.calls += 1
        self.entered.set()
        if self.failing or self.calls in self.fail_calls:
            raise StoreError("disk I/O error")
        if self.calls in self.crash_calls:
            raise RuntimeError("a defect, not the message's fault")
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().ingest(event, consumption)


@dataclass
class Rig:
    """A store, the pipeline around it, and a way to start consumers of one topic."""

    cluster: MockCluster
    db: Path
    topic: str
    store: SqliteStore
    config: Config
    pipeline: Pipeline
    metrics: Metrics
    wakes: list[int] = field(default_factory=list)
    running: list[KafkaSource] = field(default_factory=list)

    @property
    def source(self) -> AmpecoSource:
        found = self.config.sources[0]
        assert isinstance(found, AmpecoSource)
        return found

    async def consumer(self, **options: Any) -> KafkaSource:
        providers = build_providers(TokenIssuer(b"k" * 32))
        options.setdefault("poll_seconds", 0.05)
        options.setdefault("lag_interval_seconds", 0.1)
        options.setdefault("backoff_initial_seconds", 0.05)
        options.setdefault("backoff_max_seconds", 0.2)
        kafka = KafkaSource(
            self.source,
            providers["ampeco"],
            self.pipeline,
            self.metrics,
            overrides=FAST,
            **options,
        )
        await kafka.start()
        self.running.append(kafka)
        return kafka

    async def stop(self, kafka: KafkaSource) -> None:
        await kafka.stop()
        self.running.remove(kafka)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def events(self) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT event_type, body_sha256, flags, headers, status FROM inbox "
            "WHERE source = ? ORDER BY received_at",
            self.source.name,
        )

    def rejections(self) -> list[tuple[Any, ...]]:
        return self.rows(
            "SELECT method, path, status, reason FROM rejections WHERE source = ? "
            "ORDER BY received_at",
            self.source.name,
        )

    def counted(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "hookgate_kafka_messages_total", {"source": self.source.name, "outcome": outcome}
        )
        return value or 0.0

    def lag(self, partition: int = 0) -> float | None:
        return self.metrics.registry.get_sample_value(
            "hookgate_kafka_consumer_lag",
            {"source": self.source.name, "topic": self.topic, "partition": str(partition)},
        )

    def committed(self, partitions: int = 1) -> list[int]:
        return self.cluster.committed(self.source.consumer_group(), self.topic, partitions)

    def produce(self, body: bytes, **options: Any) -> None:
        self.cluster.produce_ampeco(self.topic, body, **options)


def config_for(
    db: Path, cluster: MockCluster, topic: str, name: str = "ampeco", **source: Any
) -> Config:
    entry: dict[str, Any] = {
        "name": name,
        "provider": "ampeco",
        "transport": "kafka",
        "brokers": cluster.bootstrap,
        "topic": topic,
        "group_id": f"group-{topic}",
        "secrets": [SECRET],
    }
    entry.update(source)
    return parse_config(
        {"storage": {"url": f"sqlite:///{db}"}, "sources": [entry]},
        env={},
    )


@pytest.fixture
async def make_rig(
    tmp_path: Path, kafka_cluster: MockCluster
) -> AsyncIterator[Callable[..., Awaitable[Rig]]]:
    opened: list[tuple[Rig, AuthorizationService]] = []

    async def make(*, partitions: int = 1, store: SqliteStore | None = None, **source: Any) -> Rig:
        topic = kafka_cluster.create_topic(f"ampeco-{next(_names)}", partitions)
        db = tmp_path / "hookgate.db"
        store = store or SqliteStore(str(db), auto_migrate=True)
        await store.open()
        config = config_for(db, kafka_cluster, topic, **source)
        decider = AuthorizationService(store, config.authorization)
        await decider.start(follow=False)
        metrics = Metrics()
        wakes: list[int] = []
        pipeline = Pipeline(config, store, decider, metrics, lambda: wakes.append(1))
        rig = Rig(kafka_cluster, db, topic, store, config, pipeline, metrics, wakes)
        opened.append((rig, decider))
        return rig

    yield make
    for rig, decider in opened:
        await stop_kafka_sources(list(rig.running))
        await decider.stop()
        await rig.store.close()


# -- accepted messages -------------------------------------------------------------------


async def test_signed_and_unsigned_messages_are_stored_and_committed(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig(require_signature=False)
    bodies = [ampeco_body("session.start.stop.notification", seq) for seq in range(4)]
    rig.produce(bodies[0], secret=SECRET)
    rig.produce(bodies[1], secret=SECRET, encoding="base64")
    rig.produce(bodies[2], secret=SECRET, encoding="prefixed")
    rig.produce(bodies[3])  # unsigned, allowed here: the broker vouches for the producer
    await rig.consumer()

    await until_async(lambda: rig.committed() == [4], "offsets committed")
    events = rig.events()
    assert [e[1] for e in events] == [hashlib.sha256(b).hexdigest() for b in bodies]
    assert {e[0] for e in events} == {"session.start.stop.notification"}
    headers = json.loads(events[0][3])
    assert headers["x-tenant"] == "tenant-1"
    assert headers["x-signature"].endswith("...")  # masked like a webhook's
    assert rig.counted("accepted") == 4
    assert rig.rejections() == []
    assert len(rig.wakes) == 4  # the processing worker is woken per new event


async def test_captured_fixtures_pass_through_unchanged(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    names = ["SessionStartStopNotification", "cdr.received", "BootNotification"]
    for name in names:
        rig.produce(ampeco_fixture(name), secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [3], "offsets committed")
    stored = rig.rows("SELECT event_type, raw_body FROM inbox ORDER BY received_at")
    assert [(t, bytes(b)) for t, b in stored] == [(n, ampeco_fixture(n)) for n in names]


async def test_unknown_notification_type_is_stored_and_flagged(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    rig.produce(b'{"notification":"futureThing.changed","id":7}', secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [1], "offset committed")
    [(event_type, _, flags, _, status)] = rig.events()
    assert event_type == "futureThing.changed"
    assert json.loads(flags) == ["unknown_type"]
    assert status == "received"


async def test_session_stop_is_accounted_like_a_webhook(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    stop = next(
        b
        for b in (ampeco_body("session.start.stop.notification", s) for s in range(8))
        if json.loads(b)["action"] == "stop"
    )
    rig.produce(stop, secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [1], "offset committed")
    doc = json.loads(stop)
    [(session_key, kwh, token)] = rig.rows("SELECT session_key, kwh, token FROM consumption")
    assert session_key == f"session:{doc['sessionId']}"
    assert token == doc["idTag"].strip().upper()  # normalised as the webhook path does
    assert float(kwh) > 0


@pytest.mark.parametrize("codec", CODECS)
async def test_compressed_batches_are_read(
    make_rig: Callable[..., Awaitable[Rig]], codec: str
) -> None:
    rig = await make_rig(require_signature=False)
    bodies = [ampeco_body("SessionUpdateNotification", seq) for seq in range(5)]
    rig.cluster.produce_many(rig.topic, bodies, compression=codec)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [5], "offsets committed")
    assert len(rig.events()) == 5


# -- refused messages --------------------------------------------------------------------


async def test_refused_messages_are_recorded_and_do_not_block_the_partition(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig(on_invalid="reject")
    good = ampeco_body("BootNotification", 1)
    rig.cluster.produce(rig.topic, good, headers={"X-Signature": signature(good, "someone-else")})
    rig.produce(b"{not json", secret=SECRET)
    rig.produce(b'{"notification":"BootNotification","chargePointId":"x"}', secret=SECRET)
    rig.cluster.produce(rig.topic, b"")  # a tombstone is no notification (nor signed)
    rig.produce(good, secret=SECRET)
    await rig.consumer()

    await until_async(lambda: rig.committed() == [5], "offsets committed past the poison")
    assert rig.rejections() == [
        ("KAFKA", f"kafka://{rig.topic}/0/0", 401, "unauthorized"),
        ("KAFKA", f"kafka://{rig.topic}/0/1", 400, "malformed-json"),
        ("KAFKA", f"kafka://{rig.topic}/0/2", 422, "schema-violation"),
        ("KAFKA", f"kafka://{rig.topic}/0/3", 401, "unauthorized"),
    ]
    assert len(rig.events()) == 1
    assert rig.counted("rejected") == 4
    assert rig.counted("accepted") == 1
    reasons = {
        s.labels["reason"]
        for m in rig.metrics.registry.collect()
        if m.name == "hookgate_rejections"
        for s in m.samples
        if s.name == "hookgate_rejections_total"
    }
    assert reasons == {"unauthorized", "malformed-json", "schema-violation"}


async def test_poison_messages_are_refused_and_committed(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    """Bodies the decoder once raised on (UnicodeDecodeError, RecursionError) stalled the
    partition for good: each was taken for a transient failure and read again forever."""
    rig = await make_rig()
    not_utf8 = b'{"notification":"BootNotification","chargePointId":"\xff\xfe"}'
    deep = b'{"notification":"BootNotification","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    good = ampeco_body("BootNotification", 9)
    for body in (not_utf8, deep, good):
        rig.produce(body, secret=SECRET)
    await rig.consumer()

    await until_async(lambda: rig.committed() == [3], "offsets committed past the poison", 15)
    assert rig.rejections() == [
        ("KAFKA", f"kafka://{rig.topic}/0/0", 400, "malformed-json"),
        ("KAFKA", f"kafka://{rig.topic}/0/1", 400, "nesting-too-deep"),
    ]
    assert [e[1] for e in rig.events()] == [hashlib.sha256(good).hexdigest()]
    assert rig.counted("error") == 0
    await until_async(lambda: rig.lag() == 0, "no lag left")


async def test_an_unexpected_error_before_the_write_refuses_the_message(
    make_rig: Callable[..., Awaitable[Rig]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect that depends on the message fails on every reading: the message is recorded
    as refused and its offset committed."""
    original = Ampeco.parse

    def parse(self: Ampeco, source: Any, call: Call) -> Any:
        if b"trips-a-defect" in call.body:
            raise KeyError("trips-a-defect")
        return original(self, source, call)

    monkeypatch.setattr(Ampeco, "parse", parse)
    rig = await make_rig()
    odd = json.dumps({"notification": "BootNotification", "x": "trips-a-defect"}).encode()
    good = ampeco_body("BootNotification", 4)
    rig.produce(odd, secret=SECRET)
    rig.produce(good, secret=SECRET)
    await rig.consumer()

    await until_async(lambda: rig.committed() == [2], "offsets committed past the defect", 15)
    [(_method, path, status, reason)] = rig.rejections()
    assert (path, status, reason) == (f"kafka://{rig.topic}/0/0", 422, "unprocessable-message")
    [(detail,)] = rig.rows("SELECT detail FROM rejections")
    assert "KeyError" in detail and "trips-a-defect" in detail
    assert len(rig.events()) == 1
    assert rig.counted("rejected") == 1


async def test_unsigned_messages_are_refused_when_secrets_are_set(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    assert rig.source.signature_required()
    unsigned = ampeco_body("BootNotification", 6)
    signed = ampeco_body("BootNotification", 7)
    rig.produce(unsigned)
    rig.produce(signed, secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [2], "offsets committed")
    assert rig.rejections() == [("KAFKA", f"kafka://{rig.topic}/0/0", 401, "unauthorized")]
    [(detail,)] = rig.rows("SELECT detail FROM rejections")
    assert "X-Signature" in detail and "missing" in detail
    assert [e[1] for e in rig.events()] == [hashlib.sha256(signed).hexdigest()]


def test_require_signature_defaults_and_checks(kafka_cluster: MockCluster, tmp_path: Path) -> None:
    def source(**entry: Any) -> AmpecoSource:
        found = config_for(tmp_path / "x.db", kafka_cluster, "t", **entry).sources[0]
        assert isinstance(found, AmpecoSource)
        return found

    assert source().signature_required()
    assert not source(secrets=[]).signature_required()
    assert not source(secrets=[""]).signature_required()
    assert not source(require_signature=False).signature_required()
    with pytest.raises(ConfigError, match="require_signature"):
        source(secrets=[], require_signature=True)
    with pytest.raises(ConfigError, match="always verified"):
        parse_config(
            {
                "sources": [
                    {
                        "name": "a",
                        "provider": "ampeco",
                        "secrets": ["s"],
                        "require_signature": False,
                    }
                ]
            },
            env={},
        )


async def test_signed_message_that_breaks_the_schema_is_quarantined_by_default(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    drifted = b'{"notification":"BootNotification","chargePointId":"x"}'
    rig.produce(drifted, secret=SECRET)
    rig.produce(b"{not json", secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [2], "offsets committed")
    assert [r[2:] for r in rig.rejections()] == [(400, "malformed-json")]
    [(status, flags, document)] = rig.rows("SELECT status, flags, document FROM inbox")
    assert (status, json.loads(flags)) == ("quarantined", ["schema_mismatch"])
    assert json.loads(document)["violation"] == "$.chargePointId: expected int | null, got str"


async def test_signed_message_to_a_source_without_secrets_is_refused(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig(secrets=[], sasl_password=None)
    body = ampeco_body("BootNotification", 2)
    rig.produce(body, secret="kafka")  # no secret may be guessed from the settings
    rig.produce(ampeco_body("BootNotification", 3))
    await rig.consumer()
    await until_async(lambda: rig.committed() == [2], "offsets committed")
    assert [r[2:] for r in rig.rejections()] == [(401, "unauthorized")]
    assert len(rig.events()) == 1


async def test_oversized_message_is_refused(make_rig: Callable[..., Awaitable[Rig]]) -> None:
    rig = await make_rig()
    body = json.dumps({"notification": "BootNotification", "pad": "x" * 5000}).encode()
    rig.produce(body, secret=SECRET)
    await rig.consumer(max_body_bytes=4096)
    await until_async(lambda: rig.committed() == [1], "offset committed")
    [(method, _, status, reason)] = rig.rejections()
    assert (method, status, reason) == ("KAFKA", 413, "body-too-large")
    [(size, kept)] = rig.rows("SELECT body_size, length(body) FROM rejections")
    assert size == len(body)
    assert kept == rig.config.storage.rejection_body_bytes


# -- durability --------------------------------------------------------------------------


async def test_storage_failure_commits_nothing_and_loses_nothing(
    tmp_path: Path, make_rig: Callable[..., Awaitable[Rig]]
) -> None:
    store = FlakyStore(str(tmp_path / "hookgate.db"))
    store.failing = True
    rig = await make_rig(store=store)
    bodies = [ampeco_body("SessionUpdateNotification", seq) for seq in range(3)]
    for body in bodies:
        rig.produce(body, secret=SECRET)
    await rig.consumer()

    await until_async(lambda: store.calls >= 9, "the same messages tried again")
    assert rig.committed()[0] < 0
    assert rig.events() == []
    assert rig.rejections() == []
    assert rig.counted("error") >= 9
    await until_async(lambda: rig.lag() == 3, "lag of the unconsumed messages")

    store.failing = False
    await until_async(lambda: rig.committed() == [3], "offsets committed after recovery")
    assert len(rig.events()) == 3
    assert rig.counted("accepted") == 3
    await until_async(lambda: rig.lag() == 0, "lag drained")
    last = rig.metrics.registry.get_sample_value(
        "hookgate_kafka_last_commit_timestamp_seconds", {"source": rig.source.name}
    )
    assert last is not None and last > 0


async def test_a_full_writer_queue_defers_messages_without_committing_them(
    tmp_path: Path, make_rig: Callable[..., Awaitable[Rig]]
) -> None:
    # Room for two ingest writes (bound 3, one kept for Zaptec decisions), taken by two
    # writes waiting on the SQLite write lock the test holds: every message finds no room,
    # in whatever batches the Kafka client hands them over (a batch of the first few
    # would wait on the lock with them instead).
    db = tmp_path / "hookgate.db"
    store = SqliteStore(str(db), auto_migrate=True, queue_max=3, queue_reserve=1)
    rig = await make_rig(store=store)
    bodies = [ampeco_body("SessionUpdateNotification", seq) for seq in range(5)]
    for body in bodies:
        rig.produce(body, secret=SECRET)

    async def nothing(tx: Any) -> None:
        return None

    lock = sqlite3.connect(str(db), isolation_level=None, timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        held = [asyncio.ensure_future(store._write(nothing)) for _ in range(2)]
        await until_async(lambda: store.queued_writes() == 2, "the room taken")
        await rig.consumer()
        await until_async(lambda: rig.counted("deferred") >= 5, "every message deferred")
        assert store.queued_writes() == 2
        assert rig.committed()[0] < 0
        assert rig.counted("error") == 0
        assert rig.counted("accepted") == 0
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    await asyncio.gather(*held)

    # Read again after the Retry-After: every message stored once, then committed.
    await until_async(lambda: rig.committed() == [5], "every offset committed")
    hashes = sorted(e[1] for e in rig.events())
    assert hashes == sorted(hashlib.sha256(b).hexdigest() for b in bodies)
    assert rig.rejections() == []
    assert rig.counted("accepted") == 5


async def test_failures_within_a_batch_across_partitions_store_everything_once(
    tmp_path: Path, make_rig: Callable[..., Awaitable[Rig]]
) -> None:
    store = FlakyStore(str(tmp_path / "hookgate.db"))
    store.fail_calls = {2, 5, 9, 14}
    rig = await make_rig(store=store, partitions=2)
    bodies = [ampeco_body("SessionUpdateNotification", seq) for seq in range(20)]
    for index, body in enumerate(bodies):
        rig.produce(body, secret=SECRET, partition=index % 2)
    await rig.consumer(batch_max=3)

    await until_async(lambda: rig.committed(2) == [10, 10], "every offset committed")
    hashes = [e[1] for e in rig.events()]
    assert sorted(hashes) == sorted(hashlib.sha256(b).hexdigest() for b in bodies)
    assert rig.counted("error") == 4
    assert rig.counted("accepted") == 20


async def test_an_unexpected_error_reads_the_message_again(
    tmp_path: Path, make_rig: Callable[..., Awaitable[Rig]]
) -> None:
    store = FlakyStore(str(tmp_path / "hookgate.db"))
    store.crash_calls = {1}
    rig = await make_rig(store=store)
    rig.produce(ampeco_body("BootNotification", 5), secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [1], "offset committed")
    assert len(rig.events()) == 1
    assert rig.counted("error") == 1
    assert rig.rejections() == []


async def test_stop_finishes_and_commits_the_batch_in_hand(
    tmp_path: Path, make_rig: Callable[..., Awaitable[Rig]]
) -> None:
    store = FlakyStore(str(tmp_path / "hookgate.db"))
    store.delay = 0.3
    rig = await make_rig(store=store)
    for seq in range(3):
        rig.produce(ampeco_body("SessionUpdateNotification", seq), secret=SECRET)
    kafka = await rig.consumer()
    await asyncio.wait_for(store.entered.wait(), 30)
    await rig.stop(kafka)
    stored = len(rig.events())
    assert stored >= 1
    assert rig.committed() == [stored]


async def test_restart_resumes_from_the_committed_offset(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    first = [ampeco_body("SessionUpdateNotification", seq) for seq in range(3)]
    for body in first:
        rig.produce(body, secret=SECRET)
    kafka = await rig.consumer()
    await until_async(lambda: rig.committed() == [3], "first offsets committed")
    await rig.stop(kafka)
    assert not kafka.running

    second = [ampeco_body("SessionUpdateNotification", seq) for seq in range(3, 5)]
    for body in second:
        rig.produce(body, secret=SECRET)
    rig.metrics.kafka_messages.clear()
    await rig.consumer()
    await until_async(lambda: rig.committed() == [5], "second offsets committed")
    assert len(rig.events()) == 5
    assert rig.counted("accepted") == 2  # the first three were not read again
    assert rig.counted("duplicate") == 0


async def test_a_batch_stored_before_a_crash_is_a_duplicate_when_read_again(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    rig = await make_rig()
    providers = build_providers(TokenIssuer(b"k" * 32))
    body = ampeco_body("cdr.received", 4)
    # A previous consumer stored it, then died before its commit.
    await rig.pipeline.accept(rig.source, providers["ampeco"], Call("", {}, body), verify=False)
    rig.produce(body, secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [1], "offset committed")
    assert len(rig.events()) == 1
    assert rig.counted("duplicate") == 1


async def test_stop_commits_and_start_kafka_sources_wires_kafka_sources_only(
    tmp_path: Path, kafka_cluster: MockCluster
) -> None:
    topic = kafka_cluster.create_topic(f"ampeco-{next(_names)}")
    db = tmp_path / "hookgate.db"
    data = {
        "storage": {"url": f"sqlite:///{db}"},
        "sources": [
            {"name": "web", "provider": "ampeco", "secrets": [SECRET]},
            {
                "name": "bus",
                "provider": "ampeco",
                "transport": "kafka",
                "brokers": [kafka_cluster.bootstrap],
                "topic": topic,
                "secrets": [SECRET],
            },
        ],
    }
    config = parse_config(data, env={})
    store = SqliteStore(str(db), auto_migrate=True)
    await store.open()
    decider = AuthorizationService(store, config.authorization)
    await decider.start(follow=False)
    metrics = Metrics()
    woken: list[int] = []
    providers = build_providers(TokenIssuer(b"k" * 32))
    try:
        body = ampeco_body("BootNotification", 9)
        kafka_cluster.produce_ampeco(topic, body, secret=SECRET)
        sources = await start_kafka_sources(
            config, store, providers, metrics, decider, lambda: woken.append(1)
        )
        assert [s.source.name for s in sources] == ["bus"]
        assert sources[0].settings["group.id"] == "hookgate-bus"
        assert sources[0].settings["client.id"] == "hookgate-bus"

        def stored() -> bool:
            conn = sqlite3.connect(db)
            try:
                return bool(conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 1)
            finally:
                conn.close()

        await until_async(stored, "the message stored")
        await stop_kafka_sources(sources)
        assert kafka_cluster.committed("hookgate-bus", topic) == [1]
        assert woken == [1]
    finally:
        await decider.stop()
        await store.close()


# -- webhook and Kafka -------------------------------------------------------------------


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    await until_async(lambda: server.started, "the HTTP server")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_same_notification_by_webhook_then_kafka_is_stored_once(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    """A source moved from webhooks to Kafka keeps its name; AMPECO's resends after the
    move are recognised as the notifications the webhook already stored."""
    rig = await make_rig()
    body = ampeco_body("session.start.stop.notification", 11)
    webhook = parse_config(
        {"sources": [{"name": rig.source.name, "provider": "ampeco", "secrets": [SECRET]}]},
        env={},
    )
    issuer = TokenIssuer(b"k" * 32)
    decider = rig.pipeline.decider
    headers = {"Content-Type": "application/json", "X-Signature": signature(body, SECRET)}
    before = Ingress(webhook, rig.store, build_providers(issuer), decider, issuer, rig.metrics)
    async with serving(before) as url, httpx.AsyncClient(base_url=url) as client:
        answer = await client.post(f"/hooks/{rig.source.name}", content=body, headers=headers)
        assert answer.status_code == 202

    rig.produce(body, secret=SECRET)
    await rig.consumer()
    await until_async(lambda: rig.committed() == [1], "offset committed")
    assert len(rig.events()) == 1
    assert rig.counted("duplicate") == 1

    after = Ingress(rig.config, rig.store, build_providers(issuer), decider, issuer, rig.metrics)
    async with serving(after) as url, httpx.AsyncClient(base_url=url) as client:
        answer = await client.post(f"/hooks/{rig.source.name}", content=body, headers=headers)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"].endswith("unknown-route")
    assert problem["detail"] == f"source {rig.source.name!r} receives through Kafka"
    assert rig.rows("SELECT method, status, reason FROM rejections") == [
        ("POST", 404, "unknown-route")
    ]


# -- settings ----------------------------------------------------------------------------


def test_consumer_settings_map_the_source_keys() -> None:
    source = parse_config(
        {
            "sources": [
                {
                    "name": "amp",
                    "provider": "ampeco",
                    "transport": "kafka",
                    "brokers": "b1:9093, b2:9093",
                    "topic": "notifications",
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_username": "hookgate",
                    "sasl_password": "pw",
                    "auto_offset_reset": "latest",
                }
            ]
        },
        env={},
    ).sources[0]
    assert isinstance(source, AmpecoSource)
    assert consumer_settings(source) == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "group.id": "hookgate-amp",
        "client.id": "hookgate-amp",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "latest",
        "enable.partition.eof": False,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "hookgate",
        "sasl.password": "pw",
    }


async def test_a_message_s_place_is_its_request_id_and_its_traceparent_is_followed(
    make_rig: Callable[..., Awaitable[Rig]],
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from hookgate import tracing
    from hookgate.config import TracingConfig

    memory = InMemorySpanExporter()
    assert tracing.install(TracingConfig(enabled=True), SimpleSpanProcessor(memory))
    try:
        rig = await make_rig(on_invalid="reject")
        good = ampeco_body("BootNotification", 1)
        trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        rig.cluster.produce(
            rig.topic,
            good,
            headers={
                "X-Signature": signature(good, SECRET),
                "traceparent": f"00-{trace_id}-{parent}-01",
            },
        )
        rig.produce(b"{not json", secret=SECRET)
        await rig.consumer()
        await until_async(lambda: rig.committed() == [2], "offsets committed")
        [(request_id, stored)] = rig.rows("SELECT request_id, trace_context FROM inbox")
        assert request_id == f"kafka://{rig.topic}/0/0"
        [(refused,)] = rig.rows("SELECT request_id FROM rejections")
        assert refused == f"kafka://{rig.topic}/0/1"
        spans = [s for s in memory.get_finished_spans() if s.kind == SpanKind.CONSUMER]
        first = next(s for s in spans if s.attributes["hookgate.request_id"] == request_id)
        assert first.context.trace_id == int(trace_id, 16)
        assert first.parent is not None and first.parent.span_id == int(parent, 16)
        assert stored == f"00-{trace_id}-{first.context.span_id:016x}-01"
    finally:
        tracing.uninstall()
