"""Storage behind one interface; `open_store` picks the backend from the URL."""

from __future__ import annotations

from collections.abc import Callable

from hookgate.config import StorageConfig
from hookgate.domain.errors import StoreError
from hookgate.store.base import Store

__all__ = ["Store", "make_store"]


# How long one processing job may hold SQLite's single writer (ingest waits meanwhile).
PROCESS_BUDGET_MS = 5.0


def make_store(config: StorageConfig, on_batch: Callable[[int], None] | None = None) -> Store:
    """The backend for `config.url` (not yet opened)."""
    if config.url.startswith("sqlite:///"):
        from hookgate.store.sqlite import SqliteStore, sqlite_path

        return SqliteStore(
            sqlite_path(config.url),
            batch_max=config.batch_max,
            auto_migrate=config.auto_migrate,
            on_batch=on_batch,
            process_budget_ms=PROCESS_BUDGET_MS,
            queue_max=config.queue_max,
            queue_reserve=config.queue_reserve,
        )
    if config.url.startswith("postgresql://"):
        from hookgate.store.postgres import PostgresStore

        return PostgresStore(
            config.url,
            batch_max=config.batch_max,
            auto_migrate=config.auto_migrate,
            on_batch=on_batch,
            pool_size=config.pool_size,
            writers=config.writers,
            queue_max=config.queue_max,
            queue_reserve=config.queue_reserve,
        )
    raise StoreError(f"storage.url {config.url.split('://')[0]}:// is not supported")
