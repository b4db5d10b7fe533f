"""Admin API under /api/v1, guarded by `Authorization: Bearer <admin token>`.

Every endpoint is an `Operation` (admin/contract.py): the guard checks the token and its
scope, decodes the query through the operation's declared type, runs the handler, maps
errors to problem answers and, for a change, writes the audit log.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.admin import schemas as s
from hookgate.admin.contract import Handler, Operation, ParamError, decode_query, query_of
from hookgate.config import AdminToken
from hookgate.domain.errors import HookgateError, StoreError
from hookgate.domain.events import StoredRejection
from hookgate.domain.queries import DecisionFilter, EventFilter, Page
from hookgate.ids import new_id
from hookgate.ingress.problems import error_answer, problem
from hookgate.store import audit as audit_log
from hookgate.store.base import Store
from hookgate.timeutil import iso, parse_iso, utcnow
from hookgate.verify import bearer_token

log = structlog.get_logger("hookgate.admin")
_encoder = msgspec.json.Encoder()
PROBLEM_JSON = "application/problem+json"
RETRY_AFTER = 5  # seconds an operator's client waits before asking storage again

ACTOR = "hookgate.actor"
QUERY = "hookgate.query"
BODY = "hookgate.body"  # a body a handler read by streaming it (with a size cap)
# Most bytes of a request body the audit log keeps as the detail of a change.
AUDIT_BODY_BYTES = 4096

__all__ = ["AdminApi", "ApiError", "Handler", "json_response", "problem_response"]


class ApiError(HookgateError):
    """An admin request that gets a problem answer with a status of its own (a parameter
    the HTTP layer checks); errors from below are answered by `error_answer`."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, code=code, **extra)
        self.status = status
        self.headers = headers or {}


def json_response(document: Any, status: int = 200) -> Response:
    """JSON with bytes rendered as text where possible."""
    return Response(_encoder.encode(document), status, media_type="application/json")


