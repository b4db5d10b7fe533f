"""An ASGI app served by uvicorn in a thread of the test process, on a real socket."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from support.polling import until


@contextlib.contextmanager
def in_thread(server: uvicorn.Server, **run: Any) -> Iterator[int]:
    """Run `server` in a daemon thread until the block ends; yields its port once it is
    listening (`run` goes to `server.run`, e.g. `sockets`)."""
    thread = threading.Thread(target=server.run, kwargs=run, daemon=True)
    thread.start()
    until(lambda: server.started or not thread.is_alive(), "the server to start")
    if not server.started:
        raise RuntimeError("the server did not start (its thread ended)")
    try:
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)
