"""One view row with what belongs to it (meter values, state history, EVSEs, delivery
attempts), the same for the admin API and the command line."""

from __future__ import annotations

from typing import Any

import msgspec

from hookgate.domain.outbox import DeliveryDetail
from hookgate.domain.queries import ViewFilter
from hookgate.store.base import Store


async def view_row(store: Store, table: str, row_id: str) -> dict[str, Any] | None:
    """The row of a view with this `id`."""
    page = await store.list_view(table, ViewFilter(equal={"id": row_id}), None, 1)
    return page.items[0] if page.items else None


async def session_detail(store: Store, row_id: str) -> dict[str, Any] | None:
    """A charging session with its meter values, oldest first."""
    item = await view_row(store, "charging_sessions", row_id)
    if item is not None:
        key = {"source": item["source"], "session_key": item["session_key"]}
        item["meter_values"] = await store.view_rows("meter_values", ViewFilter(equal=key))
    return item


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
