"""What the admin API's framework costs: one guarded, validated list endpoint
(`GET /api/v1/events?status=failed&limit=20`, bearer token, enum and range checks)
driven in-process over ASGI, hookgate's Starlette + msgspec contract against Litestar
(msgspec-native, OpenAPI from handler signatures); and the import time and memory each
adds. ADR 0021 records the figures.

    .venv/bin/python bench/admin_framework.py hookgate
    # Litestar is not a dependency: measure it from a separate environment
    uv venv /tmp/ls && uv pip install --python /tmp/ls/bin/python litestar==2.25.0
    /tmp/ls/bin/python bench/admin_framework.py litestar
    /tmp/ls/bin/python bench/admin_framework.py imports litestar
    .venv/bin/python bench/admin_framework.py imports starlette.applications

Run the two side by side and compare ratios; absolute figures depend on the machine.
"""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PATH = "/api/v1/events"
QUERY = b"status=failed&limit=20"
IMPORT = (
    "import time, resource, json\n"
    "t = time.perf_counter()\n"
    "import {mod}\n"
    "print(json.dumps({{'s': time.perf_counter() - t, "
    "'rss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))\n"
)


def imports(module: str, runs: int = 5) -> tuple[float, float]:
    """Best import time (s) and peak RSS (MiB) of a fresh interpreter importing `module`."""
    found = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT.format(mod=module)],
            capture_output=True,
            text=True,
            check=True,
        )
        found.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return min(r["s"] for r in found), min(r["rss_kb"] for r in found) / 1024


async def per_request(app: Any, n: int) -> float:
    """Mean seconds per request of `app` over `n` requests after a warm-up."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": QUERY,
        "root_path": "",
        "headers": [(b"authorization", b"Bearer secret"), (b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
        "state": {},
    }
    for _ in range(200):
        await app(dict(scope), receive, send)
    assert sent[0]["status"] == 200, sent[:2]
    started = time.perf_counter()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.perf_counter() - started) / n


def hookgate_app() -> Any:
    sys.path.insert(0, str(Path(__file__).parents[1] / "src"))
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from hookgate.admin import schemas
    from hookgate.admin.api import AdminApi, json_response
    from hookgate.admin.contract import Operation, query_of
    from hookgate.config import AdminToken

    admin = AdminApi(lambda: None, [AdminToken(name="bench", token="secret", scope="read")])  # type: ignore[arg-type,return-value]

    async def events(request: Request) -> Response:
        q = query_of(request, schemas.EventsQuery)
        return json_response({"items": [{"id": "x", "status": q.status}], "next": None})

    operation = Operation(
        "GET",
        PATH,
        events,
        "listEvents",
        "List events",
        "events",
        query=schemas.EventsQuery,
        answer=schemas.Page[schemas.Event],
    )
    return Starlette(routes=admin.routes_of([operation]))


def litestar_app() -> Any:
    from typing import Annotated, Literal

    import msgspec
    from litestar import Litestar, get  # type: ignore[import-not-found]
    from litestar.exceptions import NotAuthorizedException  # type: ignore[import-not-found]
    from litestar.params import Parameter  # type: ignore[import-not-found]

    def guard(connection: Any, _: Any) -> None:
        if connection.headers.get("authorization") != "Bearer secret":
            raise NotAuthorizedException()

    class Page(msgspec.Struct):
        items: list[dict[str, Any]]
        next: str | None

    @get(PATH, guards=[guard])  # type: ignore[misc]
    async def events(
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        cursor: str | None = None,
        source: str | None = None,
        provider: str | None = None,
        type: str | None = None,
        status: Literal["received", "processed", "failed", "quarantined"] | None = None,
        since: str | None = None,
    ) -> Page:
        return Page(items=[{"id": "x", "status": status}], next=None)

    return Litestar([events], debug=False)


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "hookgate"
    if which == "imports":
        for module in sys.argv[2:]:
            seconds, rss = imports(module)
            print(f"import {module}: {seconds * 1000:.0f} ms, peak RSS {rss:.1f} MiB")
        return
    app = hookgate_app() if which == "hookgate" else litestar_app()
    seconds = asyncio.run(per_request(app, 20_000))
    print(f"{which}: {seconds * 1e6:.1f} us per request")


if __name__ == "__main__":
    main()
