"""`GET /api/v1/alerts`: the alert history, firing ones and resolved ones, newest first."""

from __future__ import annotations

import functools
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from hookgate.admin.api import AdminApi, ApiError, json_response
from hookgate.admin.contract import Operation, query_of
from hookgate.admin.schemas import Page, PageQuery
from hookgate.store import alerting
from hookgate.store.base import Store
from hookgate.store.paging import decode_id_cursor, encode_cursor


class AlertsApi:
    """The alert history through the admin API (same tokens, same problem answers)."""

    def __init__(self, admin: AdminApi, store: Store) -> None:
        self._admin = admin
        self._store = store

    async def listing(self, request: Request) -> Response:
        q: AlertsQuery = query_of(request, AlertsQuery)
        before = decode_id_cursor(q.cursor) if q.cursor else None
        rows = await self._store.sql_read(
            functools.partial(
                alerting.list_alerts, status=q.status, rule=q.rule, before=before, limit=q.limit
            )
        )
        items = [row.public() for row in rows]
        return json_response(
            {"items": items, "next": encode_cursor(rows[-1].id) if len(rows) == q.limit else None}
        )

    async def show(self, request: Request) -> Response:
        row = await self._store.sql_read(
            functools.partial(alerting.get_alert, alert_id=request.path_params["alert_id"])
        )
        if row is None:
            raise ApiError(404, "not-found", "no alert with this id")
        return json_response(row.public())

    def operations(self) -> list[Operation]:
        """The /api/v1/alerts endpoints."""
        return [
            Operation(
                "GET",
                "/api/v1/alerts",
                self.listing,
                "listAlerts",
                "List alerts, firing and resolved",
                "alerts",
                query=AlertsQuery,
                answer=Page[alerting.AlertRow],
            ),
            Operation(
                "GET",
                "/api/v1/alerts/{alert_id}",
                self.show,
                "getAlert",
                "Get one alert episode",
                "alerts",
                answer=alerting.AlertRow,
            ),
        ]


class AlertsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    status: Literal["firing", "resolved"] | None = None
    rule: str | None = None
