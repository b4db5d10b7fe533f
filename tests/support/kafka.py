"""librdkafka's built-in mock cluster as test fixtures (there is no broker here), with an
AMPECO producer and a reader of what hookgate produced.

The mock cluster (what a client configured with `test.mock.num.brokers` starts) speaks
the real Kafka protocol on 127.0.0.1 sockets and lives as long as the librdkafka handle
that owns it; any other client, hookgate's consumer included, connects to its bootstrap
address as to a real cluster.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition

from hookgate.emulate.ampeco_samples import sample

FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures" / "ampeco"
CODECS = ("none", "gzip", "snappy", "lz4")


def ampeco_body(notification: str, seq: int = 0) -> bytes:
    """A realistic AMPECO body, compact JSON as AMPECO sends it."""
    return json.dumps(sample(notification, seq), separators=(",", ":")).encode()


def ampeco_fixture(name: str) -> bytes:
    """A captured AMPECO body from the contract fixtures, byte for byte."""
    return (FIXTURES / f"{name}.json").read_bytes()


def signature(body: bytes, secret: str, encoding: str = "hex") -> str:
    """X-Signature as AMPECO computes it: HMAC-SHA256 over the body, keyed by the API token."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if encoding == "base64":
        return base64.b64encode(digest).decode()
    if encoding == "prefixed":
        return "sha256=" + digest.hex().upper()
    return digest.hex()


def _librdkafka() -> ctypes.CDLL:
    """The librdkafka that confluent-kafka ships (already loaded by its extension)."""
    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    lib = ctypes.CDLL(str(found[0]) if found else "librdkafka.so.1")
    pointer = ctypes.c_void_p
    lib.rd_kafka_conf_new.restype = pointer
    lib.rd_kafka_conf_set.argtypes = [pointer, ctypes.c_char_p, ctypes.c_char_p]
    lib.rd_kafka_conf_set.argtypes += [ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_new.restype = pointer
    lib.rd_kafka_new.argtypes = [ctypes.c_int, pointer, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [pointer]
    lib.rd_kafka_mock_cluster_new.restype = pointer
    lib.rd_kafka_mock_cluster_new.argtypes = [pointer, ctypes.c_int]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [pointer]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [pointer]
    lib.rd_kafka_mock_topic_create.argtypes = [pointer, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    return lib


class MockCluster:
    """One mock cluster; topics and consumer groups are cheap, so tests make their own.

    Made through librdkafka's mock API (`rd_kafka_mock_cluster_new`), the same cluster
    `test.mock.num.brokers` starts, because that API also creates topics with an exact
    partition count (the mock brokers answer no controller for CreateTopics).
    """

    def __init__(self, brokers: int = 1) -> None:
        self._lib = lib = _librdkafka()
        error = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        lib.rd_kafka_conf_set(conf, b"log_level", b"3", error, len(error))
        self._handle = lib.rd_kafka_new(0, conf, error, len(error))
        if not self._handle:
            raise RuntimeError(f"no librdkafka handle: {error.value.decode()}")
        self._cluster = lib.rd_kafka_mock_cluster_new(self._handle, brokers)
        if not self._cluster:
            raise RuntimeError("librdkafka did not start a mock cluster")
        self.bootstrap: str = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()
        self._producers: dict[str, Producer] = {}

    def create_topic(self, topic: str, partitions: int = 1) -> str:
        code = self._lib.rd_kafka_mock_topic_create(self._cluster, topic.encode(), partitions, 1)
        if code != 0:
            raise RuntimeError(f"topic {topic} not created: error {code}")
        return topic

    def producer(self, compression: str = "none") -> Producer:
        if compression not in self._producers:
            self._producers[compression] = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "compression.type": compression,
                    "enable.idempotence": True,
                    "linger.ms": 5,
                }
            )
        return self._producers[compression]

    def produce(
        self,
        topic: str,
        body: bytes,
        *,
        headers: dict[str, str] | None = None,
        partition: int | None = None,
        compression: str = "none",
    ) -> None:
        """Produce one message and wait until the cluster has it."""
        self.produce_many(
            topic, [body], headers=headers, partition=partition, compression=compression
        )

    def produce_many(
        self,
        topic: str,
        bodies: list[bytes],
        *,
        headers: dict[str, str] | None = None,
        partition: int | None = None,
        compression: str = "none",
    ) -> None:
        producer = self.producer(compression)
        failures: list[Any] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        for body in bodies:
            extra: dict[str, Any] = {} if partition is None else {"partition": partition}
            producer.produce(
                topic,
                value=body,
                headers=list((headers or {}).items()),
                on_delivery=delivered,
                **extra,
            )
        if producer.flush(10) != 0 or failures:
            raise RuntimeError(f"messages not delivered: {failures}")

    def produce_ampeco(
        self,
        topic: str,
        body: bytes,
        *,
        secret: str | None = None,
        encoding: str = "hex",
        compression: str = "none",
        partition: int | None = None,
    ) -> None:
        """An AMPECO notification as its Kafka delivery sends it, signed when given a secret."""
        headers = {"X-Timestamp": "2025-12-04T12:00:00Z", "X-Tenant": "tenant-1"}
        if secret is not None:
            headers["X-Signature"] = signature(body, secret, encoding)
        self.produce(topic, body, headers=headers, compression=compression, partition=partition)

    def committed(self, group: str, topic: str, partitions: int = 1) -> list[int]:
        """The group's committed offsets per partition (negative: none committed)."""
        reader = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            found = reader.committed(
                [TopicPartition(topic, p) for p in range(partitions)], timeout=10
            )
            return [tp.offset for tp in sorted(found, key=lambda tp: tp.partition)]
        finally:
            reader.close()

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Settings for a client of this cluster."""
        return {"bootstrap.servers": self.bootstrap, "logger": _Quiet(), **extra}

    def consume(self, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
        """Read `count` records of `topic` from the beginning of every partition."""
        consumer = Consumer(
            self.client_config(**{"group.id": "hookgate-tests", "enable.auto.commit": False})
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            partitions = metadata.topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            records: list[Message] = []
            deadline = time.monotonic() + timeout
            while len(records) < count and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                records.append(message)
            return records
        finally:
            consumer.close()

    def close(self) -> None:
        for producer in self._producers.values():
            producer.flush(5)
        self._producers.clear()
        self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
        self._lib.rd_kafka_destroy(self._handle)


MockKafka = MockCluster


class _Quiet:
    """A logger for librdkafka that drops its lines (the mock cluster announces itself on
    every start, on stderr)."""

    def log(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[MockCluster]:
    """A mock cluster shared by a module's tests (each uses its own topic and group)."""
    cluster = MockCluster()
    yield cluster
    cluster.close()


@pytest.fixture
def kafka_mock() -> Iterator[MockCluster]:
    """A fresh one-broker mock cluster for one test."""
    cluster = MockCluster()
    try:
        yield cluster
    finally:
        cluster.close()