def problem_response(
    status: int,
    code: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 9457 answer."""
    return Response(
        problem(status, code, detail, **extra),
        status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def body_fields(raw: bytes, name: str) -> dict[str, Any]:
    """A stored body as text when it is UTF-8, and always as base64."""
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {name: text, f"{name}_base64": base64.b64encode(raw).decode()}


def _rejection_answer(item: StoredRejection) -> s.RejectionRecord:
    fields = msgspec.structs.asdict(item)
    fields.update(body_fields(fields.pop("body"), "body"))
    return s.RejectionRecord(**fields)


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise ParamError(
            name, f"{name} must be an ISO 8601 date-time with a UTC offset (got {value!r})"
        ) from None


def _no_nul(request: Request) -> None:
    """A NUL in a parameter matches nothing anyone stored, and PostgreSQL refuses it in
    any text (an error that would read as storage being down): 400 naming it."""
    for name, value in (*request.query_params.multi_items(), *request.path_params.items()):
        if "\x00" in name or "\x00" in str(value):
            raise ParamError(name, f"{name!r} must not contain NUL characters")


def refuse_nul(document: Any) -> None:
    """A NUL in a JSON body's text is refused like one in a parameter: nothing stored
    holds one, and PostgreSQL text cannot (it would read as storage being down)."""
    if isinstance(document, str):
        if "\x00" in document:
            raise ParamError("body", "the body must not contain NUL characters (\\u0000)")
    elif isinstance(document, dict):
        for key, value in document.items():
            refuse_nul(key)
            refuse_nul(value)
    elif isinstance(document, list):
        for value in document:
            refuse_nul(value)


def actor_of(request: Request) -> AdminToken | None:
    """The admin token a guarded request was made with."""
    actor = request.scope.get(ACTOR)
    return actor if isinstance(actor, AdminToken) else None


class AdminApi:
    """Handlers bound to one store and one token list."""

    def __init__(self, store: Store, tokens: Sequence[str | AdminToken]) -> None:
        self._store = store
        self._tokens = [
            t if isinstance(t, AdminToken) else AdminToken(name="admin", token=t, scope="write")
            for t in tokens
            if (t.token if isinstance(t, AdminToken) else t)
        ]

    # -- the guard -------------------------------------------------------------------------

    def _match(self, token: str) -> AdminToken | None:
        """The configured token equal to `token`, comparing against every one in constant
        time, so the answer's timing tells nothing about how much of a guess was right."""
        given = token.encode("utf-8")
        found: AdminToken | None = None
        for candidate in self._tokens:
            if hmac.compare_digest(given, candidate.token.encode("utf-8")) and found is None:
                found = candidate
        return found

    def guarded(
        self,
        handler: Handler,
        needs: str = "read",
        query: type[msgspec.Struct] | None = None,
        action: str | None = None,
    ) -> Handler:
        """401 unless the request carries a configured admin token, 403 when its scope is
        too small; errors become problem answers; a change is audited under `action`."""

        async def run(request: Request) -> Response:
            given = bearer_token(request.headers.get("authorization"))
            actor = self._match(given) if given is not None else None
            if actor is None:
                detail = (
                    "no admin tokens are configured ([admin] tokens)"
                    if not self._tokens
                    else "a valid admin bearer token is required"
                )
                return problem_response(
                    401,
                    "unauthorized",
                    detail,
                    {"WWW-Authenticate": 'Bearer realm="hookgate-admin"'},
                )
            if needs == "write" and actor.scope != "write":
                refused = problem_response(
                    403,
                    "forbidden",
                    f"admin token {actor.name!r} has the read scope: changes need a write token",
                )
                if action is not None:  # who tried to change what is worth knowing
                    await self._audit(request, actor, action, 403)
                return refused
            request.scope[ACTOR] = actor
            response = await self._answer(request, handler, query)
            if action is not None:
                await self._audit(request, actor, action, response.status_code)
            return response

        return run

    @staticmethod
    async def _answer(
        request: Request, handler: Handler, query: type[msgspec.Struct] | None
    ) -> Response:
        try:
            _no_nul(request)
            if query is not None:
                request.scope[QUERY] = decode_query(request, query)
            return await handler(request)
        except ApiError as exc:
            body = problem(exc.status, exc.code, exc.detail, **exc.extra)
            return Response(body, exc.status, headers=exc.headers, media_type=PROBLEM_JSON)
        except HookgateError as exc:
            cursor = exc.code == "bad-cursor" and "parameter" not in exc.extra
            extra = {"parameter": "cursor"} if cursor else {}
            status, body, headers = error_answer(exc, retry_after=RETRY_AFTER, **extra)
            return Response(body, status, headers=headers, media_type=PROBLEM_JSON)

    async def _audit(self, request: Request, actor: AdminToken, action: str, status: int) -> None:
        """Record a change (or an attempt at one) with its outcome; a failure to record is
        logged, never turned into a failure of the change already made."""
        raw = request.scope.get(BODY)
        if not isinstance(raw, bytes):
            try:
                raw = await request.body()
            except RuntimeError:  # streamed and refused part-way (too large)
                raw = b""
        detail: dict[str, Any] = {}
        if request.query_params:
            detail["query"] = dict(request.query_params)
        if raw:
            try:
                decoded = msgspec.json.decode(raw[: AUDIT_BODY_BYTES + 1])
                detail["body"] = decoded if len(raw) <= AUDIT_BODY_BYTES else None
            except msgspec.DecodeError:
                detail["body_bytes"] = len(raw)
        outcome: audit_log.Outcome = (
            "ok" if status < 400 else "refused" if status < 500 else "failed"
        )
        target = "/".join(str(v) for v in request.path_params.values()) or None
        record = audit_log.AuditRecord(
            id=new_id(),
            at=utcnow(),
            actor=actor.name,
            channel="api",
            action=action,
            target=target,
            detail=detail,
            outcome=outcome,
            status=status,
        )
        try:
            await audit_log.record(self._store, record)
        except StoreError as exc:
            log.error("audit entry not recorded", action=action, actor=actor.name, error=str(exc))

    # -- handlers --------------------------------------------------------------------------

    @staticmethod
    def _page(page: Page[Any]) -> Response:
        return json_response(page)

    async def events(self, request: Request) -> Response:
        q: s.EventsQuery = query_of(request, s.EventsQuery)
        where = EventFilter(
            source=q.source,
            provider=q.provider,
            event_type=q.type,
            status=q.status,
            since=_instant(q.since, "since"),
        )
        page = await self._store.list_events(where, q.cursor, q.limit)
        return self._page(page)

    async def event(self, request: Request) -> Response:
        item = await self._store.get_event(request.path_params["event_id"])
        if item is None:
            raise ApiError(404, "not-found", "no event with this id")
        fields = msgspec.structs.asdict(item)
        fields.update(body_fields(fields.pop("raw_body"), "raw_body"))
        return json_response(s.EventDetail(**fields))

    async def rejections(self, request: Request) -> Response:
        q: s.RejectionsQuery = query_of(request, s.RejectionsQuery)
        page = await self._store.list_rejections(q.source, q.cursor, q.limit)
        return self._page(Page([_rejection_answer(item) for item in page.items], page.next))

    async def rejection_counts(self, request: Request) -> Response:
        """Every refusal, recorded in full or only counted, summed per source and reason
        (the list above holds only the per-minute sample; docs/security.md)."""
        q: s.RejectionCountsQuery = query_of(request, s.RejectionCountsQuery)
        until = _instant(q.until, "until")
        since = _instant(q.since, "since") or (until or utcnow()) - timedelta(days=1)
        items = await self._store.rejection_counts(q.source, since, until)
        return json_response(
            {"since": iso(since), "until": iso(until) if until else None, "items": items}
        )

    async def decisions(self, request: Request) -> Response:
        q: s.DecisionsQuery = query_of(request, s.DecisionsQuery)
        where = DecisionFilter(
            source=q.source,
            token=q.token,
            result=q.result,
            since=_instant(q.since, "since"),
            until=_instant(q.until, "until"),
        )
        page = await self._store.list_decisions(where, q.cursor, q.limit)
        return self._page(page)

    async def audit(self, request: Request) -> Response:
        q: s.AuditQuery = query_of(request, s.AuditQuery)
        where = audit_log.AuditFilter(
            actor=q.actor,
            action=q.action,
            outcome=q.outcome,
            since=_instant(q.since, "since"),
            until=_instant(q.until, "until"),
        )
        page = await audit_log.page(self._store, where, q.cursor, q.limit)
        return self._page(page)

    def operations(self) -> list[Operation]:
        """The inbox, rejection, decision and audit endpoints."""
        return [
            Operation(
                "GET",
                "/api/v1/events",
                self.events,
                "listEvents",
                "List inbox events",
                "events",
                query=s.EventsQuery,
                answer=s.Page[s.Event],
                description="Verified provider calls as stored, newest first, without raw bodies.",
            ),
            Operation(
                "GET",
                "/api/v1/events/{event_id}",
                self.event,
                "getEvent",
                "Get one event with its raw body",
                "events",
                answer=s.EventDetail,
            ),
            Operation(
                "GET",
                "/api/v1/rejections",
                self.rejections,
                "listRejections",
                "List refused calls",
                "rejections",
                query=s.RejectionsQuery,
                answer=s.Page[s.RejectionRecord],
                description="The rejection log (a per-minute sample of every source and "
                "reason; credentials masked).",
            ),
            Operation(
                "GET",
                "/api/v1/rejection-counts",
                self.rejection_counts,
                "countRejections",
                "Count refusals per source and reason",
                "rejections",
                query=s.RejectionCountsQuery,
                answer=s.RejectionCounts,
                description="Every refusal, recorded in full or only counted; the last 24 "
                "hours unless `since` says otherwise.",
            ),
            Operation(
                "GET",
                "/api/v1/decisions",
                self.decisions,
                "listDecisions",
                "List charging authorization decisions",
                "decisions",
                query=s.DecisionsQuery,
                answer=s.Page[s.DecisionRecord],
            ),
            Operation(
                "GET",
                "/api/v1/audit",
                self.audit,
                "listAudit",
                "List the audit log",
                "audit",
                query=s.AuditQuery,
                answer=s.Page[s.AuditEntry],
                description="Every change made through this API or the command line: who, "
                "when, what and how it ended, newest first.",
            ),
        ]

    def routes_of(self, operations: Sequence[Operation]) -> list[Route]:
        """One Starlette route per path, dispatching on the method (others get 405); a
        change is audited under its operation id."""
        by_path: dict[str, dict[str, Handler]] = {}
        for op in operations:
            handler = op.handler
            if not op.public:
                action = op.op_id if op.needs == "write" else None
                handler = self.guarded(op.handler, op.needs, op.query, action)
            by_path.setdefault(op.path, {})[op.method] = handler
        return [self._route(path, verbs) for path, verbs in by_path.items()]

    @staticmethod
    def _route(path: str, verbs: dict[str, Handler]) -> Route:
        async def dispatch(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await verbs[method](request)

        return Route(path, dispatch, methods=list(verbs))
