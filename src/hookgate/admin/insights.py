"""What operators could only see on the command line, through the admin API: the
configured sources with their health, event search with payload-field filters, and the
aggregates behind the charts (`hookgate stats ...`). Answers come from `hookgate.queries`
and the store, the same as the command line's."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Meta
from starlette.requests import Request
from starlette.responses import Response

from hookgate import queries
from hookgate.admin.api import ApiError, json_response
from hookgate.admin.contract import Operation, position, position_of, query_of
from hookgate.admin.schemas import Cursor, Instant, Limit, Page, PageQuery, SourceHealth
from hookgate.config import Config, SourceConfig
from hookgate.domain.queries import EventFilter
from hookgate.domain.search import EventHit
from hookgate.domain.stats import (
    Backlog,
    DecisionStat,
    DeliveryStat,
    EnergyDay,
    EventCount,
    RejectionStat,
    VehicleCost,
)
from hookgate.store.base import Store
from hookgate.timeutil import utcnow

T = TypeVar("T")
Grain = Literal["minute", "hour", "day", "month"]
# Settings whose names say they hold a secret are left out of a source's listing even
# when empty; every configured credential is shown only as a fingerprint.
_SECRET_WORDS = ("password", "secret", "api_keys", "token", "sasl")
HEALTH_WINDOW = timedelta(days=1)


class Items(msgspec.Struct, Generic[T], kw_only=True):
    """An aggregate: every bucket of the window at once (a chart needs them all)."""

    items: list[T]


class SourcesQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    provider: Literal["zaptec", "ampeco", "easypark", "ztlment"] | None = None


class SearchQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    q: (
        Annotated[
            str,
            Meta(max_length=500, description="Words to find (all of them); `word*` is a prefix."),
        ]
        | None
    ) = None
    field: Annotated[
        list[str],
        Meta(
            max_length=20,
            description="A payload field match `name=value` (e.g. licenseNumber=ABC123); "
            "repeat for several, all must match.",
        ),
    ] = []
    source: str | None = None
    provider: str | None = None
    type: str | None = None
    status: Literal["received", "processed", "failed", "quarantined"] | None = None
    since: Instant | None = None
    until: Instant | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


class _Window(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    since: Instant | None = None
    until: Instant | None = None


class EventStatsQuery(_Window, kw_only=True, forbid_unknown_fields=True):
    grain: Literal["minute", "hour", "day"] = "hour"
    by: Annotated[
        list[Literal["source", "event_type", "status"]],
        Meta(description="Dimensions to split by (repeat the parameter)."),
    ] = msgspec.field(default_factory=lambda: ["source", "event_type", "status"])
    source: str | None = None
    type: str | None = None
    status: Literal["received", "processed", "failed", "quarantined"] | None = None


class RejectionStatsQuery(_Window, kw_only=True, forbid_unknown_fields=True):
    grain: Grain | None = None
    source: str | None = None


class DeliveryStatsQuery(_Window, kw_only=True, forbid_unknown_fields=True):
    grain: Grain | None = None
    destination: str | None = None


class DecisionStatsQuery(_Window, kw_only=True, forbid_unknown_fields=True):
    grain: Grain | None = None
    source: str | None = None


class EnergyQuery(_Window, kw_only=True, forbid_unknown_fields=True):
    token: str | None = None
    group_id: str | None = None


class CostsQuery(_Window, kw_only=True, forbid_unknown_fields=True):
    license_number: str | None = None
    limit: Annotated[int, Meta(ge=1, le=1000)] = 1000


def fingerprint(secret: str) -> str:
    """A credential as operators may see it: enough to tell two apart, nothing to use."""
    return "sha256:" + hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def _settings(source: SourceConfig) -> dict[str, Any]:
    """A source's settings without any secret."""
    secrets = set(source.credentials())
    shown: dict[str, Any] = {}
    for name, value in msgspec.structs.asdict(source).items():
        if name in ("name", "provider") or any(word in name for word in _SECRET_WORDS):
            continue
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and v in secrets for v in values):
            continue
        shown[name] = msgspec.to_builtins(value)
    return shown


