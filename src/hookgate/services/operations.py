"""Operator actions on what hookgate holds: deliver again (replay) and the fleet cost
export. Re-runs of held-back calls are in `services.rerun`."""

from __future__ import annotations

from hookgate.config import Config
from hookgate.domain.errors import NotFound
from hookgate.domain.queries import ReplayFilter
from hookgate.export import FleetReport, build_report
from hookgate.ops.replay import BadReplay, check_replay
from hookgate.reconcile import Reconciliation, build_reconciliation
from hookgate.store.base import Store


class Operations:
    """Replay and export over one store and configuration."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config

    async def replay(self, where: ReplayFilter, *, dry_run: bool = False) -> int:
        """Make the selected deliveries due again with a fresh retry budget (and queue
        failed processing again); how many were queued (with `dry_run`: would be, and
        nothing changes)."""
        check_replay(self.config, where)
        return await self.store.replay(where, dry_run=dry_run)

    async def replay_event(
        self, event_id: str, destination: str | None = None, *, dry_run: bool = False
    ) -> int:
        """Deliver one event again (to one destination, or to all it was meant for)."""
        if await self.store.get_event(event_id) is None:
            raise NotFound("no event with this id")
        where = ReplayFilter(event_ids=[event_id], destination=destination)
        return await self.replay(where, dry_run=dry_run)

    async def reconcile(self, month: str) -> Reconciliation:
        """The reconciliation of a month (YYYY-MM in the [authorization] timezone)."""
        settings = self.config.authorization
        rates = self.config.rates()
        try:
            return await build_reconciliation(
                self.store, month, settings.timezone, settings.tokens, rates
            )
        except ValueError as exc:
            raise BadReplay("month", str(exc)) from None

    async def export(self, month: str) -> FleetReport:
        """The fleet costs of a month (YYYY-MM in the [authorization] timezone)."""
        settings = self.config.authorization
        try:
            rates = self.config.rates()
            return await build_report(self.store, month, settings.timezone, settings.tokens, rates)
        except ValueError as exc:
            raise BadReplay("month", str(exc)) from None
