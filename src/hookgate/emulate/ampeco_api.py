"""An emulator of AMPECO's public API for the objects thin notifications name (CDRs,
transactions, charge points), built from AMPECO's published OpenAPI document.

The routes, path parameter types and error answers (401, 404, 429 with their `message`
bodies and the `X-RateLimit-*` headers the document names) come from the document: an
operation the document lacks cannot be served. Objects are seeded by the caller (the
`sample_*` builders make ones that satisfy the document's schemas); faults are queued per
object, and a tenant rate limit answers 429 like AMPECO does. Every request is logged, so
a test can see what a client really did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from hookgate.providers.ampeco_api import PATHS

_CDR_LIST = "/public-api/resources/cdrs/v2.0"
DOCUMENT = Path(__file__).resolve().parents[3] / "contracts" / "ampeco" / "openapi-3.110.0.json"


@dataclass
class Logged:
    """One request as the emulator answered it."""

    method: str
    path: str
    status: int
    at: float
    authorization: str | None


@dataclass
class _Route:
    kind: str
    template: str
    pattern: re.Pattern[str]
    id_type: str
    errors: dict[int, str] = field(default_factory=dict)


def _routes(document: dict[str, Any]) -> list[_Route]:
    """The GET operations of `PATHS`, as the document defines them."""
    routes = []
    for kind, ours in PATHS.items():
        prefix = ours.split("{", 1)[0]
        template = next(
            (
                path
                for path in document["paths"]
                if path.startswith(prefix)
                and path.count("/") == ours.count("/")
                and "{" in path[len(prefix) :]
            ),
            None,
        )
        operation = document["paths"].get(template or "", {}).get("get")
        if template is None or operation is None:
            raise ValueError(f"the document has no GET {ours}")
        shared = document["paths"][template].get("parameters", [])
        parameter: dict[str, Any] = next(
            (p for p in (*shared, *operation.get("parameters", [])) if p.get("in") == "path"),
            {},
        )
        errors = {
            int(code): str(answer.get("description", ""))
            for code, answer in operation["responses"].items()
            if code.isdigit() and int(code) >= 400
        }
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "(?P<id>[^/]+)", template) + "$")
        routes.append(
            _Route(
                kind, template, pattern, parameter.get("schema", {}).get("type", "string"), errors
            )
        )
    return routes


class AmpecoApiEmulator:
    """One AMPECO tenant's API: bearer `token`, at most `rate_limit` requests per second
    (None: no limit)."""

    def __init__(
        self,
        token: str,
        *,
        rate_limit: int | None = None,
        document: Path = DOCUMENT,
    ) -> None:
        self.token = token
        self.rate_limit = rate_limit
        self.document: dict[str, Any] = json.loads(document.read_text())
        self.routes = _routes(self.document)
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.faults: dict[tuple[str, str], deque[tuple[int, float | None]]] = {}
        self.log: list[Logged] = []
        self._window: deque[float] = deque()
        self._lock = threading.Lock()

    # -- what the tenant holds ----------------------------------------------------------

    def put(self, kind: str, object_id: int | str, body: dict[str, Any]) -> None:
        """Serve `body` (the whole response document) for `kind` `object_id`."""
        self.objects[(kind, str(object_id))] = body

    def fail(
        self, kind: str, object_id: int | str, status: int, retry_after: float | None = None
    ) -> None:
        """Answer the next request for the object with `status` (queued in order)."""
        self.faults.setdefault((kind, str(object_id)), deque()).append((status, retry_after))

    def requests_for(self, kind: str, object_id: int | str) -> list[Logged]:
        route = next(r for r in self.routes if r.kind == kind)
        path = route.template.split("{", 1)[0] + str(object_id)
        return [entry for entry in self.log if entry.path == path]

    # -- the ASGI app -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                await send({"type": f"{message['type']}.complete"})
                message = await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        response = self._answer(request)
        with self._lock:
            self.log.append(
                Logged(
                    request.method,
                    request.url.path,
                    response.status_code,
                    time.monotonic(),
                    request.headers.get("authorization"),
                )
            )
        await response(scope, receive, send)

    def _answer(self, request: Request) -> JSONResponse:
        path = request.url.path
        if path == _CDR_LIST and request.method == "GET":
            return self._cdr_listing(request)
        match = next(
            ((route, m) for route in self.routes if (m := route.pattern.match(path))), None
        )
        if match is None or request.method != "GET":
            return JSONResponse({"message": "Not Found"}, status_code=404)
        route, found = match
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Unauthenticated."}, status_code=401)
        limited = self._rate_limited()
        if limited is not None:
            return limited
        object_id = found.group("id")
        if route.id_type == "integer" and not (object_id.isascii() and object_id.isdigit()):
            return JSONResponse({"message": "Not Found"}, status_code=404)
        faults = self.faults.get((route.kind, object_id))
        if faults:
            status, retry_after = faults.popleft()
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            message = route.errors.get(status, "Server Error")
            return JSONResponse({"message": message}, status_code=status, headers=headers)
        body = self.objects.get((route.kind, object_id))
        if body is None:
            return JSONResponse({"message": f"No query results for {route.kind}"}, 404)
        return JSONResponse(body)

    def _cdr_listing(self, request: Request) -> JSONResponse:
        """`GET /public-api/resources/cdrs/v2.0?filter[roamingId]=...` (one page)."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return JSONResponse({"message": "Unauthenticated."}, status_code=401)
        limited = self._rate_limited()
        if limited is not None:
            return limited
        wanted = request.query_params.get("filter[roamingId]")
        items = [
            body["data"]
            for (kind, _), body in sorted(self.objects.items())
            if kind == "cdr" and (wanted is None or body["data"].get("roamingId") == wanted)
        ]
        faults = self.faults.get(("cdr", wanted or ""))
        if faults:
            status, retry_after = faults.popleft()
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            return JSONResponse({"message": "Server Error"}, status_code=status, headers=headers)
        return JSONResponse(
            {
                "data": items[:100],
                "links": {"first": None, "last": None, "prev": None, "next": None},
                "meta": {"path": _CDR_LIST, "per_page": 100, "next_cursor": None},
            }
        )

    def _rate_limited(self) -> JSONResponse | None:
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                headers = {
                    "X-RateLimit-Limit": str(self.rate_limit),
                    "X-RateLimit-Remaining": "0",
                    "Retry-After": "1",
                }
                return JSONResponse(
                    {"message": "Too Many Attempts."}, status_code=429, headers=headers
                )
            self._window.append(now)
        return None

    # -- serving ------------------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on 127.0.0.1 (a free port) in a thread; yields the base URL."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(self, log_config=None, access_log=False, loop="asyncio")
        )
        thread = threading.Thread(target=lambda: asyncio.run(server.serve([sock])), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError("the AMPECO API emulator did not start")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


# -- objects shaped as the document's schemas -------------------------------------------


def sample_cdr(
    cdr_id: int,
    session_id: str,
    *,
    start: str = "2026-11-03T08:00:00Z",
    end: str = "2026-11-03T09:30:00Z",
    currency: str = "EUR",
    energy_kwh: float = 21.5,
    energy_cost: float = 6.45,
    time_cost: float = 1.5,
    fixed_cost: float = 0.5,
    total_cost: float | None = None,
    token_uid: str = "04A2B3C4D5E6F7",  # noqa: S107 (an RFID uid)
    roaming_id: str | None = None,
    credit: bool = False,
) -> dict[str, Any]:
    """A local OCPI 2.2 CDR as `GET /public-api/resources/cdrs/v2.0/{cdr}` returns it."""
    total = total_cost if total_cost is not None else round(energy_cost + time_cost + fixed_cost, 2)
    return {
        "data": {
            "id": cdr_id,
            "operatorId": 1,
            "platformId": 1,
            "protocolType": "OCPI",
            "sessionId": session_id,
            "receivedAt": end,
            "startTime": start,
            "endTime": end,
            "isLocal": True,
            "credit": credit,
            "roamingId": roaming_id or f"DE-AMP-{cdr_id:010d}",
            "ocpiData": {
                "version": "2.2",
                "cdrToken": {"uid": token_uid, "type": "RFID", "contract_id": "NL-ACM-C12345678"},
                "authMethod": "WHITELIST",
                "currency": currency,
                "totalCost": total,
                "totalFixedCost": fixed_cost,
                "totalEnergy": energy_kwh,
                "totalEnergyCost": energy_cost,
                "totalTime": 1.5,
                "totalTimeCost": time_cost,
                "totalParkingTime": 0,
                "totalParkingCost": 0,
            },
        }
    }


def sample_transaction(
    transaction_id: int,
    session_id: int | None,
    *,
    status: str = "finalized",
    amount: float = 8.45,
    currency: str = "EUR",
) -> dict[str, Any]:
    """A payment as `GET /public-api/resources/transactions/v1.0/{transaction}` returns it."""
    return {
        "id": transaction_id,
        "number": f"T-{transaction_id}",
        "date": "2026-11-03T09:31:00Z",
        "userId": 77,
        "userEmail": "driver@example.com",
        "sessionId": session_id,
        "purchaseResourceType": "session",
        "purchaseResourceId": session_id,
        "totalAmount": amount,
        "currency": currency,
        "status": status,
        "ref": f"ref-{transaction_id}",
        "billingType": "internal",
        "lastUpdatedAt": "2026-11-03T09:32:00Z",
        "finalizedAt": "2026-11-03T09:32:00Z" if status == "finalized" else None,
    }


def sample_charge_point(charge_point_id: int, *, name: str = "Depot 1") -> dict[str, Any]:
    """A charge point as `GET /public-api/resources/charge-points/v2.0/{chargePoint}`."""
    return {
        "data": {
            "id": charge_point_id,
            "name": name,
            "type": "private",
            "status": "enabled",
            "network": {"id": f"CP{charge_point_id}", "protocol": "ocpp 1.6"},
            "security": {"currentProfile": 0},
            "networkStatus": "available",
            "hardwareStatus": "available",
            "autoStartWithoutAuthorization": False,
            "disableAutoStartEmulation": False,
            "enableAutoFaultRecovery": True,
            "communicationMode": "direct_ocpp",
            "lastUpdatedAt": "2026-11-03T07:00:00Z",
            "locationId": 12,
        }
    }
