"""AMPECO notifications from a Kafka topic, through the same pipeline as the webhook.

A confluent-kafka consumer polls in its own thread (librdkafka calls block) and hands each
batch to the event loop, where every message is verified, parsed and stored exactly as a
webhook body is. Offsets are committed synchronously, and only after the batch's durable
writes returned: a process that dies before the commit reads the batch again, and the
inbox's dedup key turns the second reading into a duplicate, not a second event. A refused
message (bad or missing signature, not JSON, schema violation) is recorded and committed,
so that one poison message cannot stall its partition; so is a message whose handling
failed in any other way before the write, since reading it again would fail again. Only a
failed write commits nothing: the consumer pauses, backs off and reads the same messages
again. A full writer queue (load shedding, ADR 0015) commits nothing either: the consumer
pauses for the Retry-After the store gives, not the growing back-off, and reads again;
the topic is the queue, and nothing is refused for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from structlog.contextvars import bind_contextvars

from hookgate import tracing
from hookgate.authorization.decider import Decider
from hookgate.config import AmpecoSource, Config
from hookgate.domain.errors import Overloaded, StoreError
from hookgate.ingress.pipeline import Pipeline
from hookgate.metrics import Metrics
from hookgate.providers.base import Call, Provider, Reject
from hookgate.store.base import Store

log = structlog.get_logger("hookgate.kafka")

_Partition = tuple[str, int]


@dataclass(slots=True, frozen=True)
class _Record:
    """One message, copied out of librdkafka's object so the event loop can own it."""

    topic: str
    partition: int
    offset: int
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return f"kafka://{self.topic}/{self.partition}/{self.offset}"


def _record(message: Message) -> _Record:
    # Header names compared as HTTP does (lowercase); repeated names joined like HTTP.
    headers: dict[str, str] = {}
    raw = message.headers() or []
    for name, value in raw.items() if isinstance(raw, dict) else raw:
        key = name.lower()
        text = value.decode("latin-1") if isinstance(value, bytes) else (value or "")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    topic = message.topic() or ""
    partition = message.partition() or 0
    offset = message.offset() or 0
    return _Record(topic, partition, offset, headers, message.value() or b"")


