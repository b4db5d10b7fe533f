"""Requests the HTTP/1.1 layer refuses before the application sees them, counted.

A request uvicorn's parser cannot read (a Content-Length beside a Transfer-Encoding, a
bad chunk size, a header with a control character) or whose head is over the limits
never reaches the ASGI app, so the app's counters miss it. The connection layer
(`ingress/edge.py`) counts it here, per process, and every `Metrics` registry exports
the tally as `hookgate_protocol_errors_total{reason}`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def count(reason: str) -> None:
    """One refused request; `reason` is a problem type code (a short, fixed text)."""
    with _lock:
        _counts[reason] += 1


def counts() -> dict[str, int]:
    """The tally so far, by reason."""
    with _lock:
        return dict(_counts)


class ProtocolErrors(Collector):
    """Exports the process's tally in a registry."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hookgate_protocol_errors",
            "Requests refused by the HTTP/1.1 layer before the application saw them "
            "(unparseable, head over the limits), by reason.",
            labels=["reason"],
        )
        for reason, value in sorted(counts().items()):
            family.add_metric([reason], value)
        yield family
