"""Admin API over the domain views, deliveries and destinations, with the operator
actions on them: replay, re-running quarantined events and rejected calls, and the
fleet cost export. Same guard, limits, cursors and problem answers as `admin.api`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.admin.api import AdminApi, ApiError, _instant, json_response
from hookgate.config import Config
from hookgate.domain.queries import ReplayFilter, ViewFilter
from hookgate.export import lines_csv, report_json, totals_csv
from hookgate.ops.details import (
    charge_point_detail,
    delivery_detail,
    payment_detail,
    session_detail,
    view_row,
)
from hookgate.ops.replay import (
    DELIVERY_STATUSES,
    BadReplay,
    destination_names,
    public_destination,
)
from hookgate.services.operations import Operations
from hookgate.services.rerun import RerunResult, Reruns
from hookgate.store.base import Store


class _ReplayBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    event_ids: list[str] = []
    source: str | None = None
    since: str | None = None
    status: str | None = None
    destination: str | None = None


class _DisableBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: str = "disabled by an operator"


def _bad(param: str, detail: str) -> ApiError:
    return ApiError(400, "bad-parameter", f"{param}: {detail}")


async def _json_body(request: Request, model: type[Any]) -> Any:
    raw = await request.body()
    try:
        return msgspec.json.decode(raw or b"{}", type=model)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "bad-parameter", str(exc)) from None
    except msgspec.DecodeError:
        raise ApiError(400, "malformed-json", "the body is not valid JSON") from None


class ViewsApi:
    """Handlers over the store's views and the operator services (re-runs, replay,
    export)."""

    def __init__(
        self,
        admin: AdminApi,
        store: Store,
        config: Config,
        reruns: Reruns,
        operations: Operations,
    ) -> None:
        self._admin = admin
        self._store = store
        self._config = config
        self._reruns = reruns
        self._operations = operations

    # -- listings ------------------------------------------------------------------------

    async def _list(
        self,
        request: Request,
        table: str,
        equal: tuple[str, ...],
        time_column: str,
    ) -> Response:
        q = request.query_params
        where = ViewFilter(
            equal={column: q[column] for column in equal if q.get(column)},
            time_column=time_column,
            since=_instant(q.get("since"), "since"),
            until=_instant(q.get("until"), "until"),
        )
        limit = AdminApi._limit(request)
        page = await self._store.list_view(table, where, q.get("cursor"), limit)
        return AdminApi._page(page)

    @staticmethod
    def _found(item: dict[str, Any] | None, what: str) -> Response:
        if item is None:
            raise ApiError(404, "not-found", f"no {what} with this id")
        return json_response(item)

    async def sessions(self, request: Request) -> Response:
        return await self._list(
            request,
            "charging_sessions",
            ("source", "status", "charger_id", "token"),
            "started_at",
        )

    async def session(self, request: Request) -> Response:
        item = await session_detail(self._store, request.path_params["id"])
        return self._found(item, "charging session")

    async def parking(self, request: Request) -> Response:
        return await self._list(
            request, "parking_transactions", ("source", "license_number"), "ended_at"
        )

    async def parking_one(self, request: Request) -> Response:
        item = await view_row(self._store, "parking_transactions", request.path_params["id"])
        return self._found(item, "parking transaction")

    async def payments(self, request: Request) -> Response:
        return await self._list(
            request, "payment_objects", ("source", "object_type", "state"), "updated_at"
        )

    async def payment(self, request: Request) -> Response:
        item = await payment_detail(self._store, request.path_params["id"])
        return self._found(item, "payment object")

    async def charge_points(self, request: Request) -> Response:
        return await self._list(
            request, "charge_points", ("source", "status", "network_status"), "updated_at"
        )

    async def charge_point(self, request: Request) -> Response:
        item = await charge_point_detail(self._store, request.path_params["id"])
        return self._found(item, "charge point")

    # -- deliveries and destinations -----------------------------------------------------

    async def deliveries(self, request: Request) -> Response:
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in DELIVERY_STATUSES:
            raise _bad("status", f"must be one of {', '.join(DELIVERY_STATUSES)}")
        equal = {c: q[c] for c in ("event_id", "destination", "status") if q.get(c)}
        where = ViewFilter(
            equal=equal,
            since=_instant(q.get("since"), "since"),
            until=_instant(q.get("until"), "until"),
        )
        limit = AdminApi._limit(request)
        page = await self._store.list_deliveries(where, q.get("cursor"), limit)
        return AdminApi._page(page)

    async def delivery(self, request: Request) -> Response:
        item = await delivery_detail(self._store, request.path_params["id"])
        return self._found(item, "delivery")

    async def destinations(self, request: Request) -> Response:
        states = await self._store.destination_states()
        items = [public_destination(d, states.get(d.name)) for d in self._config.destinations]
        return json_response({"items": items})

    async def _set_disabled(self, request: Request, reason: str | None) -> Response:
        name = request.path_params["name"]
        if name not in destination_names(self._config):
            raise ApiError(404, "not-found", f"no destination named {name!r} is configured")
        store = self._store
        await store.set_destination_disabled(name, reason)
        states = await store.destination_states()
        (destination,) = [d for d in self._config.destinations if d.name == name]
        return json_response(public_destination(destination, states.get(name)))

    async def enable(self, request: Request) -> Response:
        return await self._set_disabled(request, None)

    async def disable(self, request: Request) -> Response:
        body: _DisableBody = await _json_body(request, _DisableBody)
        return await self._set_disabled(request, body.reason or "disabled by an operator")

    # -- actions -------------------------------------------------------------------------

    async def _replay(self, where: ReplayFilter) -> Response:
        try:
            queued = await self._operations.replay(where)
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        return json_response({"queued": queued})

    async def replay(self, request: Request) -> Response:
        body: _ReplayBody = await _json_body(request, _ReplayBody)
        since: datetime | None = _instant(body.since, "since")
        return await self._replay(
            ReplayFilter(
                event_ids=body.event_ids,
                source=body.source,
                since=since,
                status=body.status,
                destination=body.destination,
            )
        )

    async def replay_event(self, request: Request) -> Response:
        destination = request.query_params.get("destination")
        try:
            queued = await self._operations.replay_event(
                request.path_params["event_id"], destination
            )
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        return json_response({"queued": queued})

    @staticmethod
    def _rerun_answer(result: RerunResult) -> Response:
        return json_response(msgspec.to_builtins(result))

    async def reprocess(self, request: Request) -> Response:
        return self._rerun_answer(await self._reruns.reprocess(request.path_params["event_id"]))

    async def rerun(self, request: Request) -> Response:
        return self._rerun_answer(await self._reruns.rerun(request.path_params["rejection_id"]))

    async def export(self, request: Request) -> Response:
        q = request.query_params
        month = q.get("month")
        if not month:
            raise _bad("month", "required, as YYYY-MM")
        fmt = q.get("format", "csv")
        if fmt not in ("csv", "json"):
            raise _bad("format", "must be csv or json")
        totals = q.get("totals", "false").lower()
        if totals not in ("true", "false", "1", "0"):
            raise _bad("totals", "must be true or false")
        try:
            report = await self._operations.export(month)
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        if fmt == "json":
            return Response(report_json(report), media_type="application/json")
        part = "totals" if totals in ("true", "1") else "lines"
        text = totals_csv(report) if part == "totals" else lines_csv(report)
        name = f"fleet-costs-{month}" + ("-totals" if part == "totals" else "") + ".csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def routes(self) -> list[Route]:
        """The /api/v1 routes of views, deliveries, destinations, replay and export."""
        g = self._admin.guarded
        get, post = ["GET"], ["POST"]
        return [
            Route("/api/v1/charging-sessions", g(self.sessions), methods=get),
            Route("/api/v1/charging-sessions/{id}", g(self.session), methods=get),
            Route("/api/v1/parking-transactions", g(self.parking), methods=get),
            Route("/api/v1/parking-transactions/{id}", g(self.parking_one), methods=get),
            Route("/api/v1/payments", g(self.payments), methods=get),
            Route("/api/v1/payments/{id}", g(self.payment), methods=get),
            Route("/api/v1/charge-points", g(self.charge_points), methods=get),
            Route("/api/v1/charge-points/{id}", g(self.charge_point), methods=get),
            Route("/api/v1/deliveries", g(self.deliveries), methods=get),
            Route("/api/v1/deliveries/{id}", g(self.delivery), methods=get),
            Route("/api/v1/destinations", g(self.destinations), methods=get),
            Route("/api/v1/destinations/{name}/enable", g(self.enable), methods=post),
            Route("/api/v1/destinations/{name}/disable", g(self.disable), methods=post),
            Route("/api/v1/replay", g(self.replay), methods=post),
            Route("/api/v1/events/{event_id}/replay", g(self.replay_event), methods=post),
            Route("/api/v1/events/{event_id}/reprocess", g(self.reprocess), methods=post),
            Route("/api/v1/rejections/{rejection_id}/rerun", g(self.rerun), methods=post),
            Route("/api/v1/export", g(self.export), methods=get),
        ]
