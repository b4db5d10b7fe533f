"""Rule management under /api/v1: tokens, groups, charger rules and budgets.

The handlers read the request and render the answer; what a write may do (the
configuration file's entities are read-only, references must exist, a group in use stays,
budgets go with their owner) is the rules service's, shared with the command line. Its
refusals are answered by the admin guard (`409 managed-by-config`, `422 unknown-group`...).
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import quote

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hookgate.admin import schemas
from hookgate.admin.api import QUERY, AdminApi, ApiError, json_response, refuse_nul
from hookgate.admin.contract import Operation
from hookgate.authorization.service import Entity
from hookgate.domain.errors import Conflict, Unprocessable
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
from hookgate.store.paging import decode_cursor, encode_cursor

MAX_BODY = 256 * 1024
_decoder = msgspec.json.Decoder(float_hook=Decimal)  # keep "12.5" exact for Decimal fields


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
        refuse_nul(doc)
        if doc.get("managed_by", "api") not in ("api", "config"):
            # Echoed from an answer it is ignored, but it must still be one of its values.
            raise Unprocessable(
                "managed_by must be api or config (it is set by hookgate)",
                code="invalid-entity",
                field="managed_by",
            )
        return doc

    @staticmethod
    def _path_key(spec: Kind, request: Request) -> str:
        raw = request.path_params["key"]
        if spec in (TOKENS, GROUPS) and raw.endswith(("/block", "/unblock")):
            action = raw.rsplit("/", 1)[1]
            raise ApiError(
                405,
                "method-not-allowed",
                f"{request.method} is not allowed on .../{action}: POST {action}s the {spec.noun}",
                {"Allow": "POST"},
            )
        return spec.key(raw)

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
        q: Any = request.scope[QUERY]
        after = decode_cursor(q.cursor) if q.cursor else None
        wanted = {name: str(getattr(q, name)) for name in spec.filters if getattr(q, name)}
        page, following = await self._rules.page(spec, wanted, after, q.limit)
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

    async def _status(self, spec: Kind, request: Request, *, status: str) -> Response:
        entity, _ = await self._rules.set_status(spec, self._path_key(spec, request), status)
        assert isinstance(entity, Token | Group)
        return json_response(self._out(entity))

    async def _delete(self, spec: Kind, request: Request) -> Response:
        await self._rules.remove(spec, self._path_key(spec, request))
        return Response(status_code=204)

    # -- operations --------------------------------------------------------------------

    def operations(self) -> list[Operation]:
        """Tokens, groups, charger rules and budgets: list, create, get, replace, update,
        delete; tokens and groups also block and unblock."""
        out: list[Operation] = []
        for spec in KINDS:
            base = f"/api/v1/{spec.path}"
            item = base + "/{key:path}"
            noun = spec.noun
            name = "".join(w.title() for w in noun.split())
            entity = schemas.ENTITIES[spec.path]
            answer = schemas.ENTITY_ANSWERS[spec.path]
            errors = (409, 413, 422)
            # `/tokens/x/block` is the action; other methods on it get 405, not the entity.
            item_errors = (405,) if spec in (TOKENS, GROUPS) else ()
            if spec in (TOKENS, GROUPS):
                for verb, status in (("block", "blocked"), ("unblock", "valid")):
                    out.append(
                        Operation(
                            "POST",
                            f"{item}/{verb}",
                            partial(self._status, spec, status=status),
                            f"{verb}{name}",
                            f"{verb.title()} a {noun}",
                            "rules",
                            answer=answer,
                            errors=(409,),
                        )
                    )
            out += [
                Operation(
                    "GET",
                    base,
                    partial(self._list, spec),
                    f"list{name}s",
                    f"List {noun}s",
                    "rules",
                    query=schemas.RULE_QUERIES[spec.path],
                    answer=schemas.Page[answer],  # type: ignore[valid-type]
                ),
                Operation(
                    "POST",
                    base,
                    partial(self._create, spec),
                    f"create{name}",
                    f"Create a {noun}",
                    "rules",
                    body=entity,
                    body_required=True,
                    answer=answer,
                    status=201,
                    errors=errors,
                ),
                Operation(
                    "GET",
                    item,
                    partial(self._get, spec),
                    f"get{name}",
                    f"Get a {noun}",
                    "rules",
                    answer=answer,
                    errors=item_errors,
                ),
                Operation(
                    "PUT",
                    item,
                    partial(self._put, spec),
                    f"replace{name}",
                    f"Create or replace a {noun}",
                    "rules",
                    description=f"The body is a {noun} as `create{name}` takes it; its "
                    f"`{spec.key_field}` may be left out (the path gives it).",
                    body=dict[str, Any],
                    body_required=True,
                    answer=answer,
                    also=(201,),
                    errors=(*errors, *item_errors),
                ),
                Operation(
                    "PATCH",
                    item,
                    partial(self._patch, spec),
                    f"update{name}",
                    f"Change some fields of a {noun}",
                    "rules",
                    body=dict[str, Any],
                    body_required=True,
                    answer=answer,
                    errors=(*errors, *item_errors),
                    description="The body holds only the fields to change.",
                ),
                Operation(
                    "DELETE",
                    item,
                    partial(self._delete, spec),
                    f"delete{name}",
                    f"Delete a {noun}",
                    "rules",
                    status=204,
                    errors=(409, *item_errors),
                ),
            ]
        return out
