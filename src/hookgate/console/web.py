"""The console's pages and actions as Starlette routes under /console.

Every page is a Jinja2 template over a plain dictionary, and `?format=json` answers that
dictionary itself (the page's JSON twin), so what the browser shows is what a script can
read. Filters live in the URL. Reads go through `hookgate.queries`, the store's query
methods and the services; changes go through the same services the admin API and the
command line use, and each is written to the audit log with the channel `console`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import msgspec
import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from msgspec.structs import asdict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hookgate import queries
from hookgate.authorization.csv_import import read_csv
from hookgate.config import Config
from hookgate.console import charts
from hookgate.console.auth import COOKIE, Session, Sessions
from hookgate.console.overview import ack_latency, attention, overview_data
from hookgate.domain.errors import HookgateError, StoreError
from hookgate.domain.queries import DecisionFilter, EventFilter, ReplayFilter, ViewFilter
from hookgate.export import lines_csv, report_json, totals_csv
from hookgate.ids import new_id
from hookgate.metrics import Metrics
from hookgate.ops.details import delivery_detail, payment_detail, session_detail, view_row
from hookgate.ops.replay import BadReplay, destination_names, public_destination
from hookgate.reconcile import (
    DIMENSIONS,
    GroupTotal,
    Reconciliation,
    reconciliation_csv,
    reconciliation_json,
)
from hookgate.services.operations import Operations
from hookgate.services.rerun import Reruns
from hookgate.services.rules import BUDGETS, GROUPS, TOKENS, RulesService
from hookgate.store import audit as audit_log
from hookgate.store import console as console_queries
from hookgate.store.base import Store
from hookgate.timeutil import parse_iso, utcnow

log = structlog.get_logger("hookgate.console")
HERE = Path(__file__).parent
NOTICE = "hookgate_console_notice"
MAX_FORM = 1024 * 1024  # a pasted CSV file of tokens at most
PAGE = 50
STATUSES = ("received", "processed", "failed", "quarantined")
DELIVERY_STATUSES = ("pending", "failed", "delivered", "dead")
DECISION_RESULTS = ("ALLOWED", "BLOCKED", "EXPIRED", "NO_CREDIT", "NOT_ALLOWED", "UNKNOWN")
GROUPINGS = dict(zip(DIMENSIONS, ("Vehicle", "Driver", "Cost centre", "Legal entity"), strict=True))
RECONCILIATION_PARTS = ("lines", "totals", "exceptions", "json")
# Lines of each list a reconciliation page shows; the downloads hold every line.
RECONCILIATION_SHOWN = 200
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}

Handler = Callable[[Request, Session], Awaitable[Response]]
Breakers = Callable[[], Mapping[str, str]]


class Refused(Exception):
    """An answer other than the page: a status and what to tell the operator."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def to_json(data: Any) -> bytes:
    """A page's data as JSON: structs, datetimes and decimals as msgspec writes them."""
    return msgspec.json.encode(data, enc_hook=_json_default)


def pretty_body(raw: bytes) -> str:
    """A stored body for reading: indented when it is JSON, as text otherwise."""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False, sort_keys=False)
    except (ValueError, UnicodeDecodeError):
        return raw.decode("utf-8", "replace")


def _query_string(params: Mapping[str, Any], **changes: Any) -> str:
    """The current filters with some changed (None drops one), as `?a=b`."""
    merged = {**params, **changes}
    pairs: list[tuple[str, str]] = []
    for key, value in merged.items():
        if value in (None, "", []):
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, str(item)))
    return "?" + urlencode(pairs) if pairs else ""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _when(value: Any) -> str:
    """An instant as `YYYY-MM-DD HH:MM:SS` UTC for tables."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = parse_iso(value)
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _meter_chart(meters: list[dict[str, Any]], prefix: str, title: str) -> Any:
    """A line of one measurand family (summed over phases per instant)."""
    points: dict[datetime, float] = {}
    unit = ""
    for m in meters:
        if not str(m.get("measurand", "")).startswith(prefix):
            continue
        try:
            value = float(m["value"])
        except (TypeError, ValueError):
            continue
        at = m["at"] if isinstance(m["at"], datetime) else parse_iso(str(m["at"]))
        points[at] = points.get(at, 0.0) + value
        unit = m.get("unit") or unit
    return charts.line(sorted(points.items()), title=title, unit=unit)


def _delivery_chart(stats: list[Any], now: datetime) -> Any:
    """Deliveries created per hour over the last day, stacked by outcome."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    buckets = [start + timedelta(hours=i) for i in range(24)]
    index = {b: i for i, b in enumerate(buckets)}
    series: dict[str, list[int]] = {s: [0] * 24 for s in DELIVERY_STATUSES}
    for stat in stats:
        at = index.get(stat.bucket.replace(minute=0, second=0, microsecond=0))
        if at is not None and stat.status in series:
            series[stat.status][at] += stat.count
    shown = [(name, values) for name, values in series.items() if any(values)]
    return {
        "svg": charts.bars(buckets, shown, title="Deliveries per hour by outcome, last day"),
        "legend": [name for name, _ in shown],
    }


