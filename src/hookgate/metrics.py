"""Prometheus metrics, registered once per process and exposed on /metrics.

Requests the HTTP/1.1 layer refuses before the application sees them (a Content-Length
beside a Transfer-Encoding, a bad chunk size, a header with a control character, a head
over the limits) never reach the ASGI app, so its counters miss them. The connection
layer (`ingress/edge.py`) counts them here with `count_protocol_error`, per process, and
every `Metrics` registry exports the tally as `hookgate_protocol_errors_total{reason}`;
likewise the requests it refuses at a source's in-flight cap (`count_edge_shed`,
`hookgate_edge_shed_total{source}`).
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ATTEMPT = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_lock = threading.Lock()
_counts: Tally[str] = Tally()


def count_protocol_error(reason: str) -> None:
    """One refused request; `reason` is a problem type code (a short, fixed text)."""
    with _lock:
        _counts[reason] += 1


def protocol_error_counts() -> dict[str, int]:
    """The tally so far, by reason."""
    with _lock:
        return dict(_counts)


_edge_shed: Tally[str] = Tally()


def count_edge_shed(source: str) -> None:
    """One request of `source` refused at its in-flight cap by the connection layer."""
    with _lock:
        _edge_shed[source] += 1


def edge_shed_counts() -> dict[str, int]:
    """Requests refused at the in-flight cap so far, by source."""
    with _lock:
        return dict(_edge_shed)


class ProtocolErrors(Collector):
    """Exports the process's tally in a registry."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hookgate_protocol_errors",
            "Requests refused by the HTTP/1.1 layer before the application saw them "
            "(unparseable, head over the limits), by reason.",
            labels=["reason"],
        )
        for reason, value in sorted(protocol_error_counts().items()):
            family.add_metric([reason], value)
        yield family
        shed = CounterMetricFamily(
            "hookgate_edge_shed",
            "Provider calls answered 503 + Retry-After as soon as their head was read, "
            "because their source had [server] ingest_in_flight_max requests in progress "
            "(the body never read), by source.",
            labels=["source"],
        )
        for source, value in sorted(edge_shed_counts().items()):
            shed.add_metric([source], value)
        yield shed


