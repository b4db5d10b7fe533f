"""The shape of the domain-view tables (migration 0004), for the backends' generic row
access (`ViewTx`) and listings: primary keys, the listing order, and which columns hold
instants, JSON or booleans. A table or column not named here cannot be reached through
`ViewTx`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ViewTable:
    """Columns of one view table by kind; `order` is the unique, time-ordered key that
    listings page by (newest first)."""

    key: tuple[str, ...]
    columns: frozenset[str]
    instants: frozenset[str] = frozenset()
    json: frozenset[str] = frozenset()
    booleans: frozenset[str] = frozenset()
    integers: frozenset[str] = frozenset()
    order: tuple[str, ...] = ("id",)


def _table(
    key: tuple[str, ...],
    columns: str,
    instants: str = "",
    json: str = "",
    booleans: str = "",
    integers: str = "",
    order: tuple[str, ...] = ("id",),
) -> ViewTable:
    return ViewTable(
        key=key,
        columns=frozenset(columns.split()),
        instants=frozenset(instants.split()),
        json=frozenset(json.split()),
        booleans=frozenset(booleans.split()),
        integers=frozenset(integers.split()),
        order=order,
    )


VIEWS: dict[str, ViewTable] = {
    "charging_sessions": _table(
        ("source", "session_key"),
        "source session_key id provider status charger_id evse_id connector_id token user_id "
        "external_id started_at ended_at energy_kwh cost cost_excl_vat currency flags event_ids "
        "versions last_occurred_at updated_at cost_components installation_id plate",
        instants="started_at ended_at last_occurred_at updated_at",
        json="flags event_ids versions cost_components",
    ),
    "meter_values": _table(
        ("source", "session_key", "at", "measurand", "phase"),
        "source session_key at measurand phase value unit event_id",
        instants="at",
        order=("at", "source", "session_key", "measurand", "phase"),
    ),
    "charge_points": _table(
        ("source", "charge_point_id"),
        "source charge_point_id id name vendor model serial_number firmware_version "
        "network_status hardware_status status location_id last_boot_at deleted "
        "last_event_type last_action last_event_id versions last_occurred_at updated_at",
        instants="last_boot_at last_occurred_at updated_at",
        json="versions",
        booleans="deleted",
    ),
    "evses": _table(
        ("source", "evse_id"),
        "source evse_id id charge_point_id status hardware_status connectors max_power_kw "
        "deleted last_event_type last_action last_event_id versions last_occurred_at updated_at",
        instants="last_occurred_at updated_at",
        json="connectors versions",
        booleans="deleted",
    ),
    "parking_transactions": _table(
        ("source", "parking_id"),
        "source parking_id id event_id license_number parking_user_id started_at ended_at "
        "area_id area_name operator_id operator_name currency price price_vat price_excl_vat "
        "fee fee_vat fee_excl_vat consistent flags received_at plate",
        instants="started_at ended_at received_at",
        json="flags",
        booleans="consistent",
    ),
    "payment_objects": _table(
        ("source", "object_type", "object_id"),
        "source object_type object_id id state final flags first_seen_at updated_at last_event_id",
        instants="first_seen_at updated_at",
        json="flags",
        booleans="final",
    ),
    "payment_states": _table(
        ("event_id",),
        "event_id source object_type object_id state state_rank final known received_at "
        "applied out_of_order",
        instants="received_at",
        booleans="final known applied out_of_order",
        integers="state_rank",
        order=("event_id",),
    ),
    "provider_refs": _table(
        ("source", "kind", "ref_id"),
        "source kind ref_id id action first_seen_at last_occurred_at last_event_id event_ids",
        instants="first_seen_at last_occurred_at",
        json="event_ids",
    ),
    "reference_fetches": _table(
        ("source", "kind", "ref_id"),
        "source kind ref_id id event_id status attempts next_at last_error fetched_at "
        "document updated_at",
        instants="next_at fetched_at updated_at",
        json="document",
        integers="attempts",
    ),
}


def view(table: str) -> ViewTable:
    """The table's shape; KeyError names an unknown table."""
    try:
        return VIEWS[table]
    except KeyError:
        raise KeyError(f"{table!r} is not a view table") from None


def check_columns(table: ViewTable, names: Iterable[str]) -> None:
    """Refuse column names the table does not have (they would reach SQL text)."""
    unknown = [name for name in names if name not in table.columns]
    if unknown:
        raise KeyError(f"unknown view columns {unknown}")
