"""Rule management under /api/v1: tokens, groups, charger rules and budgets.

Every write goes through the store (one change-log entry per entity) and is then applied
to this instance's engine before the answer, so the change is in force here at once and
on every other instance within a refresh interval.

Entities written by the configuration file (`managed_by = "config"`) are read-only here:
a write answers `409 managed-by-config`.

The store helpers at the top (checks, `save_entity`, `remove_entity`) are shared with the
CLI (`hookgate tokens|groups|chargers|budgets ...`), so both keep the same invariants.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.admin.api import AdminApi, ApiError, Handler, json_response
from hookgate.authorization.engine import Engine
from hookgate.authorization.service import (
    AuthorizationService,
    Entity,
    from_entity,
    to_entity,
)
from hookgate.domain.errors import AlreadyExists, BadCursor
from hookgate.domain.rules import AuthEntity, Budget, ChargerRule, Group, Token, normalise_uid
from hookgate.ingress.problems import problem
from hookgate.store.base import Store
from hookgate.store.rows import encode_cursor

MAX_BODY = 256 * 1024
_SCAN = 500
# Fields a response adds that a request may echo back (a GET body can be PUT again).
USAGE = ("used", "reserved_kwh", "remaining", "active_sessions")
_decoder = msgspec.json.Decoder(float_hook=Decimal)  # keep "12.5" exact for Decimal fields
_AT = re.compile(r"at `\$\.?([^`]*)`")


class RuleError(ApiError):
    """An ApiError whose problem body carries extra members."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(status, code, detail)
        self.extra = extra


# -- entity kinds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """How one entity kind appears in the store and in URLs."""

    kind: str  # store kind
    path: str  # /api/v1/<path>
    type: type[Entity]
    key_field: str
    noun: str
    filters: tuple[str, ...]
    config_table: str  # where the configuration file lists this kind

    def key(self, raw: str) -> str:
        """The store key of a key given in a URL or a body (token uids are case-insensitive)."""
        return normalise_uid(raw) if self.kind == "token" else raw

    def key_of(self, entity: Entity) -> str:
        return str(getattr(entity, self.key_field))


TOKENS = Kind(
    "token",
    "tokens",
    Token,
    "uid",
    "token",
    ("group_id", "status", "type", "whitelist", "managed_by"),
    "[[authorization.tokens]]",
)
GROUPS = Kind(
    "group", "groups", Group, "id", "group", ("status", "managed_by"), "[[authorization.groups]]"
)
RULES = Kind(
    "charger",
    "rules",
    ChargerRule,
    "charger_id",
    "charger rule",
    ("mode", "group_id", "managed_by"),
    "[[authorization.chargers]]",
)
BUDGETS = Kind(
    "budget",
    "budgets",
    Budget,
    "id",
    "budget",
    ("subject", "subject_id", "metric", "period", "managed_by"),
    "[[authorization.budgets]]",
)
KINDS = (TOKENS, GROUPS, RULES, BUDGETS)
Verb = Callable[[Kind, Request], Awaitable[Response]]


# -- helpers shared with the CLI -------------------------------------------------------


def config_managed(spec: Kind, key: str) -> RuleError:
    """The refusal of a write to an entity the configuration file owns."""
    return RuleError(
        409,
        "managed-by-config",
        f"{spec.noun} {key} is managed by the configuration file ({spec.config_table}): "
        "change it there and restart hookgate",
    )


def document(entity: Entity, managed_by: str | None = None) -> dict[str, Any]:
    """An entity as JSON-ready builtins, with who manages it."""
    doc: dict[str, Any] = msgspec.to_builtins(entity)
    doc["managed_by"] = managed_by or entity.managed_by
    return doc