class InsightsApi:
    """Sources, search and aggregates over one store and configuration."""

    def __init__(self, store: Store, config: Config) -> None:
        self._store = store
        self._config = config

    # -- sources -----------------------------------------------------------------------

    async def _health(self, source: SourceConfig) -> SourceHealth:
        store = self._store
        now = utcnow()
        last = await store.list_events(EventFilter(source=source.name), None, 1)
        refused = await store.list_rejections(source.name, None, 1)
        counts = await queries.event_counts(
            store,
            grain="day",
            since=now - HEALTH_WINDOW,
            until=now,
            by=["status"],
            source=source.name,
        )
        per_status: dict[str, int] = {}
        for count in counts:
            key = count.status or "unknown"
            per_status[key] = per_status.get(key, 0) + count.count
        refusals = await store.rejection_counts(source.name, now - HEALTH_WINDOW, None)
        kafka = getattr(source, "transport", "http") == "kafka"
        event = last.items[0] if last.items else None
        rejection = refused.items[0] if refused.items else None
        return SourceHealth(
            name=source.name,
            provider=source.provider,
            transport="kafka" if kafka else "http",
            path=None if kafka else f"/hooks/{source.name}",
            auth=getattr(source, "auth", None),
            credentials=[fingerprint(secret) for secret in source.credentials()],
            settings=_settings(source),
            last_event_at=event.received_at if event else None,
            last_event_id=event.id if event else None,
            last_rejection_at=rejection.received_at if rejection else None,
            last_rejection_reason=rejection.reason if rejection else None,
            events_24h=per_status,
            rejections_24h=sum(int(item["total"]) for item in refusals),
        )

    async def sources(self, request: Request) -> Response:
        """Configured sources in configuration order, paged like every list."""
        q: SourcesQuery = query_of(request, SourcesQuery)
        chosen = [s for s in self._config.sources if q.provider in (None, s.provider)]
        start = position_of(q.cursor)
        page = chosen[start : start + q.limit]
        items = [await self._health(source) for source in page]
        more = start + q.limit < len(chosen)
        return json_response({"items": items, "next": position(start + q.limit) if more else None})

    async def source(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = self._config.source(name)
        if found is None:
            raise ApiError(404, "not-found", f"no source named {name!r} is configured")
        return json_response(await self._health(found))

    # -- search and aggregates ---------------------------------------------------------

    async def search(self, request: Request) -> Response:
        q: SearchQuery = query_of(request, SearchQuery)
        page = await queries.search_events(
            self._store,
            text=q.q,
            where=q.field,
            source=q.source,
            provider=q.provider,
            event_type=q.type,
            status=q.status,
            since=q.since,
            until=q.until,
            cursor=q.cursor,
            limit=q.limit,
        )
        return json_response(page)

    async def event_stats(self, request: Request) -> Response:
        q: EventStatsQuery = query_of(request, EventStatsQuery)
        items = await queries.event_counts(
            self._store,
            grain=q.grain,
            since=q.since,
            until=q.until,
            by=q.by,
            source=q.source,
            event_type=q.type,
            status=q.status,
        )
        return json_response(Items(items=items))

    async def rejection_stats(self, request: Request) -> Response:
        q: RejectionStatsQuery = query_of(request, RejectionStatsQuery)
        items = await queries.rejections(
            self._store, grain=q.grain, since=q.since, until=q.until, source=q.source
        )
        return json_response(Items(items=items))

    async def delivery_stats(self, request: Request) -> Response:
        q: DeliveryStatsQuery = query_of(request, DeliveryStatsQuery)
        items = await queries.deliveries(
            self._store, grain=q.grain, since=q.since, until=q.until, destination=q.destination
        )
        return json_response(Items(items=items))

    async def decision_stats(self, request: Request) -> Response:
        q: DecisionStatsQuery = query_of(request, DecisionStatsQuery)
        items = await queries.decisions(
            self._store, grain=q.grain, since=q.since, until=q.until, source=q.source
        )
        return json_response(Items(items=items))

    async def backlog(self, request: Request) -> Response:
        return json_response(await queries.backlog(self._store))

    async def energy(self, request: Request) -> Response:
        q: EnergyQuery = query_of(request, EnergyQuery)
        items = await queries.energy(
            self._store, since=q.since, until=q.until, token=q.token, group_id=q.group_id
        )
        return json_response(Items(items=items))

    async def costs(self, request: Request) -> Response:
        q: CostsQuery = query_of(request, CostsQuery)
        items = await queries.vehicle_costs(
            self._store,
            since=q.since,
            until=q.until,
            license_number=q.license_number,
            limit=q.limit,
        )
        return json_response(Items(items=items))

    def operations(self) -> list[Operation]:
        """Sources, search and the aggregates."""
        op = Operation
        window = (
            "The window defaults to the last hour, day, 30 days or year by `grain` (the "
            "last day without one)."
        )
        return [
            op(
                "GET",
                "/api/v1/sources",
                self.sources,
                "listSources",
                "List configured sources with their health",
                "sources",
                query=SourcesQuery,
                answer=Page[SourceHealth],
                description="Settings without secrets (each credential as a fingerprint), "
                "the last event and refusal, the last 24 hours' events per status and "
                "refusals (refusals are summed once their minute is over).",
            ),
            op(
                "GET",
                "/api/v1/sources/{name}",
                self.source,
                "getSource",
                "Get one source with its health",
                "sources",
                answer=SourceHealth,
            ),
            op(
                "GET",
                "/api/v1/search/events",
                self.search,
                "searchEvents",
                "Search events by words and payload fields",
                "search",
                query=SearchQuery,
                answer=Page[EventHit],
                description="Finds events once processing indexed them (docs/search.md).",
            ),
            op(
                "GET",
                "/api/v1/stats/events",
                self.event_stats,
                "eventStats",
                "Events received per bucket",
                "stats",
                query=EventStatsQuery,
                answer=Items[EventCount],
                description=window,
            ),
            op(
                "GET",
                "/api/v1/stats/rejections",
                self.rejection_stats,
                "rejectionStats",
                "Refusals per source and reason",
                "stats",
                query=RejectionStatsQuery,
                answer=Items[RejectionStat],
                description=window,
            ),
            op(
                "GET",
                "/api/v1/stats/deliveries",
                self.delivery_stats,
                "deliveryStats",
                "Deliveries per destination and status",
                "stats",
                query=DeliveryStatsQuery,
                answer=Items[DeliveryStat],
                description=window,
            ),
            op(
                "GET",
                "/api/v1/stats/decisions",
                self.decision_stats,
                "decisionStats",
                "Authorization decisions per source and result",
                "stats",
                query=DecisionStatsQuery,
                answer=Items[DecisionStat],
                description=window,
            ),
            op(
                "GET",
                "/api/v1/stats/backlog",
                self.backlog,
                "backlog",
                "What waits for processing and delivery, with ages",
                "stats",
                answer=Backlog,
            ),
            op(
                "GET",
                "/api/v1/stats/energy",
                self.energy,
                "energyPerDay",
                "kWh per UTC day, token and group",
                "stats",
                query=EnergyQuery,
                answer=Items[EnergyDay],
            ),
            op(
                "GET",
                "/api/v1/stats/costs",
                self.costs,
                "vehicleCosts",
                "Parking costs per month and vehicle",
                "stats",
                query=CostsQuery,
                answer=Items[VehicleCost],
            ),
        ]
