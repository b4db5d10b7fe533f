"""The admin API's published contract (ADR 0021).

Each operation is declared once, as an `Operation` naming its handler and the msgspec
types of its query, body and answer (admin/schemas.py). The Starlette routes and the
OpenAPI 3.1 document are both built from that one list, and the guard decodes every
query through the declared type, so a parameter the document does not describe is
refused and one it describes is validated the way the document says.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from msgspec import inspect
from starlette.requests import Request
from starlette.responses import Response

from hookgate.admin.schemas import Problem
from hookgate.domain.errors import BadCursor, Invalid

Handler = Callable[[Request], Awaitable[Response]]
Scope = Literal["read", "write"]

PROBLEM_MEDIA = "application/problem+json"
_AT = re.compile(r"at `\$\.([A-Za-z0-9_]+)")
_PATH_PARAM = re.compile(r"\{([A-Za-z0-9_]+)(?::[a-z]+)?\}")
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "A parameter or the body is not valid: the problem names it",
    401: "No valid admin bearer token",
    403: "The token's scope does not allow this (a `read` token changes nothing)",
    404: "Nothing with this id or name",
    409: "Conflicts with what exists (already there, managed by the configuration, in use)",
    405: "The path names an action of the entity (`.../block`), not the entity",
    413: "The body is too large",
    422: "The body is well-formed but not a valid entity: the problem names the field",
    503: "Storage is unavailable or the gateway is starting; retry (see Retry-After)",
}


class ParamError(Invalid):
    """A query parameter or body field that is not valid: 400 naming it and, where the
    values are a fixed set, listing them."""

    code = "bad-parameter"

    def __init__(self, parameter: str, detail: str, allowed: Sequence[str] | None = None) -> None:
        if allowed is None:
            super().__init__(detail, parameter=parameter)
        else:
            super().__init__(detail, parameter=parameter, allowed=list(allowed))
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class Operation:
    """One admin endpoint: method, path, handler and the types it speaks."""

    method: str
    path: str  # Starlette path, e.g. /api/v1/events/{event_id}
    handler: Handler
    op_id: str
    summary: str
    tag: str
    query: type[msgspec.Struct] | None = None
    body: Any = None
    answer: Any = None  # None: 204 without content
    status: int = 200
    media: tuple[str, ...] = ("application/json",)
    errors: tuple[int, ...] = ()
    scope: Scope | None = None  # default: read for GET, write otherwise
    description: str = ""
    public: bool = False  # served without a token (the contract and its docs)
    also: tuple[int, ...] = ()  # other success statuses with the same answer (PUT: 201)
    body_required: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def needs(self) -> Scope:
        if self.scope is not None:
            return self.scope
        return "read" if self.method == "GET" else "write"


# -- query decoding --------------------------------------------------------------------


def _unwrap(kind: inspect.Type) -> inspect.Type:
    """The type under an optional and its metadata (descriptions, schema extras)."""
    if isinstance(kind, inspect.UnionType):
        rest = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
        if len(rest) == 1:
            kind = rest[0]
    while isinstance(kind, inspect.Metadata):
        kind = kind.type
    return kind


def _is_list(kind: inspect.Type) -> bool:
    """A parameter that may be repeated (`?field=a=1&field=b=2`)."""
    return isinstance(_unwrap(kind), inspect.ListType)


def _free_text(kind: inspect.Type) -> bool:
    """A plain text field: no format, pattern or fixed values."""
    if isinstance(kind, inspect.UnionType):
        rest = [t for t in kind.types if not isinstance(t, inspect.NoneType)]
        kind = rest[0] if len(rest) == 1 else kind
    if isinstance(kind, inspect.Metadata):
        schema = kind.extra_json_schema or {}
        return "format" not in schema and _free_text(kind.type)
    return isinstance(kind, inspect.StrType) and not kind.pattern


def _explain(kind: inspect.Type) -> tuple[str, list[str] | None]:
    """What a parameter of this type must be, in words, and its values when fixed."""
    kind = _unwrap(kind)
    if isinstance(kind, inspect.ListType):
        what, allowed = _explain(kind.item_type)
        return f"(each value) {what}", allowed
    if isinstance(kind, inspect.LiteralType):
        values = [str(v) for v in kind.values]
        return f"must be one of {', '.join(values)}", values
    if isinstance(kind, inspect.BoolType):
        return "must be true or false", ["true", "false"]
    if isinstance(kind, inspect.IntType):
        low, high = kind.ge, kind.le
        if low is not None and high is not None:
            return f"must be an integer from {low} to {high}", None
        if low is not None:
            return f"must be an integer of at least {low}", None
        return "must be an integer", None
    if isinstance(kind, inspect.StrType):
        if kind.pattern:
            return f"must match {kind.pattern}", None
        if kind.max_length is not None:
            return f"must be at most {kind.max_length} characters", None
    return "is not valid", None


@functools.cache
def _fields(model: Any) -> dict[str, inspect.Field]:
    """A struct's fields by their names on the wire (inspected once per type)."""
    info = inspect.type_info(model)
    return {f.encode_name: f for f in info.fields} if isinstance(info, inspect.StructType) else {}


