"""A real gateway on a real socket, in a thread of the test process, and the test
configuration it serves: one source per provider variant under test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from hookgate.app import create_app
from hookgate.config import Config
from hookgate.store import make_store
from support.servers import in_thread
from support.storage import query_url

ADMIN_TOKEN = "admin-token-for-tests"
ZAPTEC_USER = "zaptec"
ZAPTEC_PASSWORD = "zap:pass:word"  # a ':' inside the password must survive Basic auth
AMPECO_OLD = "ampeco-old-api-token"
AMPECO_NEW = "ampeco-new-api-token"
EASYPARK_USER = "easypark"
EASYPARK_PASSWORD = "park:ing-secret"
EASYPARK_KEY = "ep-api-key-123"
ZTLMENT_SECRET = "ztlment-webhook-secret"


def base_config(db: Path, url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The test configuration as a TOML-shaped dict, one source per variant under test.
    The database is the SQLite file `db` unless a storage `url` is given."""
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": 0, "max_body_bytes": 65536},
        "storage": {"url": url or f"sqlite:///{db}"},
        "admin": {"tokens": [ADMIN_TOKEN]},
        "logging": {"level": "warning"},
        "sources": [
            {
                "name": "zaptec",
                "provider": "zaptec",
                "auth": "oauth",
                "username": ZAPTEC_USER,
                "password": ZAPTEC_PASSWORD,
            },
            {
                "name": "zaptec-allow",
                "provider": "zaptec",
                "auth": "oauth",
                "username": ZAPTEC_USER,
                "password": ZAPTEC_PASSWORD,
                "unknown_token": "allow",
            },
            {
                "name": "zaptec-basic",
                "provider": "zaptec",
                "auth": "basic",
                "username": ZAPTEC_USER,
                "password": ZAPTEC_PASSWORD,
                "unknown_token": "allow",
            },
            {"name": "ampeco", "provider": "ampeco", "secrets": [AMPECO_OLD, AMPECO_NEW]},
            {
                "name": "easypark",
                "provider": "easypark",
                "auth": "basic",
                "username": EASYPARK_USER,
                "password": EASYPARK_PASSWORD,
            },
            {
                "name": "easypark-key",
                "provider": "easypark",
                "auth": "api_key",
                "api_key_header": "X-Partner-Key",
                "api_keys": [EASYPARK_KEY],
            },
            {
                "name": "easypark-q",
                "provider": "easypark",
                "auth": "basic",
                "username": EASYPARK_USER,
                "password": EASYPARK_PASSWORD,
                "on_invalid": "quarantine",
            },
            {"name": "ztlment", "provider": "ztlment", "secrets": [ZTLMENT_SECRET]},
            # AMPECO and ZTLment quarantine a signed body that breaks the schema by default;
            # these refuse it with 422 instead.
            {
                "name": "ampeco-strict",
                "provider": "ampeco",
                "secrets": [AMPECO_NEW],
                "on_invalid": "reject",
            },
            {
                "name": "ztlment-strict",
                "provider": "ztlment",
                "secrets": [ZTLMENT_SECRET],
                "on_invalid": "reject",
            },
            {"name": "unsecured", "provider": "ampeco", "secrets": []},
        ],
    }
    for key, value in overrides.items():
        data[key] = value
    return data


@dataclass
class Running:
    """A gateway serving on 127.0.0.1 in a background thread."""

    url: str
    config: Config
    db: Path
    app: Any

    @property
    def storage_url(self) -> str:
        return self.config.storage.url

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Query the gateway's database directly (a separate connection; `?` params)."""
        return query_url(self.storage_url, sql, *params)

    def count(self, table: str = "inbox", where: str = "1=1", *params: Any) -> int:
        return int(self.rows(f"SELECT count(*) FROM {table} WHERE {where}", *params)[0][0])

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
        )


def serve(config: Config) -> Iterator[Running]:
    """Migrate, then serve `config` in a thread until the generator is closed."""
    asyncio.run(make_store(config.storage).migrate())
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            lifespan="on",
            log_config=None,
            access_log=False,
            loop="asyncio",
        )
    )
    with in_thread(server) as port:
        yield Running(
            f"http://127.0.0.1:{port}",
            config,
            Path(config.storage.url.removeprefix("sqlite:///")),
            app,
        )
