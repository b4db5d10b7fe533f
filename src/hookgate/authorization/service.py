"""The engine kept in step with the store: load at start, then follow the change log.

Changes made anywhere (this process, the CLI, another instance) reach the store's change
log in the same transaction as the change itself; every engine polls the log (default
every 500 ms) and applies what it finds, so a change is in force everywhere within a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import structlog

from hookgate.authorization.engine import ActiveSession, Consumption, Engine, window_start
from hookgate.authorization.outcome import Outcome
from hookgate.config import AuthorizationConfig, ZaptecSource
from hookgate.domain.errors import StoreError
from hookgate.domain.rules import (
    AuthChange,
    AuthEntity,
    Budget,
    ChargerRule,
    Group,
    Token,
    normalise_uid,
)
from hookgate.providers.base import StartRequest
from hookgate.store.base import Store
from hookgate.timeutil import parse_iso, utcnow

log = structlog.get_logger("hookgate.authorization")

ENTITY_TYPES: dict[str, type[Token | Group | ChargerRule | Budget]] = {
    "token": Token,
    "group": Group,
    "charger": ChargerRule,
    "budget": Budget,
}
Entity = Token | Group | ChargerRule | Budget
# Seconds between refreshes asked for by nudges (see AuthorizationService.nudge).
NUDGE_GAP = 0.02


def entity_key(kind: str, entity: Entity) -> str:
    """The store key of an entity."""
    if isinstance(entity, Token):
        return entity.uid
    if isinstance(entity, ChargerRule):
        return entity.charger_id
    assert isinstance(entity, Group | Budget), kind
    return entity.id


def to_entity(kind: str, entity: Entity) -> AuthEntity:
    """An entity as the store keeps it."""
    return AuthEntity(
        kind=kind,
        key=entity_key(kind, entity),
        doc=msgspec.json.encode(entity),
        managed_by=entity.managed_by,
    )


def from_entity(kind: str, doc: bytes) -> Entity:
    """The typed entity of a stored document."""
    return msgspec.json.decode(doc, type=ENTITY_TYPES[kind])


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else parse_iso(str(value))


def _session(row: dict[str, Any]) -> ActiveSession:
    return ActiveSession(
        source=row["source"],
        session_id=row["session_id"],
        token=row["token"],
        group_id=row["group_id"],
        reserved_kwh=Decimal(row["reserved_kwh"] or 0),
        started_at=_time(row["started_at"]),
    )


def _consumption(row: dict[str, Any]) -> Consumption:
    return Consumption(
        id=row["id"],
        token=row["token"],
        group_id=row["group_id"],
        kwh=Decimal(row["kwh"]),
        money=Decimal(row["money"]) if row["money"] is not None else None,
        currency=row["currency"],
        occurred_at=_time(row["occurred_at"]),
    )


class AuthorizationService:
    """The Decider the ingress uses: an in-memory engine following the store."""

    def __init__(
        self,
        store: Store,
        settings: AuthorizationConfig,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.engine = Engine(settings)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._nudged: asyncio.Future[None] | None = None
        self._nudge_wanted = False

    def _configured(self) -> list[tuple[str, Entity]]:
        return [
            (kind, item)
            for kind, items in (
                ("group", self.settings.groups),
                ("charger", self.settings.chargers),
                ("token", self.settings.tokens),
                ("budget", self.settings.budgets),
            )
            for item in items
        ]

    async def start(self, *, follow: bool = True) -> None:
        """Write the configuration's rules, load everything, and follow the change log."""
        entities = [to_entity(kind, item) for kind, item in self._configured()]
        changed = await self.store.auth_sync_config(entities)
        if changed:
            log.info("configuration rules written", changes=changed)
        await self.reload()
        if follow:
            self._task = asyncio.create_task(self._follow(), name="hookgate-auth-follow")

    async def load_read_only(self) -> None:
        """Load the engine as a server on these settings would hold it, without writing:
        the stored rules with the configuration file's laid over them in memory (a
        command that only looks, on a file no server has synchronised yet)."""
        await self.reload()
        engine = self.engine
        wanted = {(kind, entity_key(kind, item)): item for kind, item in self._configured()}
        tables: dict[str, dict[str, Any]] = {
            "group": engine.groups,
            "charger": engine.chargers,
            "token": engine.tokens,
            "budget": engine.budgets,
        }
        for kind, table in tables.items():
            for key, item in list(table.items()):
                if item.managed_by == "config" and (kind, key) not in wanted:
                    engine.put(kind, key, None)
        for (kind, key), item in wanted.items():
            engine.put(kind, key, item)

    async def stop(self) -> None:
        """Stop following the change log."""
        for pending in (self._task, self._nudged):
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    async def reload(self) -> None:
        """Replace the engine's state with a fresh snapshot."""
        snapshot = await self.store.auth_snapshot(window_start(self.clock(), self.engine.zone))
        engine = Engine(self.settings)
        for entity in snapshot.entities:
            engine.put(entity.kind, entity.key, from_entity(entity.kind, entity.doc))
        for row in snapshot.sessions:
            engine.track(_session(row))
        for row in snapshot.consumption:
            engine.consume(_consumption(row))
        engine.seq = snapshot.seq
        self.engine = engine
        log.info(
            "authorization loaded",
            tokens=len(engine.tokens),
            groups=len(engine.groups),
            budgets=len(engine.budgets),
            active_sessions=len(engine.active),
        )

    async def refresh(self) -> int:
        """Apply every change-log entry not applied yet; returns how many."""
        applied = 0
        async with self._lock:
            while True:
                changes = await self.store.auth_changes(self.engine.seq, 2000)
                for change in changes:
                    self.apply(change)
                applied += len(changes)
                if len(changes) < 2000:
                    return applied

    def apply(self, change: AuthChange) -> None:
        """Bring one changed row into the engine."""
        engine, row = self.engine, change.row
        if change.kind in ENTITY_TYPES:
            engine.put(
                change.kind, change.key, from_entity(change.kind, row["doc"]) if row else None
            )
        elif change.kind == "session":
            source, _, session_id = change.key.partition("|")
            if row is not None and row["status"] == "active":
                # Usually this process's own approval, tracked when it was decided.
                if (source, session_id) not in engine.active:
                    engine.track(_session(row))
            else:
                engine.untrack(source, session_id)
        elif change.kind == "consumption" and row is not None:
            engine.consume(_consumption(row))
        engine.seq = max(engine.seq, change.seq)

    def nudge(self) -> None:
        """Refresh soon, without waiting (after a write that changes counters).

        The first nudge refreshes at once; nudges that arrive while that refresh runs, or
        within `NUDGE_GAP` after it, are folded into one more refresh. Under a stream of
        consumption reports the engine follows within that gap, at a few dozen change-log
        reads per second instead of one per event.
        """
        self._nudge_wanted = True
        if self._nudged is None or self._nudged.done():
            self._nudged = asyncio.ensure_future(self._refresh_while_nudged())

    async def _refresh_while_nudged(self) -> None:
        while self._nudge_wanted:
            self._nudge_wanted = False
            await self._quiet_refresh()
            await asyncio.sleep(NUDGE_GAP)

    async def _quiet_refresh(self) -> None:
        try:
            await self.refresh()
        except StoreError as exc:
            log.warning("authorization refresh failed", error=str(exc))

    async def _follow(self) -> None:
        interval = self.settings.refresh_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            await self._quiet_refresh()

    # -- Decider -----------------------------------------------------------------------

    async def decide(self, source: ZaptecSource, request: StartRequest) -> Outcome:
        """Decide from memory (no I/O): the budget check and its reservation are atomic."""
        return self.engine.decide(source, request, self.clock())

    def release(self, source: str, outcome: Outcome) -> None:
        """Give back an approval's reservation when it was not recorded."""
        self.engine.release(source, outcome)

    def known_for_offline(self, request: StartRequest, now: datetime) -> Token | None:
        """A token allowed by `on_error = allow_known`."""
        return self.engine.known_for_offline(request, now)

    def group_of(self, token: str | None) -> str | None:
        """The group of a token, for consumption reported without one."""
        return self.engine.group_of(token)

    def token_of(self, token: str | None) -> Token | None:
        """A known token, from memory."""
        return self.engine.tokens.get(normalise_uid(token)) if token else None
