"""The ceiling peer: a bare ASGI app that drains the body and answers 200 `{}`.

It does no parsing, no verification and no storage, so it measures what the server stack
alone (uvicorn + uvloop + httptools, the stack `hookgate serve` runs on) costs per request
on this machine. Served exactly like the other peers:

    .venv/bin/python -m uvicorn ceiling:app --app-dir bench/peers --host 127.0.0.1 \
        --port 8000 --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]

_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"2")]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"{}"})
