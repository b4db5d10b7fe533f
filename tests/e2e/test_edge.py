"""The HTTP edge of a real `hookgate serve` under idle, slow and oversized clients, and
clients that offer an upgrade to h2c (curl --http2, Java's HttpClient)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import resource
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.e2e import LOOPBACK, Server, migrate, query, serving, write_config
from support.gateway import EASYPARK_USER, ZAPTEC_PASSWORD, ZAPTEC_USER, ZTLMENT_SECRET
from support.polling import until
from support.sockets import has_read_everything

pytestmark = pytest.mark.e2e


def _server(home: Path, **settings: Any) -> Path:
    config = write_config(
        home,
        server={"host": LOOPBACK, "port": 0, "max_body_bytes": 65536, **settings},
    )
    migrate(config)
    return config


def _signed(body: bytes) -> dict[str, str]:
    signature = hmac.new(ZTLMENT_SECRET.encode(), body, hashlib.sha512).hexdigest()
    return {"Content-Type": "application/json", "X-Payload-Signature": signature}


def _ztlment(client: httpx.Client, n: int) -> int:
    body = json.dumps({"id": n, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}).encode()
    return client.post("/hooks/ztlment", content=body, headers=_signed(body)).status_code


def _open_sockets(port: int, count: int, first: bytes = b"") -> list[socket.socket]:
    """`count` connections, each sending `first` as soon as it is open."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((LOOPBACK, port), timeout=10)
        if first:
            sock.sendall(first)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


_received: dict[int, bytes] = {}


def _closed_by_server(sock: socket.socket) -> bytes | None:
    """What the server sent before closing `sock`, or None while it is still open (what
    it has sent so far is kept for the next look)."""
    key = sock.fileno()
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return None
        except ConnectionResetError:
            return _received.pop(key, b"")
        if not chunk:
            return _received.pop(key, b"")
        _received[key] = _received.get(key, b"") + chunk