class Metrics:
    """The gateway's counters and histograms in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hookgate_requests_total",
            "Provider calls by source and outcome (accepted, duplicate, rejected, error).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "hookgate_rejections_total",
            "Rejected provider calls by source and reason.",
            ["source", "reason"],
            registry=self.registry,
        )
        self.schema_mismatches = Counter(
            "hookgate_schema_mismatches_total",
            "Authentic bodies that broke the schema and were quarantined (answered as "
            "accepted, held for reprocessing), by source and event type; resends included.",
            ["source", "event_type"],
            registry=self.registry,
        )
        self.unrecorded = Counter(
            "hookgate_rejections_unrecorded_total",
            "Rejected provider calls only counted, beyond the per-minute sample of full "
            "records ([storage] rejection_sample_per_minute), by source and reason.",
            ["source", "reason"],
            registry=self.registry,
        )
        self.shed = Counter(
            "hookgate_shed_total",
            "Provider calls answered 503 at once because the writer queue had no room for "
            "them (load shedding), by source.",
            ["source"],
            registry=self.registry,
        )
        self.queued_writes = Gauge(
            "hookgate_queued_writes",
            "Writes queued for the store's writer or in a batch not yet committed.",
            registry=self.registry,
        )
        self.ack_seconds = Histogram(
            "hookgate_ack_seconds",
            "Time from request to answer for provider calls.",
            ["provider"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.decisions = Counter(
            "hookgate_decisions_total",
            "Charging authorization decisions by source, result and fallback.",
            ["source", "result", "fallback"],
            registry=self.registry,
        )
        self.rechecks = Counter(
            "hookgate_decision_rechecks_total",
            "Approvals the store refused on re-checking a budget or session cap against "
            "every instance's sessions (decided again after a refresh).",
            ["source"],
            registry=self.registry,
        )
        self.processed = Counter(
            "hookgate_processed_events_total",
            "Events through the processing step by outcome (processed, failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.anomalies = Counter(
            "hookgate_anomalies_total",
            "Anomaly flags raised on charging sessions and parking transactions by "
            "processing, by source and flag (docs/views.md#anomaly-flags).",
            ["source", "flag"],
            registry=self.registry,
        )
        self.fetches = Counter(
            "hookgate_reference_fetches_total",
            "Objects read from a provider's API after a thin notification, by source, kind "
            "and outcome (fetched, retry, failed).",
            ["source", "kind", "outcome"],
            registry=self.registry,
        )
        self.registry.register(ProtocolErrors())
        self._children: dict[tuple[str, ...], Any] = {}
        self.commit_batch = Histogram(
            "hookgate_commit_batch_size",
            "Writes that shared one commit (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.kafka_messages = Counter(
            "hookgate_kafka_messages_total",
            "Messages read by Kafka sources, by source and outcome "
            "(accepted, duplicate, rejected, error, deferred: the writer queue was full, "
            "read again later).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.kafka_lag = Gauge(
            "hookgate_kafka_consumer_lag",
            "Messages of an assigned partition not yet committed (high watermark minus the "
            "committed offset; before a first commit, minus where the reset policy starts).",
            ["source", "topic", "partition"],
            registry=self.registry,
        )
        self.kafka_last_commit = Gauge(
            "hookgate_kafka_last_commit_timestamp_seconds",
            "When a Kafka source last committed offsets (Unix time).",
            ["source"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "hookgate_deliveries_total",
            "Delivery attempts by destination and outcome (delivered, failed, dead, gone).",
            ["destination", "outcome"],
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "hookgate_delivery_attempt_seconds",
            "Duration of one delivery attempt, by destination.",
            ["destination"],
            buckets=_ATTEMPT,
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "hookgate_destination_breaker_state",
            "Circuit breaker per destination: 0 closed, 1 half-open, 2 open.",
            ["destination"],
            registry=self.registry,
        )
        self.dead_deliveries = Counter(
            "hookgate_deliveries_dead_total",
            "Deliveries given up after their retry schedule, by destination.",
            ["destination"],
            registry=self.registry,
        )

        self.commit_seconds = Histogram(
            "hookgate_commit_seconds",
            "Time from handing a provider call's write to the store until its commit "
            "returned (writer queue wait included), by kind (ingest, session_start, "
            "session_end).",
            ["kind"],
            buckets=_LATENCY,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "hookgate_decision_fallbacks_total",
            "Zaptec starts answered by the source's on_error fallback, by source and cause "
            "(deadline: no decision in time; error: deciding or storage failed).",
            ["source", "cause"],
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "hookgate_storage_errors_total",
            "Storage failures by where they met the gateway (ingest: answered 503; "
            "processing, delivery, rejections, alerts).",
            ["where"],
            registry=self.registry,
        )
        self.backlog = Gauge(
            "hookgate_processing_backlog",
            "Received events not yet processed (counted up to 100,000), as of the last "
            "alert evaluation.",
            registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "hookgate_processing_oldest_pending_seconds",
            "Age of the oldest event waiting for processing (0: none waiting), as of the "
            "last alert evaluation.",
            registry=self.registry,
        )
        self.alerts_firing = Gauge(
            "hookgate_alerts_firing",
            "Alerts firing now by rule and severity (set by the instance that evaluates).",
            ["rule", "severity"],
            registry=self.registry,
        )
        self.alert_notifications = Counter(
            "hookgate_alert_notifications_total",
            "Alert notifications by notifier and outcome (sent, retried, failed: gave up).",
            ["notifier", "outcome"],
            registry=self.registry,
        )

    def storage_error_total(self) -> float:
        """Every storage failure this process counted so far (for the alert rule)."""
        total = 0.0
        for metric in self.storage_errors.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
        return total

    def request(self, source: str, outcome: str) -> None:
        """Count one provider call (label children cached: this runs on every request)."""
        child = self._children.get(("r", source, outcome))
        if child is None:
            child = self._children[("r", source, outcome)] = self.requests.labels(source, outcome)
        child.inc()

    def acknowledged(self, provider: str, seconds: float) -> None:
        """Observe one answer's latency."""
        child = self._children.get(("a", provider))
        if child is None:
            child = self._children[("a", provider)] = self.ack_seconds.labels(provider)
        child.observe(seconds)
