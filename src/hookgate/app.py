"""The composition root: builds store, providers, engine and the ASGI app from a Config."""

from __future__ import annotations

import contextlib
import gc
import os
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
from hookgate.admin.rules import RulesApi
from hookgate.admin.slashes import relative_slash_redirects
from hookgate.admin.views import ViewsApi
from hookgate.alerts.evaluator import AlertLoop, start_alerts
from hookgate.authorization.service import AuthorizationService
from hookgate.config import PLACEHOLDER, Config, ZaptecSource
from hookgate.domain.errors import StoreError
from hookgate.ingress.asgi import Ingress, Receive, Scope, Send
from hookgate.metrics import Metrics
from hookgate.oauth import TokenIssuer
from hookgate.processing.worker import Workers
from hookgate.providers import build_providers
from hookgate.providers.base import Provider
from hookgate.sources.kafka import KafkaSource, start_kafka_sources, stop_kafka_sources
from hookgate.store import Store, make_store

log = structlog.get_logger("hookgate")

OAUTH_KEY = "oauth_signing_key"


class Gateway:
    """Everything one running gateway holds, created on start-up and closed on shutdown."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.store: Store = make_store(config.storage, self.metrics.commit_batch.observe)
        self.metrics.queued_writes.set_function(self.store.queued_writes)
        self.ingress: Ingress | None = None
        self.authorization: AuthorizationService | None = None
        self.workers: Workers | None = None
        self.providers: dict[str, Provider[Any]] | None = None
        self.kafka_sources: list[KafkaSource] = []
        self.alerts: AlertLoop | None = None

    async def start(self) -> None:
        """Open storage and wire the receivers; announce unusable sources."""
        await self.store.open()
        key = await self.store.secret(OAUTH_KEY, os.urandom(32))
        issuer = TokenIssuer(key)
        providers = build_providers(issuer)
        for source in self.config.sources:
            for warning in providers[source.provider].problems(source):
                log.warning("source misconfigured", source=source.name, problem=warning)
            if any(secret.startswith(PLACEHOLDER) for secret in source.credentials()):
                log.warning(
                    "source has a placeholder secret",
                    source=source.name,
                    problem=f"replace the {PLACEHOLDER}... value (see hookgate check-config)",
                )
        if not [t for t in self.config.admin.tokens if t]:
            log.warning("admin API disabled: [admin] tokens is empty")
        self.authorization = AuthorizationService(self.store, self.config.authorization)
        await self.authorization.start()
        self.providers = providers
        if self.config.processing.in_process:
            self.workers = Workers(self.store, self.config, providers, self.metrics)
            await self.workers.start()
        self.ingress = Ingress(
            self.config,
            self.store,
            providers,
            self.authorization,
            issuer,
            self.metrics,
            on_stored=self.workers.wake if self.workers is not None else None,
        )
        self.kafka_sources = await start_kafka_sources(
            self.config,
            self.store,
            providers,
            self.metrics,
            self.authorization,
            self.workers.wake if self.workers is not None else None,
        )
        self.alerts = start_alerts(self.config, self.store, self.metrics)
        # What start-up loaded (rules, tokens, code) lives as long as the process: keep it
        # out of the collector's way, and collect young objects less eagerly, so that a
        # full collection does not stall requests every fraction of a second under load.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        log.info(
            "hookgate started",
            sources=[s.name for s in self.config.sources],
            storage=self.config.storage.url.split("://")[0],
        )

    async def stop(self) -> None:
        """Stop consuming, finish background audit writes and the workers' batches, flush
        queued writes, close storage."""
        await stop_kafka_sources(self.kafka_sources)
        if self.alerts is not None:
            await self.alerts.stop()
        if self.ingress is not None:
            await self.ingress.drain()
        if self.workers is not None:
            await self.workers.stop()
        if self.authorization is not None:
            await self.authorization.stop()
        await self.store.close()
        log.info("hookgate stopped")


def create_app(config: Config) -> Any:
    """The ASGI application: provider hooks on a lean path, the rest through Starlette."""
    gateway = Gateway(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

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

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "error")
        return problem_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    admin = AdminApi(lambda: gateway.store, config.admin.tokens)
    rules = RulesApi(
        admin,
        lambda: gateway.store,
        lambda: gateway.authorization,
        [s.name for s in config.sources if isinstance(s, ZaptecSource)],
    )
    views = ViewsApi(admin, lambda: gateway.store, config, lambda: gateway.providers)
    web = Starlette(
        routes=[
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/healthz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *admin.routes(),
            *rules.routes(),
            *views.routes(),
            *AlertsApi(admin, lambda: gateway.store).routes(),
        ],
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    relative_slash_redirects(web.router)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ingress = gateway.ingress
        if scope["type"] == "http" and ingress is not None and scope["path"].startswith("/hooks/"):
            await ingress(scope, receive, send)
        else:
            await web(scope, receive, send)

    app.gateway = gateway  # type: ignore[attr-defined]
    return app
