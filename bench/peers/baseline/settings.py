"""Configuration from the environment, the twelve-factor way."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _list(name: str, default: str) -> list[str]:
    return [item for item in os.environ.get(name, default).split(",") if item]


@dataclass(frozen=True)
class Settings:
    """Secrets per provider; lists so that a secret can be rotated without downtime."""

    database: str = field(default_factory=lambda: os.environ.get("BASELINE_DB", "baseline.db"))
    ampeco_secrets: list[str] = field(
        default_factory=lambda: _list("BASELINE_AMPECO_SECRETS", "bench-ampeco-secret")
    )
    ztlment_secrets: list[str] = field(
        default_factory=lambda: _list("BASELINE_ZTLMENT_SECRETS", "bench-ztlment-secret")
    )
    easypark_username: str = field(
        default_factory=lambda: os.environ.get("BASELINE_EASYPARK_USER", "easypark")
    )
    easypark_password: str = field(
        default_factory=lambda: os.environ.get("BASELINE_EASYPARK_PASSWORD", "bench-easypark")
    )
    zaptec_username: str = field(
        default_factory=lambda: os.environ.get("BASELINE_ZAPTEC_USER", "zaptec")
    )
    zaptec_password: str = field(
        default_factory=lambda: os.environ.get("BASELINE_ZAPTEC_PASSWORD", "bench-zaptec")
    )


settings = Settings()
