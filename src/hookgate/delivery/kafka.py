"""Kafka destinations: CloudEvents Kafka protocol binding, structured mode.

The record value is the JSON envelope, the `content-type` header says so, and the key is
the subject (the event id when there is none) so that one subject's events stay in one
partition, in order. The producer is idempotent (`enable.idempotence`, `acks=all`): a
broker-side retry never writes a record twice. librdkafka's delivery reports arrive on a
polling thread and are handed to the event loop, which never blocks.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from hookgate.config import DestinationConfig, KafkaSettings
from hookgate.delivery.result import SendResult, short

KAFKA_CONTENT_TYPE = b"application/cloudevents+json; charset=UTF-8"

log = structlog.get_logger("hookgate.delivery")


def producer_config(settings: KafkaSettings, timeout_seconds: float) -> dict[str, Any]:
    """librdkafka settings of an idempotent producer for `settings`."""
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(settings.broker_list()),
        "enable.idempotence": True,
        "acks": "all",
        "security.protocol": settings.security_protocol,
        "message.timeout.ms": max(1000, int(timeout_seconds * 1000)),
        "linger.ms": 5,
        "client.id": "hookgate",
    }
    if settings.sasl_mechanism:
        config["sasl.mechanism"] = settings.sasl_mechanism
    if settings.sasl_username:
        config["sasl.username"] = settings.sasl_username
    if settings.sasl_password:
        config["sasl.password"] = settings.sasl_password
    if settings.ssl_ca_location:
        config["ssl.ca.location"] = settings.ssl_ca_location
    return config


def _result(err: KafkaError | None) -> SendResult:
    if err is None:
        return SendResult("delivered")
    healthy = not err.retriable() and err.code() != KafkaError._MSG_TIMED_OUT
    return SendResult("failed", None, short(f"kafka: {err.name()}: {err.str()}"), healthy=healthy)


class KafkaSender:
    """One idempotent producer for one Kafka destination."""

    def __init__(self, destination: DestinationConfig, *, extra: dict[str, Any] | None = None):
        assert destination.topic is not None
        self.destination = destination.name
        self.topic = destination.topic
        self._timeout = destination.timeout_seconds
        self._config = {
            **producer_config(destination.kafka(), destination.timeout_seconds),
            **(extra or {}),
        }
        self._producer = Producer(self._config)
        self._stop = threading.Event()
        self._poller = threading.Thread(
            target=self._poll, name=f"kafka-{destination.name}", daemon=True
        )
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def send(self, key: bytes, value: bytes) -> SendResult:
        """Produce one record and wait for its delivery report."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[SendResult] = loop.create_future()

        def report(err: KafkaError | None, _msg: Message) -> None:
            def settle() -> None:
                if err is not None:
                    self._renew_if_fatal(err)
                if not done.done():
                    done.set_result(_result(err))

            loop.call_soon_threadsafe(settle)

        try:
            self._producer.produce(
                self.topic,
                value=value,
                key=key,
                headers=[("content-type", KAFKA_CONTENT_TYPE)],
                on_delivery=report,
            )
        except BufferError:
            return SendResult("failed", None, "kafka: local queue full", healthy=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                self._renew_if_fatal(err)
                return _result(err)
            return SendResult("failed", None, short(f"kafka: {exc}"), healthy=False)
        try:
            # librdkafka times the message out itself; this only guards against a lost report.
            async with asyncio.timeout(self._timeout + 30):
                result = await done
        except TimeoutError:
            return SendResult("failed", None, "kafka: no delivery report", healthy=False)
        return result

    def _renew_if_fatal(self, err: KafkaError) -> None:
        # A fatal idempotence error (e.g. a fenced producer id) poisons the producer.
        if err.fatal():
            log.warning("kafka_producer_renewed", destination=self.destination, error=err.str())
            self._stop.set()
            self._poller.join()
            self._producer = Producer(self._config)
            self._stop = threading.Event()
            self._poller = threading.Thread(
                target=self._poll, name=f"kafka-{self.destination}", daemon=True
            )
            self._poller.start()

    async def close(self) -> None:
        """Wait (bounded) for records in flight, then stop polling."""
        await asyncio.to_thread(self._producer.flush, self._timeout)
        self._stop.set()
        await asyncio.to_thread(self._poller.join)
