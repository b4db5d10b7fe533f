"""The ASGI application over the graph `bootstrap` builds: provider hooks on a lean path,
the admin API and health endpoints through Starlette."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hookgate.admin.alerts import AlertsApi
from hookgate.admin.api import AdminApi, json_response, problem_response
from hookgate.admin.docs import contract_routes
from hookgate.admin.insights import InsightsApi
from hookgate.admin.rules import RulesApi
from hookgate.admin.slashes import relative_slash_redirects
from hookgate.admin.tariffs import TariffsApi
from hookgate.admin.views import ViewsApi
from hookgate.bootstrap import Graph, bootstrap
from hookgate.config import Config
from hookgate.console.web import Console
from hookgate.domain.errors import StoreError
from hookgate.ingress.asgi import Receive, Scope, Send
from hookgate.roaming.ocpi import ocpi_app

log = structlog.get_logger("hookgate")


def create_app(config: Config, graph: Graph | None = None) -> Any:
    """The ASGI application: provider hooks on a lean path, the rest through Starlette."""
    gateway = graph or bootstrap(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            await gateway.serve()
            yield
        finally:
            await gateway.close()

    async def livez(_: Request) -> Response:
        """Liveness: the process runs and its event loop answers. Storage is not looked
        at, so an orchestrator does not restart instances for a database outage."""
        return json_response({"status": "ok"})

    async def readyz(_: Request) -> Response:
        """Readiness (also `/healthz`): started with every migration applied, the
        database answers, the writer runs and a commit succeeded in the last few seconds
        or a probe write commits now. `503` while writes fail (a full disk)."""
        if gateway.ingress is None:
            return json_response({"status": "unavailable", "storage": "starting"}, 503)
        try:
            await gateway.store.ping()
        except StoreError as exc:
            return json_response({"status": "unavailable", "storage": str(exc)}, 503)
        return json_response({"status": "ok"})

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def server_error(_: Request, exc: Exception) -> Response:
        """A bug is still a problem answer; the server logs its traceback."""
        return problem_response(500, "internal-error", "the request failed inside hookgate")

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "error")
        return problem_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    admin = AdminApi(gateway.store, config.admin.named())
    rules = RulesApi(admin, gateway.rules)
    views = ViewsApi(admin, gateway.store, config, gateway.reruns, gateway.operations)
    alerts = AlertsApi(admin, gateway.store)
    insights = InsightsApi(gateway.store, config)
    tariffs = TariffsApi(config.rates())
    # Every /api/v1 endpoint, declared once: the routes and the OpenAPI document.
    operations = [
        *admin.operations(),
        *rules.operations(),
        *views.operations(),
        *alerts.operations(),
        *insights.operations(),
        *tariffs.operations(),
    ]
    workers = gateway

    def breakers() -> dict[str, str]:
        """Breaker states of this process's delivery worker (none before serving)."""
        running = workers.workers
        if running is None:
            return {}
        return {name: b.state for name, b in running.delivery.breakers.items()}

    console = Console(
        gateway.store,
        config,
        gateway.rules,
        gateway.reruns,
        gateway.operations,
        breakers=breakers,
        metrics=gateway.metrics,
    )
    web = Starlette(
        routes=[
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/healthz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *admin.routes_of(operations),
            *contract_routes(operations),
            *console.routes(),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    relative_slash_redirects(web.router)
    ocpi = (
        ocpi_app(config, gateway.store, gateway.authorization, gateway.sessions)
        if config.ocpi.enabled
        else None
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ingress = gateway.ingress
        if scope["type"] == "http" and ingress is not None and scope["path"].startswith("/hooks/"):
            await ingress(scope, receive, send)
        elif ocpi is not None and scope["type"] == "http" and scope["path"].startswith("/ocpi/"):
            await ocpi(scope, receive, send)
        else:
            await web(scope, receive, send)

    app.gateway = gateway  # type: ignore[attr-defined]
    app.web = web  # type: ignore[attr-defined]  # its routes are the published contract
    app.console = console  # type: ignore[attr-defined]
    return app
