"""AMPECO through a Kafka topic into `hookgate serve`, and out again as CloudEvents on
another topic: the real protocol against librdkafka's mock cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.e2e import migrate, query, serving, write_config
from support.gateway import base_config
from support.kafka import MockCluster, ampeco_body
from support.polling import until

pytestmark = pytest.mark.e2e

SECRET = "ampeco-kafka-api-token"
NOTIFICATIONS = (
    "session.start.stop.notification",
    "SessionMeterValuesNotification",
    "cdr.received",
)


def test_kafka_in_processing_and_kafka_out(tmp_path: Path, kafka_mock: MockCluster) -> None:
    inbound = kafka_mock.create_topic("ampeco-notifications", partitions=2)
    sources = base_config(tmp_path / "hookgate.db")["sources"]
    sources.append(
        {
            "name": "ampeco-kafka",
            "provider": "ampeco",
            "transport": "kafka",
            "brokers": [kafka_mock.bootstrap],
            "topic": inbound,
            "group_id": "hookgate-e2e",
            "secrets": [SECRET],
            "on_invalid": "reject",
        }
    )
    config = write_config(
        tmp_path,
        sources=sources,
        destinations=[
            {
                "name": "lake",
                "kind": "kafka",
                "brokers": kafka_mock.bootstrap,
                "topic": "hookgate-out",
                "sources": ["ampeco-kafka"],
            }
        ],
    )
    migrate(config)
    db = tmp_path / "hookgate.db"
    bodies = [ampeco_body(name, seq) for seq, name in enumerate(NOTIFICATIONS)]
    for body in bodies:
        kafka_mock.produce_ampeco(inbound, body, secret=SECRET)
    kafka_mock.produce_ampeco(inbound, bodies[0], secret=SECRET)  # a re-delivery
    kafka_mock.produce_ampeco(inbound, b'{"notification": 1}', secret=SECRET)  # refused
    with serving(config):

        def stored_and_delivered() -> list[tuple[Any, ...]] | None:
            rows = query(db, "SELECT status FROM inbox WHERE source = 'ampeco-kafka'")
            done = query(db, "SELECT count(*) FROM deliveries WHERE status = 'delivered'")[0][0]
            return rows if len(rows) == len(bodies) and done == len(bodies) else None

        rows = until(stored_and_delivered, "every message stored and delivered", 60)
    assert {row[0] for row in rows} == {"processed"}
    stored = {bytes(row[0]) for row in query(db, "SELECT raw_body FROM inbox")}
    assert stored >= set(bodies)
    refused = query(db, "SELECT method, status, path FROM rejections")
    assert [(m, s) for m, s, _ in refused] == [("KAFKA", 422)]
    assert refused[0][2].startswith(f"kafka://{inbound}/")
    records = kafka_mock.consume("hookgate-out", len(bodies))
    envelopes = [json.loads(record.value()) for record in records]
    assert sorted(e["type"] for e in envelopes) == sorted(
        f"hookgate.ampeco.{name}" for name in NOTIFICATIONS
    )
    assert {e["source"] for e in envelopes} == {"/hookgate/sources/ampeco-kafka"}
