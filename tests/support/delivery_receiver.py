"""A real local webhook receiver for delivery tests: answers as scripted, verifies every
request with the official `standardwebhooks` package, and records what arrived."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook

from support.servers import in_thread

# Scripted answers: an HTTP status, or HANG (answer only after `hang_seconds`).
HANG = "hang"


@dataclass
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any = None
    error: str | None = None


@dataclass
class Receiver:
    """Answers the next scripted status per request (then `default`)."""

    secret: str | None = None
    script: list[int | str] = field(default_factory=list)
    default: int = 204
    hang_seconds: float = 5.0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _next(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record = Received(headers, body, verified=False)
        if self.secret is not None:
            try:
                record.payload = Webhook(self.secret).verify(body, headers)
                record.verified = True
            except Exception as exc:
                record.error = str(exc)
        self.received.append(record)
        answer = self._next()
        if answer == HANG:
            await asyncio.sleep(self.hang_seconds)
            answer = 204
        assert isinstance(answer, int)
        await send({"type": "http.response.start", "status": answer, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def serve(receiver: Receiver) -> Iterator[Receiver]:
    """Run `receiver` on 127.0.0.1 in a thread for the duration of the generator."""
    server = uvicorn.Server(
        uvicorn.Config(
            receiver,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            log_config=None,
            access_log=False,
            loop="asyncio",
            timeout_graceful_shutdown=0.2,
        )
    )
    with in_thread(server) as port:
        receiver.url = f"http://127.0.0.1:{port}/hooks"
        yield receiver


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a receiver that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
