"""Charging rules (tokens, groups, charger rules, budgets) and the invariants every writer
keeps, written once for the admin API, the command line and the console.

- Entities the configuration file lists are read-only outside it (`managed-by-config`),
  whether or not a server has written them to the store yet.
- A write names only groups, tokens and zaptec sources that exist.
- Removing a token or group removes the budgets that limit it; a group still used by a
  token or reserved by a charger rule is not removed (`group-in-use`).

Every write reaches the store's change log in its own transaction; a running engine given
here applies it before the call returns, every other one within a refresh interval.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from hookgate.authorization.csv_import import ImportReport, ParsedCsv, import_tokens
from hookgate.authorization.service import AuthorizationService, Entity, from_entity, to_entity
from hookgate.config import AuthorizationConfig
from hookgate.domain.errors import AlreadyExists, Conflict, NotFound, Unprocessable
from hookgate.domain.rules import (
    AuthEntity,
    Budget,
    ChargerRule,
    Group,
    Token,
    budget_id,
    normalise_uid,
)
from hookgate.store.base import Store

_SCAN = 500
# Fields a response adds that a request may echo back (a GET body can be PUT again).
USAGE = ("used", "reserved_kwh", "remaining", "active_sessions")
_AT = re.compile(r"at `\$\.?([^`]*)`")


@dataclass(frozen=True, slots=True)
class Kind:
    """How one entity kind is stored, named and addressed."""

    kind: str  # store kind
    path: str  # /api/v1/<path>, `hookgate <path> ...`
    type: type[Entity]
    key_field: str
    noun: str
    filters: tuple[str, ...]
    config_table: str  # where the configuration file lists this kind

    def key(self, raw: str) -> str:
        """The store key of a key given by a caller (token uids are case-insensitive)."""
        return normalise_uid(raw) if self.kind == "token" else raw

    def key_of(self, entity: Entity) -> str:
        return str(getattr(entity, self.key_field))


TOKENS = Kind(
    "token",
    "tokens",
    Token,
    "uid",
    "token",
    ("group_id", "status", "type", "whitelist", "managed_by"),
    "[[authorization.tokens]]",
)
GROUPS = Kind(
    "group", "groups", Group, "id", "group", ("status", "managed_by"), "[[authorization.groups]]"
)
RULES = Kind(
    "charger",
    "rules",
    ChargerRule,
    "charger_id",
    "charger rule",
    ("mode", "group_id", "managed_by"),
    "[[authorization.chargers]]",
)
BUDGETS = Kind(
    "budget",
    "budgets",
    Budget,
    "id",
    "budget",
    ("subject", "subject_id", "metric", "period", "managed_by"),
    "[[authorization.budgets]]",
)
KINDS = (TOKENS, GROUPS, RULES, BUDGETS)


def document(entity: Entity, managed_by: str | None = None) -> dict[str, Any]:
    """An entity as JSON-ready builtins, with who manages it."""
    doc: dict[str, Any] = msgspec.to_builtins(entity)
    doc["managed_by"] = managed_by or entity.managed_by
    return doc


def validate(spec: Kind, doc: dict[str, Any]) -> Entity:
    """A document as a typed, API-managed entity; `Unprocessable` naming the field
    otherwise."""
    ignored = ("managed_by", *USAGE) if spec.kind == "budget" else ("managed_by",)
    doc = {k: v for k, v in doc.items() if k not in ignored}
    try:
        entity = msgspec.json.decode(msgspec.json.encode(doc), type=spec.type)
    except msgspec.ValidationError as exc:
        message = str(exc)
        found = _AT.search(message)
        # Checks of a whole entity carry no path; they name their field first.
        field = found.group(1) if found else message.split(" ", 1)[0]
        extra = {"field": field} if found or field in spec.type.__struct_fields__ else {}
        raise Unprocessable(message, code="invalid-entity", **extra) from None
    if not spec.key_of(entity):
        raise Unprocessable(
            f"{spec.key_field} must not be blank", code="invalid-entity", field=spec.key_field
        )
    entity.managed_by = "api"
    return entity


def usage(engine: Any, budget: Budget, now: datetime) -> dict[str, Any]:
    """A budget's current period as the engine counts it."""
    subject = (budget.subject, budget.subject_id)
    used = engine.used(subject, budget, now)
    count, held = engine.reserved(subject, now)
    if budget.metric == "kwh":
        remaining = max(Decimal(0), budget.limit - used - held)
    else:
        remaining = max(Decimal(0), budget.limit - used)
    return {
        "used": str(used),
        "reserved_kwh": str(held),
        "remaining": str(remaining),
        "active_sessions": count,
    }