def decode_query(request: Request, model: type[msgspec.Struct]) -> Any:
    """The query string as `model`: unknown, repeated or invalid parameters are a
    ParamError naming them. An empty free-text value counts as absent (`?source=`); an
    empty number, flag, choice or date-time is not valid, and neither is the word `null`
    (which msgspec's lax conversion would take for "absent")."""
    fields = _fields(model)
    data: dict[str, Any] = {}
    for name, value in request.query_params.multi_items():
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ParamError(name, f"{name}: unknown parameter (this endpoint takes: {known})")
        if _is_list(fields[name].type):
            data.setdefault(name, []).append(value)
            continue
        if name in data:
            raise ParamError(name, f"{name}: given more than once")
        free = _free_text(fields[name].type)
        if value == "null" and not free:
            what, allowed = _explain(fields[name].type)
            raise ParamError(name, f"{name} {what} (got 'null')", allowed)
        if value != "" or not free:
            data[name] = value
    try:
        return msgspec.convert(data, model, strict=False)
    except msgspec.ValidationError as exc:
        raise explain(exc, model, data, "query") from None


def explain(exc: msgspec.ValidationError, model: Any, given: Any, where: str = "body") -> Invalid:
    """A msgspec validation error of a query or body decoded as `model` in words: which
    field, what it must be, the allowed values where they are a fixed set."""
    text = str(exc)
    fields = _fields(model)
    found = _AT.search(text)
    if found is not None and found.group(1) in fields and text.count("at `$") == 1:
        name = found.group(1)
        if name == "cursor":
            return BadCursor("cursor is not valid", parameter="cursor")
        what, allowed = _explain(fields[name].type)
        value = given.get(name, "") if isinstance(given, dict) else ""
        return ParamError(name, f"{name} {what} (got {value!r})", allowed)
    missing = re.search(r"missing required field `([^`]+)`", text)
    if missing:
        name = missing.group(1)
        return ParamError(name, f"{name}: required")
    unknown = re.search(r"unknown field `([^`]+)`", text)
    if unknown:
        name = unknown.group(1)
        known = ", ".join(sorted(fields)) or "none"
        return ParamError(name, f"{name}: unknown field (known: {known})")
    return ParamError(found.group(1) if found else where, text)


def query_of(request: Request, model: type[Any]) -> Any:
    """The decoded query the guard left for the handler."""
    decoded = request.scope.get("hookgate.query")
    assert isinstance(decoded, model), f"{request.url.path} declares no {model.__name__}"
    return decoded


def position(index: int) -> str:
    """The cursor of a list held in memory (the configuration's destinations, sources):
    the position of the next item."""
    return base64.urlsafe_b64encode(f"at:{index}".encode()).decode().rstrip("=")


