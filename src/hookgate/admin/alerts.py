"""`GET /api/v1/alerts`: the alert history, firing ones and resolved ones, newest first."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.admin.api import AdminApi, ApiError, json_response
from hookgate.store import alerting
from hookgate.store.base import Store
from hookgate.store.rows import decode_cursor, encode_cursor

STATUSES = ("firing", "resolved")


class AlertsApi:
    """The alert history through the admin API (same tokens, same problem answers)."""

    def __init__(self, admin: AdminApi, store: Store) -> None:
        self._admin = admin
        self._store = store

    async def listing(self, request: Request) -> Response:
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in STATUSES:
            raise ApiError(400, "bad-parameter", "status must be firing or resolved")
        cursor = q.get("cursor")
        before = decode_cursor(cursor) if cursor else None
        limit = self._admin._limit(request)
        rows = await self._store.sql_read(
            functools.partial(
                alerting.list_alerts, status=status, rule=q.get("rule"), before=before, limit=limit
            )
        )
        items = [row.public() for row in rows]
        return json_response(
            {"items": items, "next": encode_cursor(rows[-1].id) if len(rows) == limit else None}
        )

    async def show(self, request: Request) -> Response:
        row = await self._store.sql_read(
            functools.partial(alerting.get_alert, alert_id=request.path_params["alert_id"])
        )
        if row is None:
            raise ApiError(404, "not-found", "no alert with this id")
        return json_response(row.public())

    def routes(self) -> list[Route]:
        """The /api/v1/alerts routes."""
        guarded = self._admin.guarded
        return [
            Route("/api/v1/alerts", guarded(self.listing), methods=["GET"]),
            Route("/api/v1/alerts/{alert_id}", guarded(self.show), methods=["GET"]),
        ]
