"""The HTTP sender against a real local receiver, the Kafka sender against librdkafka's
mock cluster."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from hookgate import __version__
from hookgate.config import DestinationConfig
from hookgate.delivery.http import HttpSender, classify
from hookgate.delivery.kafka import KafkaSender, producer_config
from support.delivery_receiver import HANG, Receiver, closed_port, serve
from support.kafka import MockKafka

SECRET = "whsec_" + base64.b64encode(b"receiver secret, 32 bytes long!!").decode()
BODY = b'{"specversion":"1.0","id":"01JF0000000000000000000001","type":"t","data":{"a":1}}'


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve(Receiver(secret=SECRET, hang_seconds=3))


def http_destination(url: str, **keys: Any) -> DestinationConfig:
    return msgspec.convert(
        {"name": "crm", "kind": "http", "url": url, "secret": SECRET, **keys}, DestinationConfig
    )


@pytest.fixture
async def sender() -> Any:
    sender = HttpSender()
    yield sender
    await sender.close()


async def test_2xx_is_delivered_signed_and_described(receiver: Receiver, sender: Any) -> None:
    destination = http_destination(receiver.url, headers={"x-tenant": "acme"})
    result = await sender.send(destination, "01JF0000000000000000000001", BODY)
    assert (result.kind, result.status_code, result.error) == ("delivered", 204, None)
    (request,) = receiver.received
    assert request.verified, request.error
    assert request.body == BODY
    assert request.headers["webhook-id"] == "01JF0000000000000000000001"
    assert request.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert request.headers["user-agent"] == f"hookgate/{__version__}"
    assert request.headers["x-tenant"] == "acme"


@pytest.mark.parametrize(
    ("status", "kind", "healthy"),
    [
        (500, "failed", False),
        (503, "failed", False),
        (429, "failed", False),
        (400, "failed", True),
        (404, "failed", True),
        (302, "failed", True),
        (410, "gone", True),
        (200, "delivered", True),
        (202, "delivered", True),
    ],
)
async def test_answers_are_classified(
    receiver: Receiver, sender: Any, status: int, kind: str, healthy: bool
) -> None:
    receiver.script = [status]
    result = await sender.send(http_destination(receiver.url), "m1", BODY)
    assert (result.kind, result.status_code, result.healthy) == (kind, status, healthy)
    if kind != "delivered":
        assert result.error is not None and result.error.startswith(f"HTTP {status}")


async def test_a_slow_receiver_times_out(receiver: Receiver, sender: Any) -> None:
    receiver.script = [HANG]
    result = await sender.send(http_destination(receiver.url, timeout_seconds=0.3), "m1", BODY)
    assert (result.kind, result.status_code, result.healthy) == ("failed", None, False)
    assert result.error == "timed out after 0.3 s"


async def test_a_receiver_that_is_down_fails_without_leaking_the_url(sender: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hooks?token=s3cr3t"
    result = await sender.send(http_destination(url), "m1", BODY)
    assert (result.kind, result.status_code, result.healthy) == ("failed", None, False)
    assert result.error is not None and "ConnectError" in result.error
    assert "s3cr3t" not in result.error


def test_classify_keeps_errors_short() -> None:
    assert classify(599, "x" * 1000).error is not None
    assert len(classify(599, "x" * 1000).error or "") <= 200


# -- Kafka -------------------------------------------------------------------------------


def kafka_destination(cluster: MockKafka, topic: str = "hookgate-events") -> DestinationConfig:
    return msgspec.convert(
        {"name": "lake", "kind": "kafka", "brokers": cluster.bootstrap, "topic": topic},
        DestinationConfig,
    )


def test_producer_is_idempotent_and_carries_security_settings() -> None:
    destination = msgspec.convert(
        {
            "name": "lake",
            "kind": "kafka",
            "brokers": ["b1:9093", "b2:9093"],
            "topic": "t",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "u",
            "sasl_password": "p",
            "ssl_ca_location": "/etc/ca.pem",
            "timeout_seconds": 7,
        },
        DestinationConfig,
    )
    config = producer_config(destination.kafka(), destination.timeout_seconds)
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["bootstrap.servers"] == "b1:9093,b2:9093"
    assert config["message.timeout.ms"] == 7000
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (config["sasl.username"], config["sasl.password"]) == ("u", "p")
    assert config["ssl.ca.location"] == "/etc/ca.pem"


async def test_kafka_records_are_structured_cloudevents_keyed_by_subject(
    kafka_mock: MockKafka,
) -> None:
    sender = KafkaSender(kafka_destination(kafka_mock))
    try:
        for n in range(4):
            result = await sender.send(b"parking/4242", BODY.replace(b"}}", b',"n":%d}}' % n))
            assert result.kind == "delivered", result.error
        assert (await sender.send(b"parking/7", BODY)).kind == "delivered"
    finally:
        await sender.close()
    records = kafka_mock.consume("hookgate-events", 5)
    assert len(records) == 5
    for record in records:
        assert record.headers() == [
            ("content-type", b"application/cloudevents+json; charset=UTF-8")
        ]
        assert msgspec.json.decode(record.value())["specversion"] == "1.0"
    same_subject = [r for r in records if r.key() == b"parking/4242"]
    assert len({r.partition() for r in same_subject}) == 1
    assert [msgspec.json.decode(r.value())["data"]["n"] for r in same_subject] == [0, 1, 2, 3]


async def test_kafka_failure_when_the_cluster_is_unreachable() -> None:
    destination = msgspec.convert(
        {
            "name": "lake",
            "kind": "kafka",
            "brokers": f"127.0.0.1:{closed_port()}",
            "topic": "t",
            "timeout_seconds": 1,
        },
        DestinationConfig,
    )
    sender = KafkaSender(destination, extra={"logger": _Silent()})
    try:
        result = await sender.send(b"k", BODY)
    finally:
        await sender.close()
    assert (result.kind, result.healthy) == ("failed", False)
    assert result.error is not None and result.error.startswith("kafka: _MSG_TIMED_OUT")


class _Silent:
    def log(self, *_args: Any, **_kwargs: Any) -> None:
        return None
