"""Delivery of accepted events to the customer's systems (docs/adr/0006, docs/delivery.md).

Events become CloudEvents envelopes (`envelope`), the router picks the destinations whose
filter matches (`router`, inside the processing transaction), and the worker sends the
leased deliveries: HTTP signed per Standard Webhooks (`http`, `signing`) or Kafka in
structured mode (`kafka`), retried on a jittered schedule (`policy`) behind a
per-destination circuit breaker (`breaker`).
"""
