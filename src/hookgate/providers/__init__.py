"""One module per provider, and the registry that lists them.

Everything outside this package asks the registry (and the provider objects it builds)
what differs between providers: the receivers the edges route to, which sources decide
charging starts, the `hookgate init` tables and portal steps, who issues a secret, what
becomes of a refused call. Adding a provider is one module here, its entry below, its
`[[sources]]` settings type and its fixtures.
"""

from __future__ import annotations

from typing import Any

from hookgate.config import Config, SourceConfig
from hookgate.oauth import TokenIssuer
from hookgate.providers.ampeco import Ampeco
from hookgate.providers.base import Provider
from hookgate.providers.easypark import EasyPark
from hookgate.providers.zaptec import Zaptec
from hookgate.providers.ztlment import Ztlment

# Provider name (as in `[[sources]] provider = ...`) to its receiver class, in the order
# `hookgate init` writes and explains them.
REGISTRY: dict[str, type[Provider[Any]]] = {
    cls.name: cls for cls in (Zaptec, Ampeco, EasyPark, Ztlment)
}


def build_providers(issuer: TokenIssuer) -> dict[str, Provider[Any]]:
    """Provider name to its receiver, as a gateway (or a command) uses them."""
    return {name: cls.create(issuer) for name, cls in REGISTRY.items()}


def provider_of(source: SourceConfig) -> type[Provider[Any]]:
    """The receiver class of a configured source."""
    return REGISTRY[source.provider]


def deciding_sources(config: Config) -> list[str]:
    """The sources that ask for charging decisions (a rule's scope names them)."""
    return [s.name for s in config.sources if provider_of(s).decides_starts()]