class ManagedByConfig(Conflict):
    """A write to an entity the configuration file owns; `spec` and `key` name it."""

    def __init__(self, spec: Kind, key: str) -> None:
        super().__init__(
            f"{spec.noun} {key} is managed by the configuration file ({spec.config_table}): "
            "change it there and restart hookgate",
            code="managed-by-config",
        )
        self.spec = spec
        self.key = key


@dataclass(frozen=True, slots=True)
class Listed:
    """One entity as stored (or as the configuration file lists it) and who manages it."""

    entity: Entity
    managed_by: str

    def document(self) -> dict[str, Any]:
        return document(self.entity, self.managed_by)


class RulesService:
    """The rule use cases over one store. `sources`: the configured zaptec source names a
    scope may name; `engine`: the running engine to bring up to date after each write (a
    command-line process has none)."""

    def __init__(
        self,
        store: Store,
        settings: AuthorizationConfig,
        sources: Collection[str],
        engine: AuthorizationService | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sources = list(sources)
        self.engine = engine

    # -- reads -------------------------------------------------------------------------

    def configured(self, spec: Kind) -> list[Entity]:
        """What the configuration file lists of a kind."""
        return {
            "token": self.settings.tokens,
            "group": self.settings.groups,
            "charger": self.settings.chargers,
            "budget": self.settings.budgets,
        }[spec.kind]  # type: ignore[return-value]

    def in_file(self, spec: Kind, key: str) -> bool:
        """Whether the configuration file lists this entity."""
        return any(spec.key_of(item) == key for item in self.configured(spec))

    async def scan(self, kind: str, after: str | None = None) -> list[AuthEntity]:
        """Every stored entity of a kind after `after`, in key order."""
        out: list[AuthEntity] = []
        while True:
            batch = await self.store.auth_list(kind, after, _SCAN)
            out.extend(batch)
            if len(batch) < _SCAN:
                return out
            after = batch[-1].key

    async def page(
        self, spec: Kind, wanted: dict[str, str], after: str | None, limit: int
    ) -> tuple[list[Listed], str | None]:
        """Stored entities after the key `after` whose fields equal `wanted`, a page at a
        time; the key to continue after when there is more."""
        if "subject_id" in wanted and wanted.get("subject") == "token":
            wanted = {**wanted, "subject_id": normalise_uid(wanted["subject_id"])}
        found: list[tuple[str, Listed]] = []
        while len(found) <= limit:
            batch = await self.store.auth_list(spec.kind, after, _SCAN)
            for stored in batch:
                entity = from_entity(spec.kind, stored.doc)
                values = {**msgspec.to_builtins(entity), "managed_by": stored.managed_by}
                if all(str(values.get(k)) == v for k, v in wanted.items()):
                    found.append((stored.key, Listed(entity, stored.managed_by)))
                    if len(found) > limit:
                        break
            if len(batch) < _SCAN:
                break
            after = batch[-1].key
        following = found[limit - 1][0] if len(found) > limit else None
        return [listed for _, listed in found[:limit]], following

    async def everything(self, spec: Kind, after: str | None = None) -> list[Listed]:
        """Every entity of a kind in key order, with those the configuration file lists
        that no server has written to the store yet."""
        stored = {e.key: e for e in await self.scan(spec.kind, after)}
        for listed in self.configured(spec):
            key = spec.key_of(listed)
            if after is None or key > after:
                stored.setdefault(key, to_entity(spec.kind, listed))
        return [
            Listed(from_entity(spec.kind, stored[key].doc), stored[key].managed_by)
            for key in sorted(stored)
        ]

    async def get(self, spec: Kind, key: str) -> Listed:
        """One entity, also when only the configuration file lists it so far."""
        stored = await self.store.auth_get(spec.kind, key)
        if stored is None:
            listed = next((e for e in self.configured(spec) if spec.key_of(e) == key), None)
            if listed is None:
                raise NotFound(f"there is no {spec.noun} {key}")
            return Listed(listed, "config")
        return Listed(from_entity(spec.kind, stored.doc), stored.managed_by)

    async def budgets_of(self, subject: str, subject_id: str) -> list[Listed]:
        """The budgets that limit one token or group."""
        out = []
        for stored in await self.scan("budget"):
            budget = from_entity("budget", stored.doc)
            assert isinstance(budget, Budget)
            if budget.subject == subject and budget.subject_id == subject_id:
                out.append(Listed(budget, stored.managed_by))
        return out

    async def group_users(self, group_id: str) -> tuple[int, int]:
        """How many tokens belong to a group and how many chargers are reserved to it."""
        tokens = chargers = 0
        for stored in await self.scan("token"):
            token = from_entity("token", stored.doc)
            tokens += isinstance(token, Token) and token.group_id == group_id
        for stored in await self.scan("charger"):
            rule = from_entity("charger", stored.doc)
            chargers += isinstance(rule, ChargerRule) and rule.group_id == group_id
        return tokens, chargers

    def usage(self, budget: Budget) -> dict[str, Any]:
        """A budget's current period as the engine counts it (nothing without one)."""
        if self.engine is None:
            return {}
        return usage(self.engine.engine, budget, self.engine.clock())

    # -- checks ------------------------------------------------------------------------

    async def writable(self, spec: Kind, key: str) -> AuthEntity | None:
        """The stored entity a write would change (None: a new one); `Conflict` when the
        configuration file owns it."""
        existing = await self.store.auth_get(spec.kind, key)
        if self.in_file(spec, key) or (existing is not None and existing.managed_by == "config"):
            raise ManagedByConfig(spec, key)
        return existing

    async def check_references(self, entity: Entity) -> None:
        """`Unprocessable` when the entity names a group, token or zaptec source that does not
        exist (groups the configuration file lists count as existing)."""
        group_id = getattr(entity, "group_id", None)
        if (
            group_id
            and not self.in_file(GROUPS, group_id)
            and await self.store.auth_get("group", group_id) is None
        ):
            raise Unprocessable(
                f"group_id: there is no group {group_id}; create it first "
                "(POST /api/v1/groups or [[authorization.groups]] in the configuration)",
                code="unknown-group",
                field="group_id",
            )
        if isinstance(entity, Budget):
            spec = TOKENS if entity.subject == "token" else GROUPS
            if (
                not self.in_file(spec, entity.subject_id)
                and await self.store.auth_get(entity.subject, entity.subject_id) is None
            ):
                raise Unprocessable(
                    f"subject_id: there is no {entity.subject} {entity.subject_id}",
                    code="unknown-subject",
                    field="subject_id",
                )
        scope = getattr(entity, "scope", None)
        if scope is not None:
            for name in scope.sources:
                if name not in self.sources:
                    raise Unprocessable(
                        f"scope.sources: there is no zaptec source {name!r} (configured: "
                        f"{', '.join(sorted(self.sources)) or 'none'})",
                        code="unknown-source",
                        field="scope.sources",
                    )

    # -- writes ------------------------------------------------------------------------

    async def create(self, spec: Kind, entity: Entity) -> None:
        """A new entity; `Conflict` (`already-exists`) when its key is taken."""
        key = spec.key_of(entity)
        if await self.writable(spec, key) is not None:
            raise Conflict(f"{spec.noun} {key} exists", code="already-exists")
        await self.check_references(entity)
        await self._write([to_entity(spec.kind, entity)], create=True, spec=spec)

    async def put(self, spec: Kind, entity: Entity) -> bool:
        """Create or replace an entity; True when it replaced one."""
        existing = await self.writable(spec, spec.key_of(entity))
        await self.check_references(entity)
        await self._write([to_entity(spec.kind, entity)])
        return existing is not None

    async def save(self, spec: Kind, entity: Entity, *, replace: bool) -> bool:
        """`put` when `replace`, else `create`; True when it replaced one."""
        if replace:
            return await self.put(spec, entity)
        await self.create(spec, entity)
        return False

    async def patch(self, spec: Kind, key: str, changes: dict[str, Any]) -> Entity:
        """An existing entity with some fields changed."""
        current = await self.get(spec, key)
        await self.writable(spec, key)
        entity = validate(spec, {**msgspec.to_builtins(current.entity), **changes})
        await self.check_references(entity)
        await self._write([to_entity(spec.kind, entity)])
        return entity

    async def set_status(self, spec: Kind, key: str, status: str) -> tuple[Entity, bool]:
        """Block or unblock a token or group; the entity and whether it changed."""
        current = await self.get(spec, key)
        await self.writable(spec, key)
        entity = current.entity
        assert isinstance(entity, Token | Group)
        if entity.status == status:
            return entity, False
        entity.status = status  # type: ignore[assignment]
        await self._write([to_entity(spec.kind, entity)])
        return entity, True

    async def remove(self, spec: Kind, key: str) -> int:
        """Delete an entity with the budgets that limit it; returns how many budgets."""
        await self.get(spec, key)
        if await self.writable(spec, key) is None:
            raise NotFound(f"there is no {spec.noun} {key}")
        if spec is GROUPS:
            tokens, chargers = await self.group_users(key)
            if tokens or chargers:
                raise Conflict(
                    f"group {key} is still used by {tokens} token(s) and reserved by "
                    f"{chargers} charger rule(s): move or remove them first",
                    code="group-in-use",
                    tokens=tokens,
                    chargers=chargers,
                )
        delete = [(spec.kind, key)]
        if spec in (TOKENS, GROUPS):
            delete += [
                ("budget", BUDGETS.key_of(owned.entity))
                for owned in await self.budgets_of(spec.kind, key)
                if owned.managed_by != "config"
            ]
        removed = await self.store.auth_write([], delete) - 1
        await self._applied()
        return removed

    async def save_token(
        self, token: Token, limits: dict[str, Decimal | None], *, replace: bool
    ) -> list[str]:
        """A token with its kWh budget per period in one write (a period set to None
        loses its budget); the ids of the budgets removed."""
        existing = await self.writable(TOKENS, token.uid)
        if existing is not None and not replace:
            raise Conflict(f"token {token.uid} exists", code="already-exists")
        await self.check_references(token)
        budgets = kwh_budgets(token.uid, limits)
        stale = []
        for period, limit in limits.items():
            key = budget_id("token", token.uid, "kwh", period)
            stored = await self.writable(BUDGETS, key)
            if stored is not None and limit is None:
                stale.append(key)
        await self._write(
            [to_entity("token", token), *(to_entity("budget", b) for b in budgets)],
            delete=[("budget", key) for key in stale],
        )
        return stale

    async def import_tokens(self, parsed: ParsedCsv, *, dry_run: bool) -> ImportReport:
        """Create or update the tokens and kWh budgets of a parsed CSV file in one write,
        under the same checks (the file's entities read-only, groups must exist); with any
        bad row, or as a dry run, nothing is written."""
        report = await import_tokens(
            self.store,
            parsed.tokens,
            parsed.budgets,
            lines=parsed.lines,
            columns=parsed.columns,
            config_uids=[t.uid for t in self.settings.tokens],
            config_groups=[g.id for g in self.settings.groups],
            dry_run=dry_run or bool(parsed.errors),
        )
        if report.written:
            await self._applied()
        return report

    async def _write(
        self,
        entities: list[AuthEntity],
        *,
        create: bool = False,
        spec: Kind | None = None,
        delete: list[tuple[str, str]] | None = None,
    ) -> None:
        try:
            await self.store.auth_write(entities, delete or [], create=create)
        except AlreadyExists:  # the read before gives the helpful answer; the key settles a race
            assert spec is not None
            key = entities[0].key
            raise Conflict(f"{spec.noun} {key} exists", code="already-exists") from None
        await self._applied()

    async def _applied(self) -> None:
        if self.engine is not None:
            await self.engine.refresh()


def kwh_budgets(uid: str, limits: dict[str, Decimal | None]) -> list[Budget]:
    """A token's kWh budgets for the periods given a limit."""
    return [
        Budget(
            id=budget_id("token", uid, "kwh", period),
            subject="token",
            subject_id=uid,
            metric="kwh",
            period=period,  # type: ignore[arg-type]
            limit=limit,
        )
        for period, limit in limits.items()
        if limit is not None
    ]
