"""Admin API over the domain views, deliveries and destinations, with the operator
actions on them: replay, re-running quarantined events and rejected calls, and the
fleet cost export. Same guard, paging, cursors and problem answers as `admin.api`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from hookgate.admin import schemas as sc
from hookgate.admin.api import (
    BODY,
    QUERY,
    AdminApi,
    ApiError,
    _instant,
    json_response,
    refuse_nul,
)
from hookgate.admin.contract import (
    Operation,
    ParamError,
    explain,
    position,
    position_of,
    query_of,
)
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
from hookgate.ops.replay import BadReplay, destination_names, public_destination
from hookgate.reconcile import reconciliation_csv, reconciliation_json
from hookgate.services.operations import Operations
from hookgate.services.rerun import RerunResult, Reruns
from hookgate.store.base import Store


def _bad(param: str, detail: str) -> ParamError:
    return ParamError(param, f"{param}: {detail}")


# The largest body an action takes (a replay names at most 1,000 events).
MAX_BODY = 256 * 1024


async def _json_body(request: Request, model: type[Any]) -> Any:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ApiError(413, "body-too-large", f"the body is over {MAX_BODY} bytes")
    request.scope[BODY] = raw  # for the audit log: the stream is consumed now
    try:
        document = msgspec.json.decode(raw or b"{}")
    except msgspec.DecodeError:
        raise ApiError(400, "malformed-json", "the body is not valid JSON") from None
    refuse_nul(document)
    try:
        return msgspec.convert(document, model)
    except msgspec.ValidationError as exc:
        raise explain(exc, model, document) from None


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
        q: Any = request.scope[QUERY]
        where = ViewFilter(
            equal={column: getattr(q, column) for column in equal if getattr(q, column)},
            time_column=time_column,
            since=_instant(q.since, "since"),
            until=_instant(q.until, "until"),
            flag=getattr(q, "flag", None),
        )
        page = await self._store.list_view(table, where, q.cursor, q.limit)
        return AdminApi._page(page)

    @staticmethod
    def _found(item: Any, what: str) -> Response:
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
        item = await session_detail(
            self._store, request.path_params["id"], self._operations.config.rates()
        )
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
        q: sc.DeliveriesQuery = query_of(request, sc.DeliveriesQuery)
        equal = {c: getattr(q, c) for c in ("event_id", "destination", "status") if getattr(q, c)}
        where = ViewFilter(
            equal=equal,
            since=_instant(q.since, "since"),
            until=_instant(q.until, "until"),
        )
        page = await self._store.list_deliveries(where, q.cursor, q.limit)
        return AdminApi._page(page)

    async def delivery(self, request: Request) -> Response:
        item = await delivery_detail(self._store, request.path_params["id"])
        return self._found(item, "delivery")

    async def destinations(self, request: Request) -> Response:
        """The configured destinations in configuration order, paged like every list (the
        cursor is the position after the last one shown)."""
        q: sc.DestinationsQuery = query_of(request, sc.DestinationsQuery)
        start = position_of(q.cursor)
        states = await self._store.destination_states()
        chosen = self._config.destinations[start : start + q.limit]
        items = [public_destination(d, states.get(d.name)) for d in chosen]
        more = start + q.limit < len(self._config.destinations)
        return json_response({"items": items, "next": position(start + q.limit) if more else None})

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
        body: sc.DisableBody = await _json_body(request, sc.DisableBody)
        return await self._set_disabled(request, body.reason or "disabled by an operator")

    # -- actions -------------------------------------------------------------------------

    async def replay(self, request: Request) -> Response:
        body: sc.ReplayBody = await _json_body(request, sc.ReplayBody)
        since: datetime | None = _instant(body.since, "since")
        where = ReplayFilter(
            event_ids=body.event_ids,
            source=body.source,
            since=since,
            status=body.status,
            destination=body.destination,
        )
        try:
            queued = await self._operations.replay(where, dry_run=body.dry_run)
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        return json_response({"queued": queued, "dry_run": body.dry_run})

    async def replay_event(self, request: Request) -> Response:
        q: sc.ReplayEventQuery = query_of(request, sc.ReplayEventQuery)
        try:
            queued = await self._operations.replay_event(
                request.path_params["event_id"], q.destination, dry_run=q.dry_run
            )
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        return json_response({"queued": queued, "dry_run": q.dry_run})

    @staticmethod
    def _rerun_answer(result: RerunResult) -> Response:
        return json_response(msgspec.to_builtins(result))

    async def reprocess(self, request: Request) -> Response:
        return self._rerun_answer(await self._reruns.reprocess(request.path_params["event_id"]))

    async def rerun(self, request: Request) -> Response:
        return self._rerun_answer(await self._reruns.rerun(request.path_params["rejection_id"]))

    async def reconciliation(self, request: Request) -> Response:
        q: sc.ReconcileQuery = query_of(request, sc.ReconcileQuery)
        try:
            result = await self._operations.reconcile(q.month)
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        if q.format == "json":
            return Response(reconciliation_json(result), media_type="application/json")
        name = f"reconciliation-{q.month}-{q.part}.csv"
        return Response(
            reconciliation_csv(result, q.part),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def export(self, request: Request) -> Response:
        q: sc.ExportQuery = query_of(request, sc.ExportQuery)
        try:
            report = await self._operations.export(q.month)
        except BadReplay as exc:
            raise _bad(exc.param, exc.detail) from None
        if q.format == "json":
            return Response(report_json(report), media_type="application/json")
        text = totals_csv(report) if q.totals else lines_csv(report)
        name = f"fleet-costs-{q.month}" + ("-totals" if q.totals else "") + ".csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def operations(self) -> list[Operation]:
        """Views, deliveries, destinations, replay, re-runs and the export."""
        op = Operation
        return [
            op(
                "GET",
                "/api/v1/charging-sessions",
                self.sessions,
                "listChargingSessions",
                "List charging sessions",
                "views",
                query=sc.SessionsQuery,
                answer=sc.Page[sc.ChargingSession],
            ),
            op(
                "GET",
                "/api/v1/charging-sessions/{id}",
                self.session,
                "getChargingSession",
                "Get a charging session with its meter values",
                "views",
                answer=sc.ChargingSessionDetail,
            ),
            op(
                "GET",
                "/api/v1/parking-transactions",
                self.parking,
                "listParkingTransactions",
                "List parking transactions",
                "views",
                query=sc.ParkingQuery,
                answer=sc.Page[sc.ParkingTransaction],
            ),
            op(
                "GET",
                "/api/v1/parking-transactions/{id}",
                self.parking_one,
                "getParkingTransaction",
                "Get a parking transaction",
                "views",
                answer=sc.ParkingTransaction,
            ),
            op(
                "GET",
                "/api/v1/payments",
                self.payments,
                "listPayments",
                "List payment objects",
                "views",
                query=sc.PaymentsQuery,
                answer=sc.Page[sc.PaymentObject],
            ),
            op(
                "GET",
                "/api/v1/payments/{id}",
                self.payment,
                "getPayment",
                "Get a payment object with its state history",
                "views",
                answer=sc.PaymentObjectDetail,
            ),
            op(
                "GET",
                "/api/v1/charge-points",
                self.charge_points,
                "listChargePoints",
                "List charge points",
                "views",
                query=sc.ChargePointsQuery,
                answer=sc.Page[sc.ChargePoint],
            ),
            op(
                "GET",
                "/api/v1/charge-points/{id}",
                self.charge_point,
                "getChargePoint",
                "Get a charge point with its EVSEs",
                "views",
                answer=sc.ChargePointDetail,
            ),
            op(
                "GET",
                "/api/v1/deliveries",
                self.deliveries,
                "listDeliveries",
                "List deliveries",
                "deliveries",
                query=sc.DeliveriesQuery,
                answer=sc.Page[sc.Delivery],
            ),
            op(
                "GET",
                "/api/v1/deliveries/{id}",
                self.delivery,
                "getDelivery",
                "Get a delivery with its attempts",
                "deliveries",
                answer=sc.DeliveryDetail,
            ),
            op(
                "GET",
                "/api/v1/destinations",
                self.destinations,
                "listDestinations",
                "List destinations (without secrets) and whether they are paused",
                "deliveries",
                query=sc.DestinationsQuery,
                answer=sc.Page[sc.Destination],
            ),
            op(
                "POST",
                "/api/v1/destinations/{name}/enable",
                self.enable,
                "resumeDestination",
                "Resume a paused destination",
                "deliveries",
                answer=sc.Destination,
                description="Deliveries to it start again; what queued meanwhile is sent.",
            ),
            op(
                "POST",
                "/api/v1/destinations/{name}/disable",
                self.disable,
                "pauseDestination",
                "Pause a destination",
                "deliveries",
                body=sc.DisableBody,
                errors=(413,),
                answer=sc.Destination,
                description="Nothing is sent to it until it is resumed; deliveries queue.",
            ),
            op(
                "POST",
                "/api/v1/replay",
                self.replay,
                "replay",
                "Deliver again by filter",
                "deliveries",
                body=sc.ReplayBody,
                errors=(413,),
                answer=sc.ReplayResult,
                description="Named events, or every delivery matching source, since, status "
                "and destination. With `dry_run: true` nothing is queued and `queued` says "
                "how many would be.",
            ),
            op(
                "POST",
                "/api/v1/events/{event_id}/replay",
                self.replay_event,
                "replayEvent",
                "Deliver one event again",
                "events",
                query=sc.ReplayEventQuery,
                answer=sc.ReplayResult,
            ),
            op(
                "POST",
                "/api/v1/events/{event_id}/reprocess",
                self.reprocess,
                "reprocessEvent",
                "Parse a quarantined event again and queue it",
                "events",
                answer=sc.RerunResult,
                errors=(409,),
                description="After a provider schema fix or a configuration change.",
            ),
            op(
                "POST",
                "/api/v1/rejections/{rejection_id}/rerun",
                self.rerun,
                "rerunRejection",
                "Verify and store a refused call again",
                "rejections",
                answer=sc.RerunResult,
                errors=(409,),
                description="After a configuration fix (a rotated secret, a new source).",
            ),
            op(
                "GET",
                "/api/v1/export",
                self.export,
                "exportFleetCosts",
                "Fleet cost export for one month",
                "views",
                query=sc.ExportQuery,
                answer=dict[str, Any],
                media=("text/csv", "application/json"),
                description="CSV lines (or totals with `totals=true`), or JSON with `format=json`.",
            ),
            op(
                "GET",
                "/api/v1/reconciliation",
                self.reconciliation,
                "reconcileMonth",
                "Monthly reconciliation",
                "views",
                query=sc.ReconcileQuery,
                answer=dict[str, Any],
                media=("application/json", "text/csv"),
                description="Lines (booked, flagged, credit), totals per vehicle, driver, cost "
                "centre and legal entity, and exceptions; JSON, or one part as CSV "
                "(`format=csv&part=lines|totals|exceptions`).",
            ),
        ]
