"""The OCPI 2.2.1 endpoints hookgate serves as an eMSP, under /ocpi/.

Every answer is the OCPI response envelope (`data`, `status_code`, `status_message`,
`timestamp`) with the spec's status codes: 1000 success, 2001 invalid or missing
parameters (HTTP 400), 2004 unknown token (HTTP 404), 3001 and 3002 when a CPO's own
endpoints cannot be used during registration; an unknown or missing credentials token is
HTTP 401, and a credentials method not allowed in the caller's state HTTP 405. The
X-Request-ID and X-Correlation-ID headers are echoed as the spec asks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

import msgspec
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.config import OcpiConfig
from hookgate.domain.errors import Unavailable
from hookgate.roaming.ocpi import models
from hookgate.roaming.ocpi.parties import Caller, HandshakeFailed, Parties
from hookgate.roaming.ocpi.tokens import MAX_LIMIT, TokenDesk, ocpi_time
from hookgate.timeutil import parse_iso, utcnow

log = structlog.get_logger("hookgate.ocpi")

PREFIX = "/ocpi"
SESSION = "{country_code}/{party_id}/{session_id}"
CDR = "{country_code}/{party_id}/{cdr_id}"
_encoder = msgspec.json.Encoder()
_ECHO = ("x-request-id", "x-correlation-id")
Handler = Callable[[Request], Awaitable[Response]]


class Failure(Exception):
    """An OCPI error answer: HTTP status, OCPI status code and message."""

    def __init__(self, http: int, status_code: int, message: str) -> None:
        super().__init__(message)
        self.http = http
        self.status_code = status_code
        self.message = message


def envelope(
    request: Request,
    data: Any = None,
    *,
    http: int = 200,
    status_code: int = 1000,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An OCPI response: the envelope, JSON, the request's ids echoed."""
    body = models.Response(
        data=data,
        status_code=status_code,
        status_message=message,
        timestamp=ocpi_time(utcnow()),
    )
    out = {k: v for k, v in request.headers.items() if k in _ECHO}
    out.update(headers or {})
    return Response(
        _encoder.encode(body), status_code=http, headers=out, media_type="application/json"
    )


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise Failure(400, 2001, f"invalid {kind.__name__} object: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Failure(400, 2001, f"the body is not JSON: {exc}") from None


def _instant(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise Failure(
            400, 2001, f"{name}={value!r} is not an RFC 3339 date-time (2026-01-31T12:00:00Z)"
        ) from None


def _count(request: Request, name: str, default: int, least: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    # ASCII digits only: str.isdigit() also holds for superscripts, which int() refuses,
    # and for other scripts' digits; past 9 digits no page exists.
    if not (value.isascii() and value.isdigit()) or len(value) > 9 or int(value) < least:
        raise Failure(400, 2001, f"{name}={value!r} must be a whole number of at least {least}")
    return int(value)


class OcpiApi:
    """The versions, credentials, tokens, sessions and cdrs endpoints."""

    def __init__(
        self, config: OcpiConfig, parties: Parties, desk: TokenDesk, max_body_bytes: int = 1 << 20
    ) -> None:
        self.config = config
        self.parties = parties
        self.desk = desk
        self.max_body_bytes = max_body_bytes

    async def body(self, request: Request) -> bytes:
        """The request body, refused with 413 past `[server] max_body_bytes` (read no
        further than that)."""
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise Failure(413, 2000, f"the body exceeds {self.max_body_bytes} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise Failure(413, 2000, f"the body exceeds {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def base(self, request: Request) -> str:
        """The URL CPOs reach hookgate's /ocpi at."""
        root = self.config.public_url.rstrip("/") or str(request.base_url).rstrip("/")
        return root + PREFIX

    def own_credentials(self, request: Request, token: str) -> Any:
        return msgspec.to_builtins(
            models.Credentials(
                token=token,
                url=f"{self.base(request)}/versions",
                roles=[
                    models.CredentialsRole(
                        role="EMSP",
                        business_details=models.BusinessDetails(name=self.config.business_name),
                        party_id=self.config.party_id,
                        country_code=self.config.country_code,
                    )
                ],
            )
        )

    def app(self) -> Starlette:
        def route(path: str, handler: Handler, method: str, *, registered: bool = True) -> Route:
            return Route(PREFIX + path, self._guard(handler, registered), methods=[method])

        return Starlette(
            routes=[
                route("/versions", self.versions, "GET", registered=False),
                route(f"/{models.VERSION}", self.details, "GET", registered=False),
                route(f"/{models.VERSION}/credentials", self.get_credentials, "GET"),
                route(
                    f"/{models.VERSION}/credentials",
                    self.post_credentials,
                    "POST",
                    registered=False,
                ),
                route(f"/{models.VERSION}/credentials", self.put_credentials, "PUT"),
                route(f"/{models.VERSION}/credentials", self.delete_credentials, "DELETE"),
                route(f"/{models.VERSION}/tokens", self.tokens, "GET"),
                route(f"/{models.VERSION}/tokens/{{uid}}/authorize", self.authorize, "POST"),
                route(f"/{models.VERSION}/sessions/{SESSION}", self.get_session, "GET"),
                route(f"/{models.VERSION}/sessions/{SESSION}", self.put_session, "PUT"),
                route(f"/{models.VERSION}/sessions/{SESSION}", self.patch_session, "PATCH"),
                route(f"/{models.VERSION}/cdrs", self.post_cdr, "POST"),
                route(f"/{models.VERSION}/cdrs/{CDR}", self.get_cdr, "GET"),
            ],
        )

    def _guard(self, handler: Handler, registered: bool) -> Handler:
        """Authenticate the caller (a registered party's token C; token A only where
        `registered` is False) and turn failures into OCPI answers."""

        async def run(request: Request) -> Response:
            try:
                caller = await self.parties.caller(request.headers.get("authorization"))
                if caller is None or (registered and caller.kind != "c"):
                    return envelope(
                        request,
                        http=401,
                        status_code=2000,
                        message="unknown or missing credentials token: send "
                        "'Authorization: Token <base64 of your token>'",
                    )
                request.state.caller = caller
                return await handler(request)
            except Failure as exc:
                return envelope(
                    request, http=exc.http, status_code=exc.status_code, message=exc.message
                )
            except Unavailable as exc:
                log.error("ocpi request failed in storage", path=request.url.path, error=str(exc))
                return envelope(
                    request,
                    http=503,
                    status_code=3000,
                    message="storage unavailable: nothing was recorded, try again",
                    headers={"Retry-After": str(max(1, int(exc.retry_after or 1)))},
                )

        return run

    # -- versions ------------------------------------------------------------------------

    async def versions(self, request: Request) -> Response:
        return envelope(
            request, [{"version": models.VERSION, "url": f"{self.base(request)}/{models.VERSION}"}]
        )

    async def details(self, request: Request) -> Response:
        root = f"{self.base(request)}/{models.VERSION}"
        endpoints = [
            ("credentials", "SENDER", "credentials"),
            ("tokens", "SENDER", "tokens"),
            ("sessions", "RECEIVER", "sessions"),
            ("cdrs", "RECEIVER", "cdrs"),
        ]
        return envelope(
            request,
            {
                "version": models.VERSION,
                "endpoints": [
                    {"identifier": module, "role": role, "url": f"{root}/{path}"}
                    for module, role, path in endpoints
                ],
            },
        )

    # -- credentials -----------------------------------------------------------------------

    async def get_credentials(self, request: Request) -> Response:
        caller: Caller = request.state.caller
        return envelope(request, self.own_credentials(request, caller.token))

    async def post_credentials(self, request: Request) -> Response:
        caller: Caller = request.state.caller
        if caller.kind != "a":
            raise Failure(405, 2000, "already registered: update the credentials with PUT")
        return await self._register(request, caller)

    async def put_credentials(self, request: Request) -> Response:
        return await self._register(request, request.state.caller)

    async def _register(self, request: Request, caller: Caller) -> Response:
        theirs = _decode(await self.body(request), models.Credentials)
        try:
            token_c = await self.parties.register(caller, theirs)
        except HandshakeFailed as exc:
            log.warning("ocpi registration failed", party=caller.party.id, problem=exc.message)
            raise Failure(400, exc.status_code, exc.message) from None
        except LookupError:
            raise Failure(401, 2000, "the credentials token was used up meanwhile") from None
        log.info("ocpi party registered", party=caller.party.id, url=theirs.url)
        return envelope(request, self.own_credentials(request, token_c))

    async def delete_credentials(self, request: Request) -> Response:
        caller: Caller = request.state.caller
        await self.parties.unregister(caller.party.id)
        log.info("ocpi party unregistered", party=caller.party.id)
        return envelope(request)

    # -- tokens ---------------------------------------------------------------------------

    async def tokens(self, request: Request) -> Response:
        date_from = _instant(request, "date_from")
        date_to = _instant(request, "date_to")
        offset = _count(request, "offset", 0, 0)
        limit = min(_count(request, "limit", MAX_LIMIT, 1), MAX_LIMIT)
        total, page = await self.desk.page(date_from, date_to, offset, limit)
        headers = {"X-Total-Count": str(total), "X-Limit": str(MAX_LIMIT)}
        if offset + len(page) < total:
            query = {k: v for k, v in request.query_params.items() if k not in ("offset", "limit")}
            query.update(offset=str(offset + len(page)), limit=str(limit))
            url = f"{self.base(request)}/{models.VERSION}/tokens?{urlencode(query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return envelope(request, [msgspec.to_builtins(t) for t in page], headers=headers)

    async def authorize(self, request: Request) -> Response:
        caller: Caller = request.state.caller
        uid = request.path_params["uid"]
        token_type = request.query_params.get("type") or "RFID"
        if token_type not in ("AD_HOC_USER", "APP_USER", "OTHER", "RFID"):
            raise Failure(400, 2001, f"type={token_type!r} is not an OCPI TokenType")
        body = await self.body(request)
        location = _decode(body, models.LocationReferences) if body.strip() else None
        done = await self.desk.authorize(
            caller.party.id,
            uid,
            token_type,
            location,
            body,
            request.headers.get("x-request-id"),
        )
        if done.info is None:
            raise Failure(404, 2004, f"unknown token {uid} of type {token_type}")
        return envelope(request, msgspec.to_builtins(done.info))

    # -- sessions and cdrs (the CPO pushes them) ---------------------------------------------

    @staticmethod
    def _same_session(request: Request, session: models.Session) -> None:
        path = request.path_params
        if (session.country_code, session.party_id, session.id) != (
            path["country_code"],
            path["party_id"],
            path["session_id"],
        ):
            raise Failure(
                400, 2001, "the Session's country_code, party_id and id must match the URL"
            )

    async def get_session(self, request: Request) -> Response:
        path = request.path_params
        stored = await self.desk.stored_session(
            path["country_code"], path["party_id"], path["session_id"]
        )
        if stored is None:
            raise Failure(404, 2000, f"no session {path['session_id']} was received")
        return envelope(request, stored)

    async def put_session(self, request: Request) -> Response:
        body = await self.body(request)
        session = _decode(body, models.Session)
        self._same_session(request, session)
        await self.desk.session_update(session, body, msgspec.json.decode(body))
        return envelope(request)

    async def patch_session(self, request: Request) -> Response:
        """A partial update: the fields sent replace those of the last version received
        (`last_updated` is required, as the spec says)."""
        body = await self.body(request)
        changes = _decode(body, dict[str, Any])
        if "last_updated" not in changes:
            raise Failure(400, 2001, "a PATCH must carry last_updated")
        path = request.path_params
        stored = await self.desk.stored_session(
            path["country_code"], path["party_id"], path["session_id"]
        )
        if not isinstance(stored, dict):
            raise Failure(404, 2000, f"no session {path['session_id']} to update: PUT it first")
        merged = {**stored, **changes}
        session = _decode(msgspec.json.encode(merged), models.Session)
        self._same_session(request, session)
        await self.desk.session_update(session, body, merged)
        return envelope(request)

    async def post_cdr(self, request: Request) -> Response:
        body = await self.body(request)
        cdr = _decode(body, models.Cdr)
        await self.desk.cdr(cdr, body)
        where = f"{self.base(request)}/{models.VERSION}/cdrs/"
        where += "/".join(quote(part, safe="") for part in (cdr.country_code, cdr.party_id, cdr.id))
        return envelope(request, headers={"Location": where})

    async def get_cdr(self, request: Request) -> Response:
        path = request.path_params
        stored = await self.desk.stored_cdr(path["country_code"], path["party_id"], path["cdr_id"])
        if stored is None:
            raise Failure(404, 2000, f"no CDR {path['cdr_id']} was received")
        return envelope(request, stored)
