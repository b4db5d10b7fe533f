"""librdkafka's built-in mock cluster as a test fixture (there is no broker here).

A client configured with `test.mock.num.brokers` starts an in-process cluster that
listens on 127.0.0.1; its metadata names the brokers, and any other client that
bootstraps from them talks to that cluster for as long as the first client lives. Topics
are created on first use with 4 partitions (the mock cluster has no controller, so
CreateTopics is not available).

    from kafka_mock import MockKafka  # the fixture comes from conftest.py

    def test_x(kafka_mock: MockKafka) -> None:
        producer = Producer({"bootstrap.servers": kafka_mock.bootstrap})
        ...
        records = kafka_mock.consume("topic", 3)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition


class MockKafka:
    """A running mock cluster: `bootstrap` is its `host:port` list."""

    def __init__(self, brokers: int = 1) -> None:
        self._holder = Producer({"test.mock.num.brokers": brokers, "logger": _Quiet()})
        metadata = self._holder.list_topics(timeout=10)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())

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
        """Stop the cluster."""
        self._holder.flush(1)
        del self._holder


class _Quiet:
    """A logger for librdkafka that drops its lines (the mock cluster announces itself on
    every start, on stderr)."""

    def log(self, *_args: Any, **_kwargs: Any) -> None:
        return None


@pytest.fixture
def kafka_mock() -> Iterator[MockKafka]:
    """A fresh one-broker mock cluster for one test."""
    cluster = MockKafka()
    try:
        yield cluster
    finally:
        cluster.close()