def validate(spec: Kind, doc: dict[str, Any]) -> Entity:
    """A JSON object as a typed, API-managed entity; 422 naming the field when invalid."""
    ignored = ("managed_by", *USAGE) if spec.kind == "budget" else ("managed_by",)
    doc = {k: v for k, v in doc.items() if k not in ignored}
    try:
        entity = msgspec.json.decode(msgspec.json.encode(doc), type=spec.type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _AT.search(message)
        # Checks of a whole entity carry no path; they name their field first.
        field = found.group(1) if found else message.split(" ", 1)[0]
        extra = {"field": field} if found or field in spec.type.__struct_fields__ else {}
        raise RuleError(422, "invalid-entity", message, **extra) from None
    if not spec.key_of(entity):
        raise RuleError(
            422, "invalid-entity", f"{spec.key_field} must not be blank", field=spec.key_field
        )
    entity.managed_by = "api"
    return entity


async def scan(store: Store, kind: str, after: str | None = None) -> list[AuthEntity]:
    """Every stored entity of a kind after `after`, in key order."""
    out: list[AuthEntity] = []
    while True:
        batch = await store.auth_list(kind, after, _SCAN)
        out.extend(batch)
        if len(batch) < _SCAN:
            return out
        after = batch[-1].key


async def budgets_of(
    store: Store, subject: str, subject_id: str
) -> list[tuple[AuthEntity, Budget]]:
    """The budgets that limit one token or group."""
    out = []
    for stored in await scan(store, "budget"):
        budget = from_entity("budget", stored.doc)
        assert isinstance(budget, Budget)
        if budget.subject == subject and budget.subject_id == subject_id:
            out.append((stored, budget))
    return out


async def group_users(store: Store, group_id: str) -> tuple[int, int]:
    """How many tokens belong to a group and how many chargers are reserved to it."""
    tokens = chargers = 0
    for stored in await scan(store, "token"):
        token = from_entity("token", stored.doc)
        tokens += isinstance(token, Token) and token.group_id == group_id
    for stored in await scan(store, "charger"):
        rule = from_entity("charger", stored.doc)
        chargers += isinstance(rule, ChargerRule) and rule.group_id == group_id
    return tokens, chargers


async def check_references(
    store: Store,
    spec: Kind,
    entity: Entity,
    sources: Collection[str] | None = None,
    groups: Collection[str] = (),
) -> None:
    """422 when the entity names a group, token or source that does not exist (`groups`:
    group ids known besides the stored ones, e.g. the configuration file's)."""
    group_id = getattr(entity, "group_id", None)
    if group_id and group_id not in groups and await store.auth_get("group", group_id) is None:
        raise RuleError(
            422,
            "unknown-group",
            f"group_id: there is no group {group_id}; create it first "
            "(POST /api/v1/groups or [[authorization.groups]] in the configuration)",
            field="group_id",
        )
    if isinstance(entity, Budget):
        owner = await store.auth_get(entity.subject, entity.subject_id)
        if owner is None:
            raise RuleError(
                422,
                "unknown-subject",
                f"subject_id: there is no {entity.subject} {entity.subject_id}",
                field="subject_id",
            )
    scope = getattr(entity, "scope", None)
    if scope is not None and sources is not None:
        for name in scope.sources:
            if name not in sources:
                raise RuleError(
                    422,
                    "unknown-source",
                    f"scope.sources: there is no zaptec source {name!r} (configured: "
                    f"{', '.join(sorted(sources)) or 'none'})",
                    field="scope.sources",
                )


async def save_entity(
    store: Store,
    spec: Kind,
    entity: Entity,
    *,
    replace: bool,
    sources: Collection[str] | None = None,
    groups: Collection[str] = (),
) -> bool:
    """Write an API-managed entity after the checks every writer applies: the
    configuration's entities are read-only, an existing one is replaced only when asked,
    references must exist. True when it replaced one."""
    key = spec.key_of(entity)
    existing = await store.auth_get(spec.kind, key)
    if existing is not None and existing.managed_by == "config":
        raise config_managed(spec, key)
    if existing is not None and not replace:
        raise RuleError(409, "already-exists", f"{spec.noun} {key} exists")
    await check_references(store, spec, entity, sources, groups)
    try:
        await store.auth_write([to_entity(spec.kind, entity)], [], create=not replace)
    except AlreadyExists:  # the read above gives the helpful answer; the key settles a race
        raise RuleError(409, "already-exists", f"{spec.noun} {key} exists") from None
    return existing is not None


async def remove_entity(store: Store, spec: Kind, stored: AuthEntity) -> int:
    """Delete an entity with what it owns, after the checks every writer applies: not one
    of the configuration's, and no group still in use. Returns the budgets removed."""
    key = stored.key
    if stored.managed_by == "config":
        raise config_managed(spec, key)
    if spec is GROUPS:
        tokens, chargers = await group_users(store, key)
        if tokens or chargers:
            raise RuleError(
                409,
                "group-in-use",
                f"group {key} is still used by {tokens} token(s) and reserved by "
                f"{chargers} charger rule(s): move or remove them first",
                tokens=tokens,
                chargers=chargers,
            )
    delete = [(spec.kind, key)]
    if spec in (TOKENS, GROUPS):
        delete += [
            ("budget", owned.key)
            for owned, _budget in await budgets_of(store, spec.kind, key)
            if owned.managed_by != "config"
        ]
    return await store.auth_write([], delete) - 1


def usage(engine: Engine, budget: Budget, now: datetime) -> dict[str, Any]:
    """A budget's current period as the engine counts it."""
    subject = (budget.subject, budget.subject_id)
    used = engine.used(subject, budget, now)
    count, held = engine.reserved(subject, now)
    if budget.metric == "kwh":
        remaining = max(Decimal(0), budget.limit - used - held)
    else:
        remaining = max(Decimal(0), budget.limit - used)
    return {
        "used": str(used),
        "reserved_kwh": str(held),
        "remaining": str(remaining),
        "active_sessions": count,
    }


def _decode_cursor(cursor: str | None) -> str | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None


# -- the API ---------------------------------------------------------------------------


class RulesApi:
    """CRUD handlers for the four rule kinds, behind the admin bearer guard."""

    def __init__(
        self,
        admin: AdminApi,
        store_ref: Callable[[], Store],
        service_ref: Callable[[], AuthorizationService | None],
        sources: Collection[str] | None = None,
    ) -> None:
        self._admin = admin
        self._store = store_ref
        self._service_ref = service_ref
        self._sources = sources

    # -- plumbing ----------------------------------------------------------------------

    def _service(self) -> AuthorizationService:
        service = self._service_ref()
        if service is None:
            raise ApiError(503, "not-ready", "the authorization engine is not running yet")
        return service

    def _guard(self, handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except RuleError as exc:
                return Response(
                    problem(exc.status, exc.code, exc.detail, **exc.extra),
                    exc.status,
                    media_type="application/problem+json",
                )

        return self._admin.guarded(run)

    async def _write(self, entities: list[AuthEntity], *, create: bool = False) -> None:
        await self._store().auth_write(entities, [], create=create)
        await self._service().refresh()

    def _out(self, spec: Kind, entity: Entity, managed_by: str | None = None) -> dict[str, Any]:
        doc = document(entity, managed_by)
        if isinstance(entity, Budget):
            service = self._service()
            doc.update(usage(service.engine, entity, service.clock()))
        return doc

    def _created(self, spec: Kind, entity: Entity) -> Response:
        response = json_response(self._out(spec, entity), 201)
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

    async def _current(self, spec: Kind, key: str) -> tuple[AuthEntity, Entity]:
        stored = await self._store().auth_get(spec.kind, key)
        if stored is None:
            raise ApiError(404, "not-found", f"there is no {spec.noun} {key}")
        return stored, from_entity(spec.kind, stored.doc)

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
            raise RuleError(
                422,
                "id-mismatch",
                f"{spec.key_field} in the body ({given!r}) differs from the path ({key!r})",
                field=spec.key_field,
            )
        return doc

    async def _checked(self, spec: Kind, entity: Entity) -> None:
        await check_references(self._store(), spec, entity, self._sources)

    # -- handlers ----------------------------------------------------------------------

    async def _list(self, spec: Kind, request: Request) -> Response:
        q = request.query_params
        limit = AdminApi._limit(request)
        after = _decode_cursor(q.get("cursor"))
        wanted = {name: q[name] for name in spec.filters if q.get(name)}
        if "subject_id" in wanted:
            wanted["subject_id"] = (
                normalise_uid(wanted["subject_id"])
                if q.get("subject") == "token"
                else wanted["subject_id"]
            )
        store = self._store()
        found: list[tuple[AuthEntity, Entity]] = []
        while len(found) <= limit:
            batch = await store.auth_list(spec.kind, after, _SCAN)
            for stored in batch:
                entity = from_entity(spec.kind, stored.doc)
                values = {**msgspec.to_builtins(entity), "managed_by": stored.managed_by}
                if all(str(values.get(k)) == v for k, v in wanted.items()):
                    found.append((stored, entity))
                    if len(found) > limit:
                        break
            if len(batch) < _SCAN:
                break
            after = batch[-1].key
        page = found[:limit]
        cursor = encode_cursor(page[-1][0].key) if len(found) > limit else None
        items = [self._out(spec, entity, stored.managed_by) for stored, entity in page]
        return json_response({"items": items, "next": cursor})

    async def _create(self, spec: Kind, request: Request) -> Response:
        entity = validate(spec, await self._json(request))
        key = spec.key_of(entity)
        existing = await self._store().auth_get(spec.kind, key)
        if existing is not None:
            if existing.managed_by == "config":
                raise config_managed(spec, key)
            raise RuleError(
                409,
                "already-exists",
                f"{spec.noun} {key} exists: PUT or PATCH /api/v1/{spec.path}/{key} changes it",
            )
        await self._checked(spec, entity)
        try:
            # The read above gives the helpful answer; the unique key settles a race.
            await self._write([to_entity(spec.kind, entity)], create=True)
        except AlreadyExists:
            raise RuleError(409, "already-exists", f"{spec.noun} {key} exists") from None
        return self._created(spec, entity)

    async def _get(self, spec: Kind, request: Request) -> Response:
        stored, entity = await self._current(spec, self._path_key(spec, request))
        return json_response(self._out(spec, entity, stored.managed_by))

    async def _put(self, spec: Kind, request: Request) -> Response:
        key = self._path_key(spec, request)
        entity = validate(spec, self._same_key(spec, await self._json(request), key))
        existing = await self._store().auth_get(spec.kind, key)
        if existing is not None and existing.managed_by == "config":
            raise config_managed(spec, key)
        await self._checked(spec, entity)
        await self._write([to_entity(spec.kind, entity)])
        if existing is None:
            return self._created(spec, entity)
        return json_response(self._out(spec, entity))

    async def _patch(self, spec: Kind, request: Request) -> Response:
        key = self._path_key(spec, request)
        changes = self._same_key(spec, await self._json(request), key)
        stored, current = await self._current(spec, key)
        if stored.managed_by == "config":
            raise config_managed(spec, key)
        merged = {**msgspec.to_builtins(current), **changes}
        entity = validate(spec, merged)
        await self._checked(spec, entity)
        await self._write([to_entity(spec.kind, entity)])
        return json_response(self._out(spec, entity))

    async def _status(self, spec: Kind, request: Request, status: str) -> Response:
        key = self._path_key(spec, request)
        stored, entity = await self._current(spec, key)
        if stored.managed_by == "config":
            raise config_managed(spec, key)
        assert isinstance(entity, Token | Group)
        if entity.status != status:
            entity.status = status  # type: ignore[assignment]
            await self._write([to_entity(spec.kind, entity)])
        return json_response(self._out(spec, entity))

    async def _delete(self, spec: Kind, request: Request) -> Response:
        key = self._path_key(spec, request)
        store = self._store()
        stored, _ = await self._current(spec, key)
        await remove_entity(store, spec, stored)
        await self._service().refresh()
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

        return Route(path, self._guard(handler), methods=list(verbs))

    async def _block(self, spec: Kind, request: Request) -> Response:
        return await self._status(spec, request, "blocked")

    async def _unblock(self, spec: Kind, request: Request) -> Response:
        return await self._status(spec, request, "valid")
