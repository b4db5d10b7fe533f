"""Emulators -> `hookgate serve` -> destinations: a receiver that verifies every delivery
with the official `standardwebhooks` package, and a worker killed mid-delivery."""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from support.e2e import Server, hookgate_cmd, migrate, query, run_cli, serving, write_config
from support.kafka import MockKafka
from support.polling import until
from support.receiver import receiver

pytestmark = [pytest.mark.e2e, pytest.mark.backends("sqlite", "postgresql")]

SECRET = "whsec_" + base64.b64encode(b"receiver-secret-for-e2e-tests!!").decode()


def _send(server: Server, config: Path, *args: str) -> str:
    result = run_cli("send", *args, "--url", server.url, "--config", str(config), cwd=config.parent)
    return result.stdout


def _delivered(db: str, destination: str) -> int:
    return int(
        query(
            db,
            "SELECT count(*) FROM deliveries WHERE destination = ? AND status = 'delivered'",
            destination,
        )[0][0]
    )


def _wait(predicate: Any, timeout: float = 30, what: str = "condition") -> None:
    until(predicate, what, timeout)


def test_every_accepted_event_reaches_a_verifying_receiver_once(
    tmp_path: Path, storage_url: str, kafka_mock: MockKafka
) -> None:
    with receiver(SECRET) as inbox:
        config = write_config(
            tmp_path,
            url=storage_url,
            destinations=[
                {"name": "erp", "kind": "http", "url": inbox.url, "secret": SECRET},
                {
                    "name": "lake",
                    "kind": "kafka",
                    "brokers": kafka_mock.bootstrap,
                    "topic": "hookgate-events",
                },
                {
                    "name": "parking-only",
                    "kind": "http",
                    "url": inbox.url.replace("/in", "/parking"),
                    "secret": SECRET,
                    "providers": ["easypark"],
                },
            ],
        )
        migrate(config)
        db = storage_url
        with serving(config) as server:
            _send(server, config, "ampeco")
            _send(server, config, "easypark", "--duplicate")
            _send(server, config, "ztlment", "payment")
            stored = int(query(db, "SELECT count(*) FROM inbox")[0][0])
            parking = int(query(db, "SELECT count(*) FROM inbox WHERE provider = 'easypark'")[0][0])
            inbox.wait_for(stored + parking)
            _wait(lambda: _delivered(db, "erp") == stored, what="erp deliveries recorded")
            _wait(lambda: _delivered(db, "lake") == stored, what="kafka deliveries recorded")
        records = kafka_mock.consume("hookgate-events", stored)
        assert len(records) == stored
        by_id = {}
        for record in records:
            headers = dict(record.headers() or [])
            assert headers["content-type"].startswith(b"application/cloudevents+json")
            envelope = json.loads(record.value())
            assert record.key() == (envelope.get("subject") or envelope["id"]).encode()
            by_id[envelope["id"]] = envelope
        assert inbox.invalid == 0
        types = Counter(r["envelope"]["type"] for r in inbox.requests)
        assert types["hookgate.easypark.parking.completed"] == 2 * parking
        assert any(t.startswith("hookgate.ampeco.") for t in types)
        assert any(t.startswith("hookgate.ztlment.payment.") for t in types)
        ids = {row[0] for row in query(db, "SELECT id FROM inbox")}
        assert {r["envelope"]["id"] for r in inbox.requests} == ids
        assert set(by_id) == ids
        for request in inbox.requests:
            envelope = request["envelope"]
            assert envelope["specversion"] == "1.0"
            assert envelope["id"] == request["webhook-id"]
            assert envelope["source"].startswith("/hookgate/sources/")
            assert envelope["datacontenttype"] == "application/json"
            assert {"time", "subject", "data"} <= set(envelope)


def test_a_worker_killed_mid_delivery_delivers_after_restart_once_for_the_receiver(
    tmp_path: Path, storage_url: str
) -> None:
    held: list[str] = []

    def hold_first(envelope: dict[str, Any]) -> tuple[int, float]:
        # The first attempt hangs long enough for the worker to be killed while waiting.
        if not held:
            held.append(envelope["id"])
            return 200, 3.0
        return 200, 0.0

    with receiver(SECRET) as inbox:
        inbox.behaviour = hold_first
        config = write_config(
            tmp_path,
            url=storage_url,
            processing={"in_process": False, "lease_seconds": 2, "poll_interval_ms": 100},
            destinations=[
                {
                    "name": "erp",
                    "kind": "http",
                    "url": inbox.url,
                    "secret": SECRET,
                    "timeout_seconds": 10,
                    "providers": ["easypark"],
                }
            ],
        )
        migrate(config)
        db = storage_url
        with serving(config) as server:
            _send(server, config, "easypark")
            first = _start_worker(config, tmp_path, "1")
            try:
                _wait(lambda: bool(held), what="the first delivery attempt")
                first.kill()
                first.wait()
            finally:
                if first.poll() is None:
                    first.kill()
            assert _delivered(db, "erp") == 0  # the attempt's outcome was never recorded
            second = _start_worker(config, tmp_path, "2")
            try:
                _wait(lambda: _delivered(db, "erp") == 1, what="the delivery after restart")
            finally:
                second.terminate()
                second.wait(15)
    assert inbox.ids() == [held[0], held[0]]  # sent twice ...
    assert list(inbox.processed) == [f"/hooks/in {held[0]}"]  # ... processed once


def _start_worker(config: Path, cwd: Path, tag: str) -> Any:
    import subprocess

    with open(cwd / f"worker-{tag}.stderr", "wb") as err:
        return subprocess.Popen(
            hookgate_cmd("worker", "--config", str(config)),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ},
        )
