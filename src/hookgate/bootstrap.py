"""The composition root: one graph of hookgate's parts, built the same way for `serve`,
`worker` and every command.

`bootstrap(config)` builds every object at once and opens nothing, so each part is handed
the others it uses when it is made (no late binding through callables). Opening is
separate and by need: a command opens storage only; one that shows budgets loads the
engine read-only; `serve` writes the configuration's rules, starts the engine's
change-log follower, the workers, the HTTP ingress and the Kafka sources.
"""

from __future__ import annotations

import gc
import os
from typing import Any

import structlog

from hookgate import tracing
from hookgate.alerts.evaluator import AlertLoop, start_alerts
from hookgate.authorization.service import AuthorizationService
from hookgate.config import PLACEHOLDER, Config
from hookgate.ingress.asgi import Ingress
from hookgate.ingress.pipeline import Pipeline
from hookgate.metrics import Metrics
from hookgate.oauth import TokenIssuer
from hookgate.processing.worker import Workers
from hookgate.providers import build_providers, deciding_sources
from hookgate.providers.base import Provider
from hookgate.services.operations import Operations
from hookgate.services.rerun import Reruns
from hookgate.services.rules import RulesService
from hookgate.services.sessions import ChargingSessions
from hookgate.sources.kafka import KafkaSource, start_kafka_sources, stop_kafka_sources
from hookgate.store import Store, make_store

log = structlog.get_logger("hookgate")

# The store's name of the key that signs the OAuth tokens Zaptec sources are issued.
OAUTH_KEY = "oauth_signing_key"


class Graph:
    """Everything one hookgate process holds; `close()` releases what was opened."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.store: Store = make_store(config.storage, self.metrics.commit_batch.observe)
        self.metrics.queued_writes.set_function(self.store.queued_writes)
        self.issuer = TokenIssuer()
        self.providers: dict[str, Provider[Any]] = build_providers(self.issuer)
        self.authorization = AuthorizationService(self.store, config.authorization)
        self.workers: Workers | None = None
        self.pipeline = Pipeline(
            config, self.store, self.authorization, self.metrics, self._event_stored
        )
        self.sessions = ChargingSessions(
            self.store, self.authorization, self.metrics, rates=config.rates()
        )
        self.rules = RulesService(self.store, config.authorization, deciding_sources(config))
        self.reruns = Reruns(self.store, config, self.providers, self.pipeline)
        self.operations = Operations(self.store, config)
        # Set once serving: the hot path of provider calls (app.py routes to it).
        self.ingress: Ingress | None = None
        self.kafka_sources: list[KafkaSource] = []
        self.alerts: AlertLoop | None = None
        self._opened = False
        self._engine_loaded = False
        self._traced = False

    def _event_stored(self) -> None:
        if self.workers is not None:
            self.workers.wake()

    # -- opening by need ---------------------------------------------------------------

    async def open(self) -> None:
        """Open storage (migrating it when the configuration says so)."""
        await self.store.open()
        self._opened = True

    async def load_signing_key(self) -> None:
        """Read (or create, on first start) the token-signing key the store keeps."""
        self.issuer.use_key(await self.store.secret(OAUTH_KEY, os.urandom(32)))

    async def load_engine(self) -> AuthorizationService:
        """The engine as a server on this configuration would hold it, loaded read-only
        (for commands: nothing is written, no follower runs)."""
        if not self._engine_loaded:
            await self.authorization.load_read_only()
            self.rules.engine = self.authorization
            self._engine_loaded = True
        return self.authorization

    def _trace(self) -> None:
        """Turn tracing on for a serving or working process (`[tracing] enabled`)."""
        if not self._traced:
            self._traced = tracing.install(self.config.tracing)

    async def start_workers(self) -> Workers:
        """Start the processing and delivery loops."""
        self._trace()
        self.workers = Workers(self.store, self.config, self.providers, self.metrics)
        await self.workers.start()
        return self.workers

    def start_alerts(self) -> None:
        """Start evaluating the alert rules (when `[alerts] enabled`)."""
        self.alerts = start_alerts(self.config, self.store, self.metrics)

    async def serve(self) -> None:
        """Open everything a serving gateway runs; announce unusable sources."""
        self._trace()
        await self.open()
        await self.load_signing_key()
        for source in self.config.sources:
            for warning in self.providers[source.provider].problems(source):
                log.warning("source misconfigured", source=source.name, problem=warning)
            if any(secret.startswith(PLACEHOLDER) for secret in source.credentials()):
                log.warning(
                    "source has a placeholder secret",
                    source=source.name,
                    problem=f"replace the {PLACEHOLDER}... value (see hookgate check-config)",
                )
        if not self.config.admin.named():
            log.warning("admin API disabled: [admin] tokens is empty")
        await self.authorization.start()
        self._engine_loaded = True
        self.rules.engine = self.authorization
        if self.config.processing.in_process:
            await self.start_workers()
        self.ingress = Ingress(
            self.config,
            self.store,
            self.providers,
            self.authorization,
            self.issuer,
            self.metrics,
            sessions=self.sessions,
            pipeline=self.pipeline,
        )
        self.kafka_sources = await start_kafka_sources(
            self.config,
            self.store,
            self.providers,
            self.metrics,
            self.authorization,
            pipeline=self.pipeline,
        )
        self.start_alerts()
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

    async def close(self) -> None:
        """Stop consuming, finish background audit writes and the workers' batches, flush
        queued writes, close storage. Closing again does nothing."""
        await stop_kafka_sources(self.kafka_sources)
        self.kafka_sources = []
        if self.alerts is not None:
            await self.alerts.stop()
            self.alerts = None
        serving, self.ingress = self.ingress, None
        if serving is not None:
            await serving.drain()
        if self.workers is not None:
            await self.workers.stop()
            self.workers = None
        await self.authorization.stop()
        if self._opened:
            await self.store.close()
            self._opened = False
        if self._traced:
            tracing.uninstall()
            self._traced = False
        if serving is not None:
            log.info("hookgate stopped")


def bootstrap(config: Config, metrics: Metrics | None = None) -> Graph:
    """The graph of one process on this configuration, built and not yet opened."""
    return Graph(config, metrics)
