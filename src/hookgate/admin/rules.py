"""Rule management under /api/v1: tokens, groups, charger rules and budgets.

The handlers read the request and render the answer; what a write may do (the
configuration file's entities are read-only, references must exist, a group in use stays,
budgets go with their owner) is the rules service's, shared with the command line. Its
refusals are answered by the admin guard (`409 managed-by-config`, `422 unknown-group`...).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.admin.api import AdminApi, ApiError, json_response
from hookgate.authorization.service import Entity
from hookgate.domain.errors import BadCursor, Conflict, Unprocessable
from hookgate.domain.rules import Budget, Group, Token
from hookgate.services.rules import (
    GROUPS,
    KINDS,
    TOKENS,
    Kind,
    RulesService,
    document,
    validate,
)
from hookgate.store.rows import encode_cursor

MAX_BODY = 256 * 1024
_decoder = msgspec.json.Decoder(float_hook=Decimal)  # keep "12.5" exact for Decimal fields
Verb = Callable[[Kind, Request], Awaitable[Response]]


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None


class RulesApi:
    """CRUD handlers for the four rule kinds, behind the admin bearer guard."""

    def __init__(self, admin: AdminApi, rules: RulesService) -> None:
        self._admin = admin
        self._rules = rules

    # -- plumbing ----------------------------------------------------------------------

    def _out(self, entity: Entity, managed_by: str | None = None) -> dict[str, Any]:
        doc = document(entity, managed_by)
        if isinstance(entity, Budget):
            doc.update(self._rules.usage(entity))
        return doc

    def _created(self, spec: Kind, entity: Entity) -> Response:
        response = json_response(self._out(entity), 201)
        response.headers["Location"] = f"/api/v1/{spec.path}/{quote(spec.key_of(entity), safe='')}"
        return response

    @staticmethod
    async def _json(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, "body-too-large", f"the body is over {MAX_BODY} bytes")
        try:
            doc = _decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise ApiError(400, "malformed-json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiError(422, "invalid-entity", "the body must be a JSON object")
        return doc

    @staticmethod
    def _path_key(spec: Kind, request: Request) -> str:
        return spec.key(request.path_params["key"])

    @staticmethod
    def _same_key(spec: Kind, doc: dict[str, Any], key: str) -> dict[str, Any]:
        """Fill the key from the path, or 422 when the body names another one."""
        given = doc.get(spec.key_field)
        if given is None:
            return {**doc, spec.key_field: key}
        if not isinstance(given, str) or spec.key(given) != key:
            raise Unprocessable(
                f"{spec.key_field} in the body ({given!r}) differs from the path ({key!r})",
                code="id-mismatch",
                field=spec.key_field,
            )
        return doc

    # -- handlers ----------------------------------------------------------------------

    async def _list(self, spec: Kind, request: Request) -> Response:
        q = request.query_params
        limit = AdminApi._limit(request)
        after = _decode_cursor(q.get("cursor"))
        wanted = {name: q[name] for name in spec.filters if q.get(name)}
        page, following = await self._rules.page(spec, wanted, after, limit)
        cursor = encode_cursor(following) if following is not None else None
        items = [self._out(listed.entity, listed.managed_by) for listed in page]
        return json_response({"items": items, "next": cursor})

    async def _create(self, spec: Kind, request: Request) -> Response:
        entity = validate(spec, await self._json(request))
        key = spec.key_of(entity)
        try:
            await self._rules.create(spec, entity)
        except Conflict as exc:
            if exc.code != "already-exists":
                raise
            raise Conflict(
                f"{spec.noun} {key} exists: PUT or PATCH /api/v1/{spec.path}/{key} changes it",
                code="already-exists",
            ) from None
        return self._created(spec, entity)

    async def _get(self, spec: Kind, request: Request) -> Response:
        listed = await self._rules.get(spec, self._path_key(spec, request))
        return json_response(self._out(listed.entity, listed.managed_by))

    async def _put(self, spec: Kind, request: Request) -> Response:
        key = self._path_key(spec, request)
        entity = validate(spec, self._same_key(spec, await self._json(request), key))
        if not await self._rules.put(spec, entity):
            return self._created(spec, entity)
        return json_response(self._out(entity))

    async def _patch(self, spec: Kind, request: Request) -> Response:
        key = self._path_key(spec, request)
        changes = self._same_key(spec, await self._json(request), key)
        entity = await self._rules.patch(spec, key, changes)
        return json_response(self._out(entity))

    async def _status(self, spec: Kind, request: Request, status: str) -> Response:
        entity, _ = await self._rules.set_status(spec, self._path_key(spec, request), status)
        assert isinstance(entity, Token | Group)
        return json_response(self._out(entity))

    async def _delete(self, spec: Kind, request: Request) -> Response:
        await self._rules.remove(spec, self._path_key(spec, request))
        return Response(status_code=204)

    # -- routes ------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The /api/v1 routes of tokens, groups, rules and budgets."""
        out: list[Route] = []
        for spec in KINDS:
            base = f"/api/v1/{spec.path}"
            item = base + "/{key:path}"
            if spec in (TOKENS, GROUPS):
                out.append(self._route(f"{item}/block", spec, POST=self._block))
                out.append(self._route(f"{item}/unblock", spec, POST=self._unblock))
            out.append(self._route(base, spec, GET=self._list, POST=self._create))
            out.append(
                self._route(
                    item,
                    spec,
                    GET=self._get,
                    PUT=self._put,
                    PATCH=self._patch,
                    DELETE=self._delete,
                )
            )
        return out

    def _route(self, path: str, spec: Kind, **verbs: Verb) -> Route:
        """One guarded endpoint dispatching on the method (Starlette answers others 405)."""

        async def handler(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await verbs[method](spec, request)

        return Route(path, self._admin.guarded(handler), methods=list(verbs))

    async def _block(self, spec: Kind, request: Request) -> Response:
        return await self._status(spec, request, "blocked")

    async def _unblock(self, spec: Kind, request: Request) -> Response:
        return await self._status(spec, request, "valid")
