"""One view row with what belongs to it (meter values, state history, EVSEs, delivery
attempts), the same for the admin API and the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from hookgate.domain.outbox import DeliveryDetail
from hookgate.domain.queries import ViewFilter
from hookgate.domain.rules import normalise_uid
from hookgate.domain.tariffs import NO_RATES, Rates, price
from hookgate.domain.tariffs import Session as PricedSession
from hookgate.store.base import Store
from hookgate.timeutil import parse_iso


async def view_row(store: Store, table: str, row_id: str) -> dict[str, Any] | None:
    """The row of a view with this `id`."""
    page = await store.list_view(table, ViewFilter(equal={"id": row_id}), None, 1)
    return page.items[0] if page.items else None


async def session_detail(
    store: Store, row_id: str, rates: Rates = NO_RATES
) -> dict[str, Any] | None:
    """A charging session with its meter values, oldest first, and `price`: what the
    configured tariffs make of a session no provider priced (None otherwise)."""
    item = await view_row(store, "charging_sessions", row_id)
    if item is not None:
        key = {"source": item["source"], "session_key": item["session_key"]}
        item["meter_values"] = await store.view_rows("meter_values", ViewFilter(equal=key))
        item["price"] = await _price(store, item, rates)
    return item


async def _price(store: Store, item: dict[str, Any], rates: Rates) -> dict[str, Any] | None:
    if item.get("cost") not in (None, "") or not (rates.tariffs or rates.reimbursements):
        return None
    owner: dict[str, Any] = {}
    if item.get("token"):
        entity = await store.auth_get("token", normalise_uid(str(item["token"])))
        if entity is not None:
            owner = msgspec.json.decode(entity.doc)
    priced = price(
        PricedSession(
            source=str(item["source"]),
            charger_id=item.get("charger_id"),
            installation_id=item.get("installation_id"),
            started_at=_moment(item.get("started_at")),
            ended_at=_moment(item.get("ended_at")),
            energy_kwh=item.get("energy_kwh"),
            vehicle=owner.get("vehicle"),
            driver=owner.get("driver"),
        ),
        rates.tariffs,
        rates.reimbursements,
    )
    return None if priced is None else msgspec.to_builtins(priced)


def _moment(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return parse_iso(str(value))


async def payment_detail(store: Store, row_id: str) -> dict[str, Any] | None:
    """A payment object with every state reported for it, in arrival order (late,
    out-of-order reports included, with whether they were applied)."""
    item = await view_row(store, "payment_objects", row_id)
    if item is not None:
        key = {c: item[c] for c in ("source", "object_type", "object_id")}
        history = await store.view_rows("payment_states", ViewFilter(equal=key))
        history.sort(key=lambda state: (str(state["received_at"]), state["event_id"]))
        item["history"] = history
    return item


async def charge_point_detail(store: Store, row_id: str) -> dict[str, Any] | None:
    """A charge point with its EVSEs."""
    item = await view_row(store, "charge_points", row_id)
    if item is not None:
        key = {"source": item["source"], "charge_point_id": item["charge_point_id"]}
        item["evses"] = await store.view_rows("evses", ViewFilter(equal=key))
    return item


async def delivery_detail(store: Store, delivery_id: str) -> DeliveryDetail | None:
    """A delivery with its attempts (`history`), oldest first."""
    page = await store.list_deliveries(ViewFilter(equal={"id": delivery_id}), None, 1)
    if not page.items:
        return None
    history = await store.delivery_attempts(delivery_id)
    return DeliveryDetail(**msgspec.structs.asdict(page.items[0]), history=history)
