"""OCPI 2.2.1, eMSP side: versions, credentials, the Tokens module (sender), and the
Sessions and CDRs modules (receiver) that close the authorizations hookgate gave."""

from __future__ import annotations

from typing import Any

from hookgate.authorization.service import AuthorizationService
from hookgate.config import Config
from hookgate.roaming.ocpi.http import OcpiApi
from hookgate.roaming.ocpi.parties import Parties
from hookgate.roaming.ocpi.tokens import TokenDesk
from hookgate.services.sessions import ChargingSessions
from hookgate.store.base import Store


def ocpi_app(
    config: Config,
    store: Store,
    authorization: AuthorizationService,
    sessions: ChargingSessions,
) -> Any:
    """The ASGI application of /ocpi/ (the composition root mounts it when enabled)."""
    parties = Parties(store, timeout=config.ocpi.client_timeout_seconds)
    desk = TokenDesk(config.ocpi, store, authorization, sessions)
    return OcpiApi(config.ocpi, parties, desk, config.server.max_body_bytes).app()
