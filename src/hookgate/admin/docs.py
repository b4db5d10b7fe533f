"""The published contract: `GET /api/v1/openapi.json`, generated at start-up from the
operations the router serves, and `/api/docs`, Swagger UI over it from files shipped in
the package (admin/docs_ui), so the docs work without internet access."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate import __version__
from hookgate.admin.api import problem_response
from hookgate.admin.contract import Operation, build_document

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "init.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
}
DESCRIPTION = """\
The admin API of hookgate, a webhook gateway: the inbox, refused calls, charging
decisions, domain views, deliveries, rules and the audit log.

**Authentication**: `Authorization: Bearer <admin token>` with a token from
`[admin] tokens`. A `read` token may call every `GET`; changes need a `write` token
(`403` otherwise). Every change is recorded in the audit log (`GET /api/v1/audit`).

**Lists** all page the same way: `limit` (1 to 500, default 50) and `cursor`, the `next`
value of the previous answer; `next` is `null` on the last page. Items come newest first.

**Errors** under `/api` are `application/problem+json` (RFC 9457). A parameter that is
unknown or not valid is a `400` whose `parameter` names it and, for a fixed set of values,
`allowed` lists them.
"""
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hookgate admin API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="docs/assets/init.js"></script>
</body>
</html>
"""
# Only the gateway's own files; Swagger UI sets inline styles and shows data: images.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _asset(name: str) -> bytes:
    return resources.files("hookgate.admin").joinpath("docs_ui", name).read_bytes()


def contract_routes(operations: Sequence[Operation]) -> list[Route]:
    """The document and the docs pages, public (the contract holds no secret). The
    document describes itself too, so a client can find every operation from it."""
    encoded: list[bytes] = []

    async def openapi(_: Request) -> Response:
        if not encoded:
            document = build_document(
                [*operations, itself],
                title="hookgate admin API",
                version=__version__,
                description=DESCRIPTION,
            )
            encoded.append(msgspec.json.encode(document))
        return Response(encoded[0], media_type="application/json")

    itself = Operation(
        "GET",
        "/api/v1/openapi.json",
        openapi,
        "getOpenApi",
        "This document (OpenAPI 3.1)",
        "contract",
        answer=dict[str, Any],
        public=True,
    )

    async def page(_: Request) -> Response:
        return Response(
            _PAGE,
            media_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"},
        )

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return problem_response(404, "not-found", f"no docs asset named {name!r}")
        return Response(
            _asset(name),
            media_type=ASSETS[name],
            headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    return [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/api/docs", page, methods=["GET"]),
        Route("/api/docs/assets/{name}", asset, methods=["GET"]),
    ]
