"""One module per provider; `build_providers` is the registry the ingress uses."""

from __future__ import annotations

from typing import Any

from hookgate.config import Config, ZaptecSource
from hookgate.oauth import TokenIssuer
from hookgate.providers.ampeco import Ampeco
from hookgate.providers.base import Provider
from hookgate.providers.easypark import EasyPark
from hookgate.providers.zaptec import Zaptec
from hookgate.providers.ztlment import Ztlment


def build_providers(issuer: TokenIssuer) -> dict[str, Provider[Any]]:
    """Provider name (as in `[[sources]] provider = ...`) to its receiver."""
    return {
        "zaptec": Zaptec(issuer),
        "ampeco": Ampeco(),
        "easypark": EasyPark(),
        "ztlment": Ztlment(),
    }


def zaptec_sources(config: Config) -> list[str]:
    """The sources that decide charging starts (a rule's scope names them)."""
    return [s.name for s in config.sources if isinstance(s, ZaptecSource)]
