"""A real `hookgate serve` with the console log: control characters in a URL reach the log
escaped, and requests its HTTP parser refuses are answered with problem+json, counted and
logged."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from support.e2e import Server, free_port, migrate, write_config
from support.polling import until

pytestmark = pytest.mark.e2e


def _raw(port: int, request: bytes) -> bytes:
    """Send `request` as is and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_control_characters_and_protocol_errors(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path, port=port, logging={"level": "info", "format": "console", "access_log": True}
    )
    migrate(config)
    server = Server(config, port=port)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            answer = client.post("/hooks/x%1b%5b31mRED%e2%80%ae", content=b"{}")
            assert answer.status_code == 404
        smuggled = _raw(
            port,
            b"POST /hooks/easypark HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        head, _, body = smuggled.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), smuggled
        assert b"content-type: application/problem+json" in head.lower()
        problem = json.loads(body)
        assert problem["status"] == 400 and problem["type"].endswith(":bad-request")
        assert "not valid HTTP/1.1" in problem["detail"]
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert 'hookgate_protocol_errors_total{reason="bad-request"} 1.0' in metrics
        until(lambda: "invalid HTTP request refused" in server.stderr(), "the refusal logged")
    finally:
        assert server.stop() == 0
        server.kill()
    log = server.err_path.read_bytes()
    assert b"request rejected" in log
    assert b"\x1b" not in log and "\u202e".encode() not in log
    assert b"\\x1b[31mRED\\u202e" in log
