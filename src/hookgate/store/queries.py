"""The Store methods behind search and the console's charts, shared by both backends:
each backend only says how to run a read on one of its connections (`_query`); the SQL
lives in store/search.py and store/aggregates.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from hookgate.store import aggregates
from hookgate.store.aggregates import (
    Backlog,
    CostQuery,
    DecisionQuery,
    DecisionStat,
    DeliveryQuery,
    DeliveryStat,
    EnergyDay,
    EnergyQuery,
    EventCount,
    EventCountQuery,
    RejectionQuery,
    RejectionStat,
    VehicleCost,
)
from hookgate.store.dialect import Dialect
from hookgate.store.search import EventPage, EventSearch, search_events

T = TypeVar("T")


class QueryMethods:
    """Mixed into a backend that defines `_query` and `sql_dialect`."""

    sql_dialect: Dialect
    _query: Callable[[Callable[[Any], Any]], Awaitable[Any]]

    async def search_events(self, where: EventSearch, cursor: str | None, limit: int) -> EventPage:
        """Events matching text, payload fields and inbox filters, newest first."""
        page: EventPage = await self._query(
            lambda conn: search_events(conn, self.sql_dialect, where, cursor, limit)
        )
        return page

    async def event_counts(self, query: EventCountQuery) -> list[EventCount]:
        """Events per bucket, source, type and status."""
        found: list[EventCount] = await self._query(
            lambda conn: aggregates.event_counts(conn, self.sql_dialect, query)
        )
        return found

    async def rejection_stats(self, query: RejectionQuery) -> list[RejectionStat]:
        """Refusals per source and reason (and bucket)."""
        found: list[RejectionStat] = await self._query(
            lambda conn: aggregates.rejection_stats(conn, self.sql_dialect, query)
        )
        return found

    async def delivery_stats(self, query: DeliveryQuery) -> list[DeliveryStat]:
        """Deliveries per destination and status (and bucket)."""
        found: list[DeliveryStat] = await self._query(
            lambda conn: aggregates.delivery_stats(conn, self.sql_dialect, query)
        )
        return found

    async def backlog(self, now: datetime) -> Backlog:
        """What waits for processing and delivery, with ages as of `now`."""
        found: Backlog = await self._query(
            lambda conn: aggregates.backlog(conn, self.sql_dialect, now)
        )
        return found

    async def decision_stats(self, query: DecisionQuery) -> list[DecisionStat]:
        """Authorization decisions per source and result (and bucket)."""
        found: list[DecisionStat] = await self._query(
            lambda conn: aggregates.decision_stats(conn, self.sql_dialect, query)
        )
        return found

    async def energy_per_day(self, query: EnergyQuery) -> list[EnergyDay]:
        """kWh per day, token and group."""
        found: list[EnergyDay] = await self._query(
            lambda conn: aggregates.energy_per_day(conn, self.sql_dialect, query)
        )
        return found

    async def vehicle_costs(self, query: CostQuery) -> list[VehicleCost]:
        """Parking costs per month and vehicle."""
        found: list[VehicleCost] = await self._query(
            lambda conn: aggregates.vehicle_costs(conn, self.sql_dialect, query)
        )
        return found