def consumer_settings(source: AmpecoSource) -> dict[str, Any]:
    """librdkafka settings of a source: manual commits of stored offsets only, read
    committed, one client id per source so that brokers' quotas and logs name it."""
    kafka = source.kafka()
    settings: dict[str, Any] = {
        "bootstrap.servers": ",".join(kafka.broker_list()),
        "group.id": source.consumer_group(),
        "client.id": f"hookgate-{source.name}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": source.auto_offset_reset,
        "enable.partition.eof": False,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism is not None:
        settings["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_username is not None:
        settings["sasl.username"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        settings["sasl.password"] = kafka.sasl_password
    if kafka.ssl_ca_location is not None:
        settings["ssl.ca.location"] = kafka.ssl_ca_location
    return settings


class KafkaSource:
    """Consumes one `transport = "kafka"` source's topic into the inbox."""

    def __init__(
        self,
        source: AmpecoSource,
        provider: Provider[Any],
        pipeline: Pipeline,
        metrics: Metrics,
        *,
        max_body_bytes: int = 1024 * 1024,
        batch_max: int = 500,
        poll_seconds: float = 0.5,
        lag_interval_seconds: float = 5.0,
        backoff_initial_seconds: float = 0.5,
        backoff_max_seconds: float = 30.0,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        if not source.topic:
            raise ValueError(f"source {source.name!r} has no topic")
        self.source = source
        self.topic = source.topic
        self.provider = provider
        self.pipeline = pipeline
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.batch_max = batch_max
        self.poll_seconds = poll_seconds
        self.lag_interval = lag_interval_seconds
        self.backoff_initial = backoff_initial_seconds
        # Stays well below max.poll.interval.ms, so a long outage never costs the assignment.
        self.backoff_max = backoff_max_seconds
        self.settings = consumer_settings(source) | dict(overrides or {})
        self._signature = source.signature_header.lower()
        self._require_signature = source.signature_required()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: Consumer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Offsets (next to read) whose messages are durable but not yet committed.
        self._pending: dict[_Partition, int] = {}
        self._counters: dict[str, Any] = {}
        # Seconds the store asked to wait (Retry-After) for the last batch; 0: it did not.
        self._overloaded = 0

    # -- lifecycle (event loop) --------------------------------------------------------

    async def start(self) -> None:
        """Join the consumer group and start reading in a thread of its own."""
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._consumer = self._connect()
        self._thread = threading.Thread(
            target=self._run, name=f"kafka-{self.source.name}", daemon=True
        )
        self._thread.start()
        log.info(
            "kafka source started",
            source=self.source.name,
            topic=self.topic,
            group=self.source.consumer_group(),
        )

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, and leave the group cleanly (one
        rebalance for the others now, rather than one after the session times out)."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        await asyncio.to_thread(thread.join)
        self._thread = None
        self._consumer = None
        log.info("kafka source stopped", source=self.source.name)

    @property
    def running(self) -> bool:
        """True while the consumer thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- consumer thread ---------------------------------------------------------------

    def _connect(self) -> Consumer:
        consumer = Consumer(self.settings, logger=logging.getLogger("hookgate.kafka.client"))
        consumer.subscribe(
            [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        return consumer

    def _run(self) -> None:
        """Read until stopped. A client failure closes the consumer (committing only what is
        durable) and, after a pause, a new one resumes from the committed offsets."""
        consumer = self._consumer
        delay = self.backoff_initial
        while not self._stopping.is_set():
            if consumer is None:
                try:
                    consumer = self._consumer = self._connect()
                except KafkaException as exc:
                    log.error("kafka consumer not created", source=self.source.name, error=str(exc))
                    self._stopping.wait(delay)
                    delay = min(delay * 2, self.backoff_max)
                    continue
            try:
                self._consume(consumer)
                return
            except Exception:
                log.exception("kafka consumer failed; starting a new one", source=self.source.name)
            finally:
                self._close(consumer)
            consumer = None
            self._stopping.wait(delay)
            delay = min(delay * 2, self.backoff_max)

    def _consume(self, consumer: Consumer) -> None:
        backoff = self.backoff_initial
        next_lag = 0.0
        while not self._stopping.is_set():
            self._commit(consumer)
            messages = consumer.consume(self.batch_max, self.poll_seconds)
            records = []
            for message in messages:
                error = message.error()
                if error is not None:
                    log.warning("kafka error", source=self.source.name, error=str(error))
                    continue
                records.append(_record(message))
            if records:
                self._overloaded = 0
                retry = self._dispatch(records)
                self._commit(consumer)
                if retry and self._overloaded:
                    # The gateway is busy, not broken: wait as long as it asks, no longer.
                    self._back_off(consumer, retry, self._overloaded, overloaded=True)
                elif retry:
                    self._back_off(consumer, retry, backoff)
                    backoff = min(backoff * 2, self.backoff_max)
                else:
                    backoff = self.backoff_initial
            now = time.monotonic()
            if now >= next_lag:
                self._refresh_lag(consumer)
                next_lag = now + self.lag_interval

    def _close(self, consumer: Consumer) -> None:
        """Commit what is durable and leave the group."""
        try:
            self._commit(consumer)
            consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("kafka consumer close failed", source=self.source.name, error=str(exc))
        self._pending.clear()

    def _dispatch(self, records: list[_Record]) -> dict[_Partition, int]:
        """Store a batch on the event loop; note what may be committed and return, per
        partition, the first offset to read again (its message, or an earlier one, failed
        to reach storage)."""
        assert self._loop is not None
        done = asyncio.run_coroutine_threadsafe(self._handle(records), self._loop).result()
        retry: dict[_Partition, int] = {}
        for record, ok in zip(records, done, strict=True):
            key = (record.topic, record.partition)
            if key in retry:
                continue
            if ok:
                self._pending[key] = record.offset + 1
            else:
                retry[key] = record.offset
        return retry

    def _back_off(
        self,
        consumer: Consumer,
        retry: dict[_Partition, int],
        seconds: float,
        *,
        overloaded: bool = False,
    ) -> None:
        """Wait out a storage failure (or a full writer queue) with fetching paused, then
        read again from the first message that was not stored."""
        log.warning(
            "writer queue full; reading again after a pause"
            if overloaded
            else "storage unavailable; reading again after a pause",
            source=self.source.name,
            seconds=seconds,
            partitions={f"{t}/{p}": o for (t, p), o in retry.items()},
        )
        assignment = consumer.assignment()
        consumer.pause(assignment)
        self._stopping.wait(seconds)
        consumer.resume(assignment)
        owned = {(tp.topic, tp.partition) for tp in assignment}
        for (topic, partition), offset in retry.items():
            if (topic, partition) in owned:
                consumer.seek(TopicPartition(topic, partition, offset))

    def _commit(self, consumer: Consumer) -> None:
        """Commit durable offsets synchronously; what fails stays pending and is retried."""
        if not self._pending:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._pending.items()]
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed", source=self.source.name, error=str(exc))
            return
        committed = False
        for tp in result or offsets:
            key = (tp.topic, tp.partition)
            if tp.error is not None:
                log.warning(
                    "offset commit failed",
                    source=self.source.name,
                    partition=f"{tp.topic}/{tp.partition}",
                    error=str(tp.error),
                )
                continue
            if self._pending.get(key) == tp.offset:
                del self._pending[key]
            committed = True
            self._set_lag(consumer, tp.topic, tp.partition, tp.offset, cached=True)
        if committed:
            self.metrics.kafka_last_commit.labels(self.source.name).set_to_current_time()

    def _refresh_lag(self, consumer: Consumer) -> None:
        try:
            assignment = consumer.assignment()
            if not assignment:
                return
            committed = consumer.committed(assignment, timeout=5)
        except KafkaException as exc:
            log.debug("consumer lag not refreshed", source=self.source.name, error=str(exc))
            return
        for tp in committed:
            self._set_lag(consumer, tp.topic, tp.partition, tp.offset, cached=False)

    def _set_lag(
        self, consumer: Consumer, topic: str, partition: int, committed: int, *, cached: bool
    ) -> None:
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=5, cached=cached
            )
        except KafkaException as exc:
            log.debug("watermarks unknown", source=self.source.name, error=str(exc))
            return
        if high < 0:
            return
        if committed < 0:
            # Nothing committed yet: everything the reset policy would read is lag.
            committed = low if self.source.auto_offset_reset == "earliest" else high
        lag = max(high - committed, 0)
        self.metrics.kafka_lag.labels(self.source.name, topic, str(partition)).set(lag)

    # Rebalance callbacks run inside consume(), on the consumer thread, between batches.

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info(
            "kafka partitions assigned",
            source=self.source.name,
            partitions=[f"{tp.topic}/{tp.partition}" for tp in partitions],
        )

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit(consumer)
        self._forget(partitions)
        log.info(
            "kafka partitions revoked",
            source=self.source.name,
            partitions=[f"{tp.topic}/{tp.partition}" for tp in partitions],
        )

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        log.warning(
            "kafka partitions lost",
            source=self.source.name,
            partitions=[f"{tp.topic}/{tp.partition}" for tp in partitions],
        )

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._pending.pop((tp.topic, tp.partition), None)
            with contextlib.suppress(KeyError):
                self.metrics.kafka_lag.remove(self.source.name, tp.topic, str(tp.partition))

    # -- event loop --------------------------------------------------------------------

    async def _handle(self, records: list[_Record]) -> list[bool]:
        # Started in order, so the store queues the writes in partition order and the
        # batch shares its commits.
        return list(await asyncio.gather(*(self._one(record) for record in records)))

    async def _one(self, record: _Record) -> bool:
        """True when the message is settled (stored, duplicate or recorded as refused).
        Its place in the topic is its request id (log lines, the stored event or
        rejection); with tracing on it has a consumer span, child of its `traceparent`
        header if the producer sent one."""
        bind_contextvars(request_id=record.path)
        span = (
            None
            if tracing.TRACER is None
            else tracing.message_span(self.source.name, record.path, record.headers)
        )
        settled = await self._settle(record)
        tracing.finish(span, None if settled else "not settled; read again")
        return settled

    async def _settle(self, record: _Record) -> bool:
        source = self.source
        pipeline = self.pipeline
        call = Call("", record.headers, record.body)
        try:
            # A full writer queue: skip verifying and parsing what cannot be stored now.
            pipeline.store.check_ingest_room()
        except Overloaded as exc:
            return self._defer(exc)
        try:
            if len(record.body) > self.max_body:
                raise Reject(
                    413,
                    "body-too-large",
                    "Content Too Large",
                    f"the message value exceeds {self.max_body} bytes",
                )
            verify = self._require_signature or self._signature in record.headers
            parsed = pipeline.parse(source, self.provider, call, "ingest", verify=verify)
            event = pipeline.event(
                source,
                self.provider,
                call.headers,
                parsed,
                call.body,
                request_id=record.path,
                trace_context=tracing.current_traceparent(),
            )
            used = pipeline.consumption(parsed)
        except Reject as exc:
            return await self._refuse(record, exc)
        except Exception as exc:
            # Everything before the write depends on the message alone: it would fail the
            # same way on every reading, so it is refused (and recorded), never
            # read again forever.
            log.exception("message could not be handled", source=source.name, at=record.path)
            return await self._refuse(
                record,
                Reject(
                    422,
                    "unprocessable-message",
                    "Unprocessable Content",
                    f"the message could not be handled: {type(exc).__name__}: {exc}"[:500],
                ),
            )
        try:
            result = await pipeline.store.ingest(event, used)
        except Overloaded as exc:
            return self._defer(exc)
        except StoreError as exc:
            self._count("error")
            log.error("storage unavailable", source=source.name, at=record.path, error=str(exc))
            return False
        except Exception:
            # A failed write is not the message's fault as far as anyone knows: read it
            # again, never skip it.
            self._count("error")
            log.exception("message not stored", source=source.name, at=record.path)
            return False
        pipeline.stored(used, result)
        self._count("accepted" if result.stored else "duplicate")
        return True

    def _defer(self, exc: Overloaded) -> bool:
        """Not stored and not committed: read again after the store's Retry-After."""
        self._count("deferred")
        self._overloaded = max(self._overloaded, exc.retry_after)
        return False

    async def _refuse(self, record: _Record, exc: Reject) -> bool:
        """Record a refused message; True once recorded (its offset may be committed)."""
        self._count("rejected")
        try:
            return await self.pipeline.reject(
                self.source,
                self.provider,
                self.source.name,
                exc,
                method="KAFKA",
                path=record.path,
                headers=record.headers,
                remote=None,
                body=record.body,
                request_id=record.path,
            )
        except Exception:
            log.exception("refusal not recorded", source=self.source.name, at=record.path)
            return False

    def _count(self, outcome: str) -> None:
        child = self._counters.get(outcome)
        if child is None:
            child = self._counters[outcome] = self.metrics.kafka_messages.labels(
                self.source.name, outcome
            )
        child.inc()


async def start_kafka_sources(
    config: Config,
    store: Store,
    providers: Mapping[str, Provider[Any]],
    metrics: Metrics,
    decider: Decider,
    on_stored: Callable[[], None] | None = None,
    pipeline: Pipeline | None = None,
) -> list[KafkaSource]:
    """Start a consumer for every source that reads a Kafka topic (none: an empty list);
    `pipeline`: the one the HTTP edge uses, so both count refusals together."""
    pipeline = pipeline or Pipeline(config, store, decider, metrics, on_stored)
    started: list[KafkaSource] = []
    try:
        for source in config.sources:
            if providers[source.provider].via_kafka(source):
                assert isinstance(source, AmpecoSource)
                kafka = KafkaSource(
                    source,
                    providers[source.provider],
                    pipeline,
                    metrics,
                    max_body_bytes=config.server.max_body_bytes,
                )
                await kafka.start()
                started.append(kafka)
    except BaseException:
        await stop_kafka_sources(started)
        raise
    return started


async def stop_kafka_sources(sources: list[KafkaSource]) -> None:
    """Stop consumers together (each finishes and commits its batch first)."""
    await asyncio.gather(*(source.stop() for source in sources))
    if sources:
        # They share one pipeline: store its pending refusal counts once.
        await sources[0].pipeline.close()