def position_of(cursor: str | None) -> int:
    """The index a `position` cursor points at; BadCursor when it is not one of ours."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadCursor("cursor is not valid") from None
    label, _, index = text.partition(":")
    if label != "at" or not index.isdigit() or len(index) > 9:
        raise BadCursor("cursor is not valid")
    return int(index)


# -- the OpenAPI document ----------------------------------------------------------------


def openapi_path(path: str) -> str:
    """A Starlette path as an OpenAPI template (`{key:path}` becomes `{key}`)."""
    return _PATH_PARAM.sub(r"{\1}", path)


def _as_parameter(schema: dict[str, Any]) -> dict[str, Any]:
    """A struct field's schema as a query parameter's: null and a null default dropped
    (absent means none)."""
    schema = dict(schema)
    any_of = schema.get("anyOf")
    if isinstance(any_of, list):
        rest = [s for s in any_of if s != {"type": "null"}]
        if len(rest) == 1:
            schema.pop("anyOf")
            schema = {**rest[0], **schema}
        else:
            schema["anyOf"] = rest
    if "default" in schema and schema["default"] is None:
        schema.pop("default")
    enum = schema.get("enum")
    if enum is not None and "type" not in schema and all(isinstance(v, str) for v in enum):
        schema["type"] = "string"
    return schema


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Error"),
        "content": {PROBLEM_MEDIA: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def build_document(
    operations: Sequence[Operation], *, title: str, version: str, description: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`, schemas generated by msgspec (JSON Schema
    2020-12, which OpenAPI 3.1 uses as is)."""
    types: list[Any] = [Problem]
    for op in operations:
        types.extend(t for t in (op.query, op.body, op.answer) if t is not None)
    unique = list(dict.fromkeys(types))
    refs, components = msgspec.json.schema_components(
        unique, ref_template="#/components/schemas/{name}"
    )
    ref_of = dict(zip(unique, refs, strict=True))
    query_names = set()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        template = openapi_path(op.path)
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PATH_PARAM.findall(op.path)
        ]
        if op.query is not None:
            name = ref_of[op.query]["$ref"].rsplit("/", 1)[1]
            query_names.add(name)
            component = components[name]
            required = set(component.get("required", []))
            for field_name, schema in component.get("properties", {}).items():
                param = _as_parameter(schema)
                entry: dict[str, Any] = {
                    "name": field_name,
                    "in": "query",
                    "required": field_name in required,
                }
                if "description" in param:
                    entry["description"] = param.pop("description")
                entry["schema"] = param
                parameters.append(entry)
        responses: dict[str, Any] = {}
        success: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
        if op.answer is not None:
            content: dict[str, Any] = {}
            for media in op.media:
                schema = ref_of[op.answer] if media.endswith("json") else {"type": "string"}
                content[media] = {"schema": schema}
            success["content"] = content
        responses[str(op.status)] = success
        for status in op.also:
            responses[str(status)] = {**success, "description": _STATUS_TEXT.get(status, "OK")}
        errors = {400, *op.errors}
        if not op.public:
            errors |= {401, 503}
            if op.needs == "write":
                errors.add(403)
        if "{" in op.path:
            errors.add(404)
        for status in sorted(errors):
            responses[str(status)] = _problem_response(status)
        operation: dict[str, Any] = {
            "operationId": op.op_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": parameters,
            "responses": responses,
        }
        text = op.description
        if not op.public:
            scope_note = f"Needs a `{op.needs}` token."
            text = f"{text}\n\n{scope_note}".strip()
            operation["x-required-scope"] = op.needs
        else:
            operation["security"] = []
        if text:
            operation["description"] = text
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": ref_of[op.body]}},
            }
        operation.update(op.extra)
        paths.setdefault(template, {})[op.method.lower()] = operation
    for name in query_names:
        components.pop(name, None)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in operations)],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin token from `[admin] tokens`: `read` tokens "
                    "may only look; `write` tokens may also change things.",
                }
            },
        },
    }
