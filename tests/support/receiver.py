"""A customer's webhook endpoint on 127.0.0.1: verifies every delivery with the official
`standardwebhooks` package and deduplicates on `webhook-id`, as a careful receiver would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from support.polling import Timeout, until

# Decides the answer to one delivery: (status, seconds to wait before answering).
Behaviour = Callable[[dict[str, Any]], tuple[int, float]]


@dataclass
class Receiver:
    """What arrived: every request, and the verified envelopes by "path webhook-id"."""

    url: str
    secret: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    invalid: int = 0
    behaviour: Behaviour = lambda envelope: (200, 0.0)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Until `count` distinct messages were processed."""
        try:
            until(lambda: len(self.processed) >= count, f"{count} messages", timeout)
        except Timeout:
            raise AssertionError(
                f"receiver processed {len(self.processed)} of {count} messages "
                f"({len(self.requests)} requests, {self.invalid} invalid)"
            ) from None

    def ids(self) -> list[str]:
        with self.lock:
            return [r["webhook-id"] for r in self.requests]


@contextmanager
def receiver(secret: str) -> Iterator[Receiver]:
    """Serve on a free port until the block ends."""
    verifier = Webhook(secret)
    state = Receiver(url="", secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verifier.verify(body, headers)
            except Exception:
                with state.lock:
                    state.invalid += 1
                self.send_response(401)
                self.end_headers()
                return
            envelope = json.loads(body)
            record = {
                "webhook-id": headers["webhook-id"],
                "path": self.path,
                "envelope": envelope,
                "headers": headers,
            }
            with state.lock:
                state.requests.append(record)
            status, delay = state.behaviour(envelope)
            if delay:
                time.sleep(delay)
            if 200 <= status < 300:
                with state.lock:
                    # Idempotent on webhook-id: a redelivery is acknowledged, not redone.
                    # (Each endpoint path stands for one receiving system.)
                    state.processed.setdefault(f"{self.path} {headers['webhook-id']}", envelope)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/in"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