def _per_currency(totals: list[GroupTotal]) -> list[dict[str, Any]]:
    """The totals of one grouping summed per currency (every line is in one key)."""
    sums: dict[str, dict[str, Any]] = {}
    for total in totals:
        entry = sums.setdefault(
            total.currency,
            {"currency": total.currency, "lines": 0, "incomplete": 0, "amounts": [None] * 3},
        )
        entry["lines"] += total.lines
        entry["incomplete"] += total.incomplete
        values = (total.amount_excl_vat, total.vat, total.total)
        for index, value in enumerate(values):
            if value is not None:
                entry["amounts"][index] = (entry["amounts"][index] or Decimal(0)) + Decimal(value)
    out = []
    for currency, entry in sorted(sums.items()):
        excl, vat, incl = (None if v is None else str(v) for v in entry.pop("amounts"))
        out.append(
            {**entry, "currency": currency, "amount_excl_vat": excl, "vat": vat, "total": incl}
        )
    return out


class Console:
    """The console over one store, configuration and the services the graph built."""

    def __init__(
        self,
        store: Store,
        config: Config,
        rules: RulesService,
        reruns: Reruns,
        operations: Operations,
        *,
        breakers: Breakers = dict,
        sessions: Sessions | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.rules = rules
        self.reruns = reruns
        self.operations = operations
        self.breakers = breakers
        self.metrics = metrics
        self.sessions = sessions or Sessions(
            config.admin.named(),
            idle=config.console.idle_seconds,
            lifetime=config.console.lifetime_seconds,
        )
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(qs=_query_string, age=_age, when=_when, charts=charts)
        self.env.filters["pretty"] = pretty_body
        self.env.filters["compact"] = lambda value: to_json(value).decode()

    # -- plumbing ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        """`/` sends a browser to the console; the console's pages, actions and assets."""
        page, act = self._page, self._action
        return [
            Route("/", self.root, methods=["GET"]),
            Mount(
                "/console",
                routes=[
                    Route("/", page(self.overview), methods=["GET"]),
                    Route("/login", self.login_form, methods=["GET"]),
                    Route("/login", self.login, methods=["POST"]),
                    Route("/logout", self.logout, methods=["POST"]),
                    Route("/events", page(self.events), methods=["GET"]),
                    Route("/events/{event_id}", page(self.event), methods=["GET"]),
                    Route("/events/{event_id}/replay", act(self.replay_event), methods=["POST"]),
                    Route("/events/{event_id}/reprocess", act(self.reprocess), methods=["POST"]),
                    Route("/rejections", page(self.rejections), methods=["GET"]),
                    Route("/rejections/{rejection_id}", page(self.rejection), methods=["GET"]),
                    Route("/rejections/{rejection_id}/rerun", act(self.rerun), methods=["POST"]),
                    Route("/deliveries", page(self.deliveries), methods=["GET"]),
                    Route("/deliveries/{delivery_id}", page(self.delivery), methods=["GET"]),
                    Route("/replay", act(self.bulk_replay), methods=["POST"]),
                    Route("/destinations/{name}/pause", act(self.pause), methods=["POST"]),
                    Route("/destinations/{name}/resume", act(self.resume), methods=["POST"]),
                    Route("/charging", page(self.charging), methods=["GET"]),
                    Route("/charging/sessions/{id}", page(self.session), methods=["GET"]),
                    Route("/tokens/{uid}/block", act(self.block), methods=["POST"]),
                    Route("/tokens/{uid}/unblock", act(self.unblock), methods=["POST"]),
                    Route("/tokens/import", act(self.import_tokens), methods=["POST"]),
                    Route("/parking", page(self.parking), methods=["GET"]),
                    Route("/payments/{id}", page(self.payment), methods=["GET"]),
                    Route("/costs", page(self.costs), methods=["GET"]),
                    Route("/costs/download", page(self.costs_download), methods=["GET"]),
                    Route("/reconciliation", page(self.reconciliation), methods=["GET"]),
                    Route(
                        "/reconciliation/download",
                        page(self.reconciliation_download),
                        methods=["GET"],
                    ),
                    Route("/decisions/{id}", page(self.decision), methods=["GET"]),
                    Route("/audit", page(self.audit), methods=["GET"]),
                    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
                ],
            ),
        ]

    async def root(self, _: Request) -> Response:
        return RedirectResponse("/console/", 307)

    async def _session(self, request: Request) -> Session | None:
        """The signed-in operator: a valid cookie whose session no instance signed out.
        When the sign-outs cannot be read, the cookie is refused (it may be one)."""
        session = self.sessions.check(request.cookies.get(COOKIE))
        if session is None:
            return None
        try:
            ended = await self.store.sql_read(
                functools.partial(console_queries.revoked, nonce=session.nonce)
            )
        except StoreError as exc:
            log.error("console sign-outs unreadable: session refused", error=str(exc))
            return None
        return None if ended else session

    @staticmethod
    def _secure(request: Request) -> bool:
        """Whether the browser reached us over TLS (directly or through a proxy)."""
        forwarded = request.headers.get("x-forwarded-proto", "")
        return request.url.scheme == "https" or forwarded.split(",")[0].strip() == "https"

    def _set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.sessions.lifetime,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )

    def _render(
        self, request: Request, template: str, data: dict[str, Any], session: Session | None
    ) -> Response:
        notice = unquote(request.cookies.get(NOTICE) or "") or None
        context = {
            **data,
            "request": request,
            "session": session,
            "params": dict(request.query_params),
            "notice": notice,
            "path": request.url.path,
        }
        body = self.env.get_template(template).render(context)
        response = HTMLResponse(body)
        if notice:
            response.delete_cookie(NOTICE, path="/console")
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def _page(
        self, handler: Callable[[Request, Session], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """A page for a signed-in operator: HTML, or its data with `?format=json`."""

        async def run(request: Request) -> Response:
            wants_json = request.query_params.get("format") == "json"
            session = await self._session(request)
            if session is None:
                if wants_json:
                    return self._problem(401, "sign in to the console first")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse("/console/login" + _query_string({"next": target}), 303)
            try:
                result = await handler(request, session)
            except Refused as exc:
                if wants_json:
                    return self._problem(exc.status, exc.detail)
                response = self._render(
                    request, "error.html", {"status": exc.status, "detail": exc.detail}, session
                )
                response.status_code = exc.status
                return response
            except HookgateError as exc:
                status = 503 if isinstance(exc, StoreError) else 400
                if wants_json:
                    return self._problem(status, str(exc))
                response = self._render(
                    request, "error.html", {"status": status, "detail": str(exc)}, session
                )
                response.status_code = status
                return response
            if isinstance(result, Response):
                response = result
            else:
                template, data = result
                if wants_json:
                    response = Response(to_json(data), media_type="application/json")
                else:
                    response = self._render(request, template, data, session)
            fresh = self.sessions.refreshed(session)
            if fresh:
                self._set_cookie(request, response, fresh)
            return response

        return run

    @staticmethod
    def _problem(status: int, detail: str) -> Response:
        body = {"type": "about:blank", "title": detail, "status": status, "detail": detail}
        return Response(to_json(body), status, media_type="application/problem+json")

    @staticmethod
    async def _form(request: Request) -> dict[str, str]:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_FORM:
                raise Refused(413, f"the form is over {MAX_FORM} bytes")
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def _action(
        self,
        handler: Callable[
            [Request, Session, dict[str, str]], Awaitable[tuple[str, str] | Response]
        ],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A change: signed in, a write token, the session's CSRF token in the form; then
        the handler's (where to go back, what to tell) as a redirect, audited."""

        async def run(request: Request) -> Response:
            session = await self._session(request)
            if session is None:
                return self._problem(401, "sign in to the console first")
            try:
                form = await self._form(request)
            except Refused as exc:
                return self._problem(exc.status, exc.detail)
            if not self.sessions.csrf_ok(session, form.get("csrf")):
                log.warning("console change refused: csrf", actor=session.actor.name)
                return self._problem(403, "the form's CSRF token is missing or wrong: reload it")
            name = handler.__name__
            if not session.can_write:
                await self._audit(request, session, name, form, 403)
                return self._problem(
                    403, f"{session.actor.name!r} may only look: changes need a write token"
                )
            back = form.get("back") or "/console/"
            if not back.startswith("/console"):
                back = "/console/"
            try:
                result = await handler(request, session, form)
                if isinstance(result, Response):
                    await self._audit(request, session, name, form, result.status_code)
                    return result
                back, message = result
                status = 200
            except (Refused, HookgateError, BadReplay) as exc:
                status = exc.status if isinstance(exc, Refused) else 400
                if isinstance(exc, StoreError):
                    status = 503
                message = f"Not done: {exc.detail if isinstance(exc, Refused | BadReplay) else exc}"
            await self._audit(request, session, name, form, status)
            response = RedirectResponse(back, 303)
            response.set_cookie(
                NOTICE,
                quote(message[:500]),  # any text, as a cookie can carry it
                max_age=60,
                path="/console",
                httponly=True,
                samesite="strict",
                secure=self._secure(request),
            )
            return response

        return run

    async def _audit(
        self, request: Request, session: Session, action: str, form: dict[str, str], status: int
    ) -> None:
        detail: dict[str, Any] = {k: v for k, v in form.items() if k not in ("csrf", "back", "csv")}
        if "csv" in form:
            detail["csv_bytes"] = len(form["csv"])
        outcome: audit_log.Outcome = (
            "ok" if status < 400 else "refused" if status < 500 else "failed"
        )
        record = audit_log.AuditRecord(
            id=new_id(),
            at=utcnow(),
            actor=session.actor.name,
            channel="console",
            action=action,
            target="/".join(str(v) for v in request.path_params.values()) or None,
            detail=detail,
            outcome=outcome,
            status=status,
        )
        try:
            await audit_log.record(self.store, record)
        except StoreError as exc:
            log.error("audit entry not recorded", action=action, error=str(exc))

    # -- sign-in -------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        data = {"error": None, "next": request.query_params.get("next", "/console/")}
        return self._render(request, "login.html", data, None)

    async def login(self, request: Request) -> Response:
        try:
            form = await self._form(request)
        except Refused as exc:
            return self._problem(exc.status, exc.detail)
        target = form.get("next") or "/console/"
        if not target.startswith("/console") or target.startswith("/console//"):
            target = "/console/"
        actor = self.sessions.match(form.get("token", "").strip())
        if actor is None:
            error = (
                "No admin tokens are configured ([admin] tokens in the configuration)."
                if not self.sessions.configured
                else "That is not a configured admin token."
            )
            response = self._render(request, "login.html", {"error": error, "next": target}, None)
            response.status_code = 401
            return response
        _, cookie = self.sessions.begin(actor)
        response = RedirectResponse(target, 303)
        self._set_cookie(request, response, cookie)
        log.info("console sign-in", actor=actor.name)
        return response

    async def logout(self, request: Request) -> Response:
        session = await self._session(request)
        if session is not None:
            form = await self._form(request)
            if not self.sessions.csrf_ok(session, form.get("csrf")):
                return self._problem(403, "the form's CSRF token is missing or wrong: reload it")
            until = self.sessions.end(session)
            try:
                await self.store.sql_write(
                    functools.partial(
                        console_queries.revoke,
                        nonce=session.nonce,
                        expires_at=datetime.fromtimestamp(until, UTC),
                    )
                )
            except StoreError as exc:  # this instance and the browser still forget it
                log.error("console sign-out not recorded", actor=session.actor.name, error=str(exc))
            log.info("console sign-out", actor=session.actor.name)
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- overview ------------------------------------------------------------------------

    async def overview(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        window = request.query_params.get("window", "hour")
        if window not in WINDOWS:
            raise Refused(400, f"window is one of {', '.join(WINDOWS)}, not {window!r}")
        data = await overview_data(
            self.store, self.config, window, WINDOWS[window], self.breakers(), utcnow()
        )
        data["attention"] = await attention(self.store, self.config, data, self.breakers())
        data["ack_latency"] = ack_latency(self.metrics)
        return "overview.html", data

    # -- events --------------------------------------------------------------------------

    async def events(self, request: Request, session: Session) -> Any:
        p = request.query_params
        text = p.get("q") or None
        fields = [f for f in p.getlist("field") if f.strip()]
        status = p.get("status") or None
        if status is not None and status not in STATUSES:
            raise Refused(400, f"status is one of {', '.join(STATUSES)}, not {status!r}")
        source = p.get("source") or None
        event_type = p.get("type") or None
        cursor = p.get("cursor") or None
        if text or fields:
            found = await queries.search_events(
                self.store,
                text=text,
                where=fields,
                source=source,
                event_type=event_type,
                status=status,
                cursor=cursor,
                limit=PAGE,
            )
            items = [msgspec.to_builtins(hit) for hit in found.items]
            following = found.next
            searched = True
        else:
            where = EventFilter(source=source, event_type=event_type, status=status)
            page = await self.store.list_events(where, cursor, PAGE)
            items = [{**asdict(item), "event_type": item.type} for item in page.items]
            following = page.next
            searched = False
        for item in items:
            item.pop("document", None)
        data = {
            "items": items,
            "next": following,
            "searched": searched,
            "sources": [s.name for s in self.config.sources],
            "statuses": STATUSES,
            "fields": fields,
        }
        if p.get("fragment") == "rows":
            body = self.env.get_template("event_rows.html").render(data)
            return HTMLResponse(body, headers={"Cache-Control": "no-store"})
        return "events.html", data

    async def event(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        event_id = request.path_params["event_id"]
        item = await self.store.get_event(event_id)
        if item is None:
            raise Refused(404, f"no event with id {event_id}")
        event = asdict(item)
        raw: bytes = event.pop("raw_body")
        outcome = await self.store.sql_read(
            functools.partial(console_queries.processing_outcome, event_id=event_id)
        )
        page = await self.store.list_deliveries(ViewFilter(equal={"event_id": event_id}), None, 100)
        deliveries = []
        for delivery in page.items:
            history = await self.store.delivery_attempts(delivery.id)
            deliveries.append({**asdict(delivery), "history": history})
        data = {
            "event": event,
            "outcome": outcome or {},
            "body": pretty_body(raw),
            "body_bytes": len(raw),
            "deliveries": deliveries,
            "destinations": destination_names(self.config),
        }
        return "event.html", data

    async def replay_event(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        event_id = request.path_params["event_id"]
        destination = form.get("destination") or None
        queued = await self.operations.replay_event(event_id, destination)
        where = f"to {destination}" if destination else "to every destination it was meant for"
        return f"/console/events/{event_id}", f"Replay queued {queued} deliveries {where}."

    async def reprocess(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        event_id = request.path_params["event_id"]
        result = await self.reruns.reprocess(event_id)
        return f"/console/events/{event_id}", f"Reprocess: {result.status}, {result.detail}."

    # -- rejections ----------------------------------------------------------------------

    async def rejections(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        p = request.query_params
        window = p.get("window", "day")
        if window not in WINDOWS:
            raise Refused(400, f"window is one of {', '.join(WINDOWS)}, not {window!r}")
        source = p.get("source") or None
        now = utcnow()
        groups = await queries.rejections(
            self.store, since=now - WINDOWS[window], until=now, source=source
        )
        groups.sort(key=lambda g: -g.total)
        page = await self.store.list_rejections(source, p.get("cursor") or None, PAGE)
        reason = p.get("reason") or None
        items = [asdict(r) for r in page.items if reason in (None, r.reason)]
        for item in items:
            item.pop("body", None)
        data = {
            "groups": groups,
            "total": sum(g.total for g in groups),
            "items": items,
            "next": page.next,
            "sources": [s.name for s in self.config.sources],
            "window": window,
        }
        return "rejections.html", data

    async def rejection(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        rejection_id = request.path_params["rejection_id"]
        item = await self.store.get_rejection(rejection_id)
        if item is None:
            raise Refused(404, f"no rejection with id {rejection_id}")
        rejection = asdict(item)
        raw = rejection.pop("body", None)
        rejection.pop("replay", None)  # the stored call a re-run sends again: not for display
        body = pretty_body(raw) if isinstance(raw, bytes) and raw else None
        return "rejection.html", {"rejection": rejection, "body": body}

    async def rerun(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        rejection_id = request.path_params["rejection_id"]
        result = await self.reruns.rerun(rejection_id)
        back = f"/console/events/{result.event_id}" if result.event_id else form.get("back", "")
        return back, f"Re-run: {result.status}, {result.detail}."

    # -- deliveries and destinations -----------------------------------------------------

    async def _destinations(self) -> list[dict[str, Any]]:
        states = await self.store.destination_states()
        breakers = self.breakers()
        now = utcnow()
        stats = await queries.deliveries(self.store, since=now - timedelta(days=1), until=now)
        out = []
        for destination in self.config.destinations:
            row = msgspec.to_builtins(public_destination(destination, states.get(destination.name)))
            counts = {s.status: s.count for s in stats if s.destination == destination.name}
            last = await self.store.list_deliveries(
                ViewFilter(equal={"destination": destination.name}), None, 1
            )
            row["breaker"] = breakers.get(destination.name, "unknown")
            row["counts"] = counts
            row["last_error"] = last.items[0].last_error if last.items else None
            out.append(row)
        return out

    async def deliveries(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        p = request.query_params
        status = p.get("status") or None
        if status is not None and status not in DELIVERY_STATUSES:
            raise Refused(400, f"status is one of {', '.join(DELIVERY_STATUSES)}, not {status!r}")
        equal = {k: v for k in ("destination", "event_id") if (v := p.get(k))}
        if status:
            equal["status"] = status
        page = await self.store.list_deliveries(
            ViewFilter(equal=equal), p.get("cursor") or None, PAGE
        )
        now = utcnow()
        hourly = await queries.deliveries(
            self.store,
            grain="hour",
            since=now - timedelta(days=1),
            until=now,
            destination=p.get("destination") or None,
        )
        data = {
            "destinations": await self._destinations(),
            "chart": _delivery_chart(hourly, now),
            "items": page.items,
            "next": page.next,
            "statuses": DELIVERY_STATUSES,
            "sources": [s.name for s in self.config.sources],
        }
        return "deliveries.html", data

    async def delivery(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        item = await delivery_detail(self.store, request.path_params["delivery_id"])
        if item is None:
            raise Refused(404, "no delivery with this id")
        return "delivery.html", {"delivery": item}

    async def bulk_replay(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        since = form.get("since") or None
        where = ReplayFilter(
            source=form.get("source") or None,
            since=queries.parse_instant(since, "since"),
            status=form.get("status") or None,
            destination=form.get("destination") or None,
        )
        dry_run = form.get("dry_run") == "1"
        queued = await self.operations.replay(where, dry_run=dry_run)
        chosen = {k: form.get(k) for k in ("destination", "status", "source", "since")}
        back = "/console/deliveries" + _query_string(
            {k: v for k, v in chosen.items() if k != "since"}
        )
        if dry_run:
            return back, f"Dry run: {queued} deliveries would be sent again. Nothing was queued."
        return back, f"Replay queued {queued} deliveries."

    async def _disable(self, request: Request, reason: str | None) -> str:
        name = str(request.path_params["name"])
        if name not in destination_names(self.config):
            raise Refused(404, f"no destination named {name!r} is configured")
        await self.store.set_destination_disabled(name, reason)
        return name

    async def pause(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        name = await self._disable(
            request, form.get("reason") or f"paused by {session.actor.name} in the console"
        )
        return "/console/deliveries", f"Destination {name} paused: deliveries queue until resumed."

    async def resume(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        name = await self._disable(request, None)
        return "/console/deliveries", f"Destination {name} resumed."

    # -- charging ------------------------------------------------------------------------

    async def charging(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        p = request.query_params
        token_filter = {k: v for k in ("group_id", "status") if (v := p.get(k))}
        tokens, more_tokens = await self.rules.page(
            TOKENS, token_filter, p.get("after") or None, PAGE
        )
        groups, _ = await self.rules.page(GROUPS, {}, None, 200)
        budgets, _ = await self.rules.page(BUDGETS, {}, None, 200)
        engine_ready = True
        budget_rows = []
        for listed in budgets:
            row = listed.document()
            used = self.rules.usage(listed.entity)  # type: ignore[arg-type]
            engine_ready = engine_ready and bool(used)
            row.update(used)
            budget_rows.append(row)
        decisions = await self.store.list_decisions(
            DecisionFilter(token=p.get("token") or None, result=p.get("result") or None),
            p.get("decisions_cursor") or None,
            25,
        )
        sessions = await self.store.list_view(
            "charging_sessions",
            ViewFilter(
                equal={"token": p["token"]} if p.get("token") else {}, time_column="started_at"
            ),
            None,
            25,
        )
        data = {
            "tokens": [t.document() for t in tokens],
            "tokens_next": more_tokens,
            "groups": [g.document() for g in groups],
            "budgets": budget_rows,
            "engine_ready": engine_ready,
            "decisions": decisions.items,
            "decisions_next": decisions.next,
            "results": DECISION_RESULTS,
            "sessions": sessions.items,
        }
        return "charging.html", data

    async def session(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        item = await session_detail(self.store, request.path_params["id"], self.config.rates())
        if item is None:
            raise Refused(404, "no charging session with this id")
        decisions = await self.store.list_decisions(
            DecisionFilter(source=item.get("source"), token=item.get("token")), None, 50
        )
        own = [d for d in decisions.items if d.session_id == item.get("session_key")]
        meters = item.get("meter_values") or []
        data = {
            "charging_session": item,
            "decisions": own or decisions.items[:10],
            "decisions_exact": bool(own),
            "chart_energy": _meter_chart(meters, "Energy", "Energy over the session"),
            "chart_power": _meter_chart(meters, "Power", "Power over the session"),
        }
        return "session.html", data

    async def _status(self, request: Request, status: str) -> str:
        uid = request.path_params["uid"]
        _, changed = await self.rules.set_status(TOKENS, uid, status)
        word = "blocked" if status == "blocked" else "valid again"
        return f"Token {uid} {word}." if changed else f"Token {uid} was already {status}."

    async def block(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        return "/console/charging", await self._status(request, "blocked")

    async def unblock(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> tuple[str, str]:
        return "/console/charging", await self._status(request, "valid")

    async def import_tokens(
        self, request: Request, session: Session, form: dict[str, str]
    ) -> Response:
        """Preview (nothing written) or import a CSV file of tokens; the charging page
        comes back with every bad row listed, and nothing is written while any is bad."""
        text = form.get("csv", "")
        if not text.strip():
            raise Refused(400, "paste or choose a CSV file of tokens first")
        parsed = read_csv(text, known_sources=[s.name for s in self.config.sources])
        dry_run = form.get("apply") != "1"
        report = await self.rules.import_tokens(parsed, dry_run=dry_run)
        errors = sorted([*parsed.errors, *report.errors], key=lambda e: (e.line, e.column))
        _, data = await self.charging(request, session)
        data["preview"] = {
            "applied": report.written,
            "created": report.created,
            "updated": report.updated,
            "budgets_set": report.budgets_set,
            "rows": parsed.rows,
            "errors": [{"line": e.line, "column": e.column, "message": e.message} for e in errors],
        }
        data["csv_text"] = "" if report.written else text
        response = self._render(request, "charging.html", data, session)
        response.status_code = 422 if errors else 200
        return response

    # -- parking, payments and costs -----------------------------------------------------

    async def parking(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        p = request.query_params
        plate = p.get("license_number") or None
        parking = await self.store.list_view(
            "parking_transactions",
            ViewFilter(equal={"license_number": plate} if plate else {}, time_column="ended_at"),
            p.get("cursor") or None,
            PAGE,
        )
        payments = await self.store.list_view(
            "payment_objects",
            ViewFilter(
                equal={"state": p["state"]} if p.get("state") else {}, time_column="updated_at"
            ),
            p.get("payments_cursor") or None,
            PAGE,
        )
        data = {
            "parking": parking.items,
            "parking_next": parking.next,
            "payments": payments.items,
            "payments_next": payments.next,
        }
        return "parking.html", data

    async def payment(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        item = await payment_detail(self.store, request.path_params["id"])
        if item is None:
            raise Refused(404, "no payment object with this id")
        return "payment.html", {"payment": item}

    def _month(self, request: Request) -> str:
        month = request.query_params.get("month") or utcnow().strftime("%Y-%m")
        return month

    async def costs(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        month = self._month(request)
        try:
            report = await self.operations.export(month)
        except BadReplay as exc:
            raise Refused(400, exc.detail) from None
        centres: dict[tuple[str, str], list[Any]] = {}
        for line in report.lines:
            key = (line.cost_centre or "(none)", line.currency or "")
            entry = centres.setdefault(key, [0, Decimal(0)])
            entry[0] += 1
            entry[1] += Decimal(line.total) if line.total else Decimal(0)
        rows = [(t.vehicle, float(t.total or 0)) for t in report.totals]
        currency = report.totals[0].currency if report.totals else ""
        data = {
            "month": month,
            "report": report,
            "centres": [
                {"cost_centre": c, "currency": cur, "lines": n, "total": str(total)}
                for (c, cur), (n, total) in sorted(centres.items())
            ],
            "chart": charts.hbars(rows[:30], title=f"Total per vehicle, {month}", unit=currency),
        }
        return "costs.html", data

    async def costs_download(self, request: Request, session: Session) -> Response:
        month = self._month(request)
        try:
            report = await self.operations.export(month)
        except BadReplay as exc:
            raise Refused(400, exc.detail) from None
        kind = request.query_params.get("as", "csv")
        if kind == "json":
            return Response(
                report_json(report),
                media_type="application/json",
                headers={"Content-Disposition": f'attachment; filename="fleet-costs-{month}.json"'},
            )
        totals = kind == "totals"
        text = totals_csv(report) if totals else lines_csv(report)
        name = f"fleet-costs-{month}" + ("-totals" if totals else "") + ".csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -- monthly reconciliation ----------------------------------------------------------

    async def _reconcile(self, request: Request) -> tuple[str, Reconciliation]:
        month = self._month(request)
        try:
            return month, await self.operations.reconcile(month)
        except BadReplay as exc:
            raise Refused(400, exc.detail) from None

    async def reconciliation(
        self, request: Request, session: Session
    ) -> tuple[str, dict[str, Any]]:
        """The month's lines, flagged lines and credits apart, totals per key of one
        grouping and per currency, and the two lists that do not match up."""
        group = request.query_params.get("group") or DIMENSIONS[0]
        if group not in GROUPINGS:
            raise Refused(400, f"group is one of {', '.join(GROUPINGS)}, not {group!r}")
        month, result = await self._reconcile(request)
        sections: dict[str, list[Any]] = {"booked": [], "flagged": [], "credit": []}
        for line in result.lines:
            sections[line.section].append(line)
        credits = []
        for line in sections["credit"][:RECONCILIATION_SHOWN]:
            original = line.references and await view_row(
                self.store, "charging_sessions", line.references
            )
            credits.append({**asdict(line), "original_found": bool(original)})
        totals = [t for t in result.totals if t.dimension == group]
        unauthorized = [p for p in result.exceptions if p.problem == "unauthorized_session"]
        without_session = [p for p in result.exceptions if p.problem == "decision_without_session"]
        data = {
            "month": month,
            "timezone": result.timezone,
            "group": group,
            "groupings": GROUPINGS,
            "currencies": _per_currency(totals),
            "totals": totals,
            # Each list is cut at RECONCILIATION_SHOWN lines (the downloads hold them all);
            # `counts` says how many there are.
            "counts": {
                "lines": len(sections["booked"]),
                "flagged": len(sections["flagged"]),
                "credits": len(sections["credit"]),
                "unauthorized": len(unauthorized),
                "without_session": len(without_session),
            },
            "shown": RECONCILIATION_SHOWN,
            "lines": sections["booked"][:RECONCILIATION_SHOWN],
            "flagged": sections["flagged"][:RECONCILIATION_SHOWN],
            "credits": credits,
            "unauthorized": unauthorized[:RECONCILIATION_SHOWN],
            "without_session": without_session[:RECONCILIATION_SHOWN],
            "downloads": {
                part: "/console/reconciliation/download"
                + _query_string({"month": month, "as": part})
                for part in RECONCILIATION_PARTS
            },
        }
        return "reconciliation.html", data

    async def reconciliation_download(self, request: Request, session: Session) -> Response:
        """The files `hookgate reconcile` and `GET /api/v1/reconciliation` answer."""
        part = request.query_params.get("as", "lines")
        if part not in RECONCILIATION_PARTS:
            raise Refused(400, f"as is one of {', '.join(RECONCILIATION_PARTS)}, not {part!r}")
        month, result = await self._reconcile(request)
        if part == "json":
            name = f"reconciliation-{month}.json"
            body: str | bytes = reconciliation_json(result)
            media = "application/json"
        else:
            name = f"reconciliation-{month}-{part}.csv"
            body = reconciliation_csv(result, part)
            media = "text/csv; charset=utf-8"
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    async def decision(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        """One authorization decision and the sessions reported under its session id (a
        Zaptec sessionId, an OCPI authorization_reference)."""
        decision_id = str(request.path_params["id"])
        item = await self.store.sql_read(
            functools.partial(console_queries.decision, decision_id=decision_id)
        )
        if item is None:
            raise Refused(404, f"no decision with id {decision_id}")
        sessions = []
        if item.session_id:
            sessions = await self.store.view_rows(
                "charging_sessions", ViewFilter(equal={"session_key": item.session_id})
            )
        return "decision.html", {"decision": item, "sessions": sessions}

    # -- audit ---------------------------------------------------------------------------

    async def audit(self, request: Request, session: Session) -> tuple[str, dict[str, Any]]:
        page = await audit_log.page(
            self.store, audit_log.AuditFilter(), request.query_params.get("cursor") or None, PAGE
        )
        return "audit.html", {"items": page.items, "next": page.next}