@contextlib.contextmanager
def _files_for(count: int) -> Iterator[None]:
    """Enough file descriptors for `count` sockets in this process and the server (which
    inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 512
    if soft >= wanted:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the open-file limit ({hard}) is below the {wanted} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_valid_calls_are_answered_while_1000_idle_or_slow_connections_are_open(
    tmp_path: Path,
) -> None:
    config = _server(
        tmp_path, idle_timeout_seconds=3, header_timeout_seconds=3, body_timeout_seconds=3
    )
    with _files_for(1000), serving(config) as server:
        idle = _open_sockets(server.port, 400)  # connect, then say nothing
        # Half a request head, then nothing.
        slow_head = _open_sockets(
            server.port, 300, b"POST /hooks/ztlment HTTP/1.1\r\nHost: x\r\nContent-Type: app"
        )
        # A signed head and one byte of the body, then nothing.
        slow_body = _open_sockets(
            server.port,
            300,
            b"POST /hooks/ztlment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Payload-Signature: 00\r\nContent-Length: 60\r\n\r\n{",
        )
        with httpx.Client(base_url=server.url, timeout=10) as client:
            statuses = [_ztlment(client, n) for n in range(20)]
            assert client.get("/healthz").status_code == 200
        assert statuses == [200] * 20
        # Answered before any slow connection reached its deadline: they did not wait.
        pending = {id(s): s for s in idle + slow_head + slow_body}
        early = [s for s in pending.values() if _closed_by_server(s) is not None]
        assert not early, f"{len(early)} connections closed before the valid calls were answered"

        # Every slow or idle connection is closed by its deadline; slow requests hear 408.
        answers: dict[int, bytes] = {}

        def all_closed() -> bool:
            for key, sock in list(pending.items()):
                answer = _closed_by_server(sock)
                if answer is not None:
                    answers[key] = answer
                    del pending[key]
            return not pending

        until(all_closed, "the server to close all 1000 connections", 60)
        assert all(answers[id(s)] == b"" for s in idle)
        slow = [answers[id(s)][:13] for s in slow_head + slow_body]
        assert slow == [b"HTTP/1.1 408 "] * 600, [a for a in slow if a != b"HTTP/1.1 408 "][:3]
        for sock in idle + slow_head + slow_body:
            sock.close()
        assert server.alive()


def test_connections_over_the_cap_displace_idle_ones_and_never_busy_ones(
    tmp_path: Path,
) -> None:
    config = _server(tmp_path, max_connections=16, idle_timeout_seconds=60)
    with serving(config) as server:
        idle = _open_sockets(server.port, 40)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert _ztlment(client, 1) == 200  # room is made by closing idle connections
        until(
            lambda: sum(1 for s in idle if _closed_by_server(s) is not None) >= 40 - 16,
            "idle connections closed to make room",
        )
        for sock in idle:
            sock.close()

        # Sixteen requests whose bodies are still arriving are busy, not displaceable:
        # a newcomer is told to come back.
        busy = _open_sockets(
            server.port,
            16,
            b"POST /hooks/ztlment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-Payload-Signature: 00\r\nContent-Length: 60\r\n\r\n{",
        )
        until(lambda: has_read_everything(server.port, 16), "the server to read the heads")
        with socket.create_connection((LOOPBACK, server.port), timeout=10) as late:
            answer = late.recv(65536)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"retry-after: 1" in answer.lower()
        for sock in busy:
            sock.close()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            until(
                lambda: client.get("/healthz").status_code == 200,
                "room for a new connection",
                ignoring=(httpx.TransportError,),
            )


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_oversized_headers_and_unauthenticated_bodies_do_not_grow_memory(
    tmp_path: Path,
) -> None:
    config = _server(tmp_path, max_body_bytes=1024 * 1024)
    with _files_for(1000), serving(config) as server:
        before = _rss_kib(server.pid)

        # A 100 MB header: refused after its first kilobytes, never buffered.
        sent = 0
        with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            chunk = b"a" * 65536
            with contextlib.suppress(OSError):
                while sent < 100 * 1024 * 1024:
                    sock.sendall(chunk)
                    sent += len(chunk)
        assert sent < 10 * 1024 * 1024, f"{sent} header bytes were taken"

        # 1,000 clients with a wrong password, each with 1 MiB of body all but sent (on
        # the unprotected server this took it from 59 MB to over 1 GB).
        head = (
            b"POST /hooks/easypark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Basic "
            + base64.b64encode(f"{EASYPARK_USER}:wrong".encode())
            + b"\r\nContent-Length: 1048576\r\n\r\n"
        )
        holders = []
        for _ in range(1000):
            sock = socket.create_connection((LOOPBACK, server.port), timeout=10)
            sock.sendall(head + b"x" * (1024 * 1024 - 1))
            holders.append(sock)
        answers = []
        for sock in holders:
            sock.settimeout(10)
            answers.append(sock.recv(12))
        grown = _rss_kib(server.pid) - before
        for sock in holders:
            sock.close()
        # 401, then 429 once this address has failed too often: never read, never kept.
        assert set(answers) <= {b"HTTP/1.1 401", b"HTTP/1.1 429"}, answers
        assert grown < 64 * 1024, f"the server grew by {grown} KiB"
        assert server.alive()


# -- Upgrade: h2c ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    home = tmp_path_factory.mktemp("edge")
    with serving(_server(home)) as server:
        yield server, home / "hookgate.db"


def _stored(db: Path, body: bytes) -> int:
    return len(
        query(db, "SELECT 1 FROM inbox WHERE body_sha256 = ?", hashlib.sha256(body).hexdigest())
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_plain_http_is_answered_as_http1(served: tuple[Server, Path]) -> None:
    server, db = served
    body = json.dumps({"id": 4242, "type": "PAYMENT_OBJECT", "state": "PROCESSED"}).encode()
    signature = _signed(body)["X-Payload-Signature"]
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"X-Payload-Signature: {signature}",
            "--data-binary",
            body.decode(),
            f"{server.url}/hooks/ztlment",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.splitlines()[-1] == "200 1.1", out.stdout + out.stderr
    assert _stored(db, body) == 1
    token = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--data",
            f"grant_type=password&username={ZAPTEC_USER}&password={ZAPTEC_PASSWORD}",
            f"{server.url}/hooks/zaptec/oauth/token",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = token.stdout.splitlines()
    assert lines[-1] == "200", token.stdout + token.stderr
    assert json.loads(lines[0])["token_type"] == "Bearer"


_JAVA = """
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public class Post {
    public static void main(String[] args) throws Exception {
        String base = args[0], secret = args[1], user = args[2], password = args[3];
        // The default client: HTTP/2 preferred, so an http:// URL is sent with Upgrade: h2c.
        HttpClient client = HttpClient.newHttpClient();
        for (int id = 9001; id <= 9003; id++) {
            String body = "{\\"id\\":" + id
                + ",\\"type\\":\\"PAYMENT_OBJECT\\",\\"state\\":\\"PROCESSED\\"}";
            Mac mac = Mac.getInstance("HmacSHA512");
            mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA512"));
            StringBuilder hex = new StringBuilder();
            for (byte b : mac.doFinal(body.getBytes(StandardCharsets.UTF_8))) {
                hex.append(String.format("%02x", b));
            }
            HttpRequest request = HttpRequest.newBuilder(URI.create(base + "/hooks/ztlment"))
                .header("Content-Type", "application/json")
                .header("X-Payload-Signature", hex.toString())
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
            HttpResponse<String> response =
                client.send(request, HttpResponse.BodyHandlers.ofString());
            System.out.println("ztlment " + response.statusCode() + " " + response.version());
        }
        String form = "grant_type=password&username="
            + URLEncoder.encode(user, StandardCharsets.UTF_8)
            + "&password=" + URLEncoder.encode(password, StandardCharsets.UTF_8);
        HttpRequest token = HttpRequest.newBuilder(URI.create(base + "/hooks/zaptec/oauth/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .POST(HttpRequest.BodyPublishers.ofString(form))
            .build();
        HttpResponse<String> answer =
            HttpClient.newHttpClient().send(token, HttpResponse.BodyHandlers.ofString());
        System.out.println("token " + answer.statusCode() + " " + answer.body());
    }
}
"""


def test_java_httpclient_defaults_are_answered(served: tuple[Server, Path], tmp_path: Path) -> None:
    javac, java = shutil.which("javac"), shutil.which("java")
    if javac is None or java is None:
        print("skipped: javac/java are not installed")
        pytest.skip("javac/java are not installed")
    server, db = served
    (tmp_path / "Post.java").write_text(_JAVA, encoding="utf-8")
    subprocess.run([javac, "Post.java"], cwd=tmp_path, check=True, timeout=120)
    run = subprocess.run(
        [
            java,
            "-cp",
            str(tmp_path),
            "Post",
            server.url,
            ZTLMENT_SECRET,
            ZAPTEC_USER,
            ZAPTEC_PASSWORD,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout + run.stderr
    assert lines[:3] == ["ztlment 200 HTTP_1_1"] * 3, run.stdout
    assert lines[3].startswith("token 200 "), run.stdout
    assert json.loads(lines[3].removeprefix("token 200 "))["token_type"] == "Bearer"
    for n in (9001, 9002, 9003):
        body = f'{{"id":{n},"type":"PAYMENT_OBJECT","state":"PROCESSED"}}'.encode()
        assert _stored(db, body) == 1


# -- X-Forwarded-For only from trusted proxies ----------------------------------------------


@pytest.mark.parametrize("trusted", [True, False])
def test_throttle_trusts_forwarded_addresses_only_from_allowed_proxies(
    tmp_path: Path, trusted: bool
) -> None:
    config = _server(
        tmp_path,
        auth_failure_limit=2,
        proxy_headers=True,
        forwarded_allow_ips=LOOPBACK if trusted else "192.0.2.1",
    )
    form = {"grant_type": "password", "username": ZAPTEC_USER, "password": "wrong"}
    with serving(config) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        statuses = [
            client.post(
                "/hooks/zaptec/oauth/token",
                data=form,
                headers={"X-Forwarded-For": f"198.51.100.{n}"},
            ).status_code
            for n in range(4)
        ]
    # Trusted: four addresses with one failure each. Untrusted: one address, four failures.
    assert statuses == ([400] * 4 if trusted else [400, 400, 429, 429])
