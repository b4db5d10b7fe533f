"""Read API under /api/v1, guarded by `Authorization: Bearer <admin token>`."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.authorization.outcome import RESULTS
from hookgate.domain.errors import HookgateError
from hookgate.domain.queries import DecisionFilter, EventFilter, Page
from hookgate.ingress.problems import error_answer, problem
from hookgate.store.base import Store
from hookgate.timeutil import iso, parse_iso, utcnow
from hookgate.verify import any_equal, bearer_token

_encoder = msgspec.json.Encoder()
PROBLEM_JSON = "application/problem+json"
RETRY_AFTER = 5  # seconds an operator's client waits before asking storage again
Handler = Callable[[Request], Awaitable[Response]]


class ApiError(HookgateError):
    """An admin request that gets a problem answer with a status of its own (a parameter
    the HTTP layer checks); errors from below are answered by `error_answer`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail, code=code)
        self.status = status


def json_response(document: Any, status: int = 200) -> Response:
    """JSON with bytes rendered as text where possible."""
    return Response(_encoder.encode(document), status, media_type="application/json")


def problem_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> Response:
    """An RFC 9457 answer."""
    return Response(
        problem(status, code, detail),
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


def _instant(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        raise ApiError(400, "bad-parameter", f"{name} must be an ISO 8601 date-time") from None


def _no_nul(request: Request) -> None:
    """A NUL in a parameter matches nothing anyone stored, and PostgreSQL refuses it in
    any text (an error that would read as storage being down): 400 naming it."""
    for name, value in (*request.query_params.multi_items(), *request.path_params.items()):
        if "\x00" in name or "\x00" in str(value):
            raise ApiError(400, "bad-parameter", f"{name!r} must not contain NUL characters")


class AdminApi:
    """Handlers bound to one store and one token list."""

    def __init__(self, store: Store, tokens: list[str]) -> None:
        self._store = store
        self._tokens = [t for t in tokens if t]

    def guarded(self, handler: Handler) -> Handler:
        """401 unless the request carries a configured admin token."""

        async def run(request: Request) -> Response:
            token = bearer_token(request.headers.get("authorization"))
            if token is None or not self._tokens or not any_equal(token, self._tokens):
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
            try:
                _no_nul(request)
                return await handler(request)
            except ApiError as exc:
                return problem_response(exc.status, exc.code, exc.detail)
            except HookgateError as exc:
                status, body, headers = error_answer(exc, retry_after=RETRY_AFTER)
                return Response(body, status, headers=headers, media_type=PROBLEM_JSON)

        return run

    @staticmethod
    def _limit(request: Request) -> int:
        raw = request.query_params.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            raise ApiError(400, "bad-parameter", "limit must be an integer from 1 to 500")
        return int(raw)

    @staticmethod
    def _page(page: Page) -> Response:
        return json_response({"items": page.items, "next": page.next})

    async def events(self, request: Request) -> Response:
        q = request.query_params
        since = _instant(q.get("since"), "since")
        where = EventFilter(
            source=q.get("source"),
            provider=q.get("provider"),
            event_type=q.get("type"),
            status=q.get("status"),
            since=since,
        )
        page = await self._store.list_events(where, q.get("cursor"), self._limit(request))
        return self._page(page)

    async def event(self, request: Request) -> Response:
        item = await self._store.get_event(request.path_params["event_id"])
        if item is None:
            raise ApiError(404, "not-found", "no event with this id")
        item.update(body_fields(item.pop("raw_body"), "raw_body"))
        return json_response(item)

    async def rejections(self, request: Request) -> Response:
        q = request.query_params
        page = await self._store.list_rejections(
            q.get("source"), q.get("cursor"), self._limit(request)
        )
        for item in page.items:
            item.update(body_fields(item.pop("body"), "body"))
        return self._page(page)

    async def rejection_counts(self, request: Request) -> Response:
        """Every refusal, recorded in full or only counted, summed per source and reason
        (the list above holds only the per-minute sample; docs/security.md)."""
        q = request.query_params
        until = _instant(q.get("until"), "until")
        since = _instant(q.get("since"), "since") or (until or utcnow()) - timedelta(days=1)
        items = await self._store.rejection_counts(q.get("source"), since, until)
        return json_response(
            {"since": iso(since), "until": iso(until) if until else None, "items": items}
        )

    async def decisions(self, request: Request) -> Response:
        q = request.query_params
        result = q.get("result")
        if result is not None and result not in RESULTS:
            raise ApiError(400, "bad-parameter", f"result must be one of {', '.join(RESULTS)}")
        where = DecisionFilter(
            source=q.get("source"),
            token=q.get("token"),
            result=result,
            since=_instant(q.get("since"), "since"),
            until=_instant(q.get("until"), "until"),
        )
        page = await self._store.list_decisions(where, q.get("cursor"), self._limit(request))
        return self._page(page)

    def routes(self) -> list[Route]:
        """The /api/v1 routes."""
        return [
            Route("/api/v1/events", self.guarded(self.events), methods=["GET"]),
            Route("/api/v1/events/{event_id}", self.guarded(self.event), methods=["GET"]),
            Route("/api/v1/rejections", self.guarded(self.rejections), methods=["GET"]),
            Route("/api/v1/rejection-counts", self.guarded(self.rejection_counts), methods=["GET"]),
            Route("/api/v1/decisions", self.guarded(self.decisions), methods=["GET"]),
        ]
