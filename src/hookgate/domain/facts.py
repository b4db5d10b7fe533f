"""Provider-neutral facts that events carry, the input of the domain views.

A provider module turns one stored event (its type and parsed document) into facts
(`Provider.facts`); `processing/` projects facts into the views. Neither side knows the
other's vocabulary: providers know payloads, projections know sessions, parking and
payments. Amounts and energy are decimal strings, instants are aware datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class ChargingSessionFact(msgspec.Struct, kw_only=True, frozen=True):
    """What one event says about one charging session.

    `keys` are the session's identities in this source, most specific first (a Zaptec end
    may name the session by the id hookgate issued or by Zaptec's own); the view row is
    the first key already known (as a key or as a row's `external_id`), else the first key.
    `None` fields say nothing. `occurred_at` orders the facts of one session, so a source
    must time all of them on one clock. `opens` marks the report of the session's start
    (it clears an `unmatched` flag that an end seen without its start raised).
    """

    keys: tuple[str, ...]
    occurred_at: datetime
    status: str | None = None  # "active" | "ended"
    charger_id: str | None = None
    # The installation (a Zaptec site) of the charger, where the provider names one.
    installation_id: str | None = None
    evse_id: str | None = None
    connector_id: str | None = None
    token: str | None = None
    user_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    energy_kwh: str | None = None
    cost: str | None = None  # incl. VAT
    cost_excl_vat: str | None = None
    currency: str | None = None
    external_id: str | None = None
    flags: tuple[str, ...] = ()
    opens: bool = False
    # What the cost is made of, from a billing record (CDR): [{"type", "amount",
    # "quantity", "unit"}], amounts as decimal strings in `currency`.
    cost_components: list[dict[str, Any]] | None = None


class MeterSample(msgspec.Struct, kw_only=True, frozen=True):
    """One meter reading of a session (energy in kWh when the measurand is energy)."""

    session_key: str
    at: datetime
    measurand: str
    value: str
    unit: str | None = None
    phase: str = ""


class EvseFact(msgspec.Struct, kw_only=True, frozen=True):
    """What one event says about one EVSE; inside a ChargePointFact it takes the charge
    point's id and time, on its own it needs `occurred_at`. `None` fields say nothing."""

    evse_id: str
    occurred_at: datetime | None = None
    charge_point_id: str | None = None
    status: str | None = None
    hardware_status: str | None = None
    connectors: list[dict[str, Any]] | None = None
    max_power_kw: str | None = None
    deleted: bool | None = None
    action: str | None = None


class ChargePointFact(msgspec.Struct, kw_only=True, frozen=True):
    """What one event says about a charge point; `None` fields say nothing."""

    charge_point_id: str
    occurred_at: datetime
    name: str | None = None
    vendor: str | None = None
    model: str | None = None
    serial_number: str | None = None
    firmware_version: str | None = None
    network_status: str | None = None
    hardware_status: str | None = None
    status: str | None = None
    location_id: str | None = None
    last_boot_at: datetime | None = None
    evses: tuple[EvseFact, ...] = ()
    deleted: bool | None = None
    action: str | None = None  # created | updated | deleted, from change notifications


class ParkingFact(msgspec.Struct, kw_only=True, frozen=True):
    """A completed, paid parking transaction (amounts as decimal strings)."""

    parking_id: str
    license_number: str
    started_at: datetime
    ended_at: datetime
    currency: str
    price: str
    price_vat: str
    price_excl_vat: str
    fee: str | None = None
    fee_vat: str | None = None
    fee_excl_vat: str | None = None
    parking_user_id: str | None = None
    area_id: str | None = None
    area_name: str | None = None
    operator_id: str | None = None
    operator_name: str | None = None
    consistent: bool = True
    flags: tuple[str, ...] = ()


class ObjectStateFact(msgspec.Struct, kw_only=True, frozen=True):
    """A payment or approval object reached a state.

    `rank` is the state's place in the provider's normal progression (a later state has a
    higher rank; None for a state the provider module does not know): the view never moves
    an object backwards, nor from a final state to a non-final one.
    """

    object_type: str  # "payment" | "approval"
    object_id: str
    state: str
    final: bool
    known: bool = True
    rank: int | None = None


class ReferenceFact(msgspec.Struct, kw_only=True, frozen=True):
    """A thin event that only names a resource to fetch (a CDR, a transaction)."""

    kind: str  # "cdr" | "transaction"
    ref_id: str
    occurred_at: datetime
    action: str | None = None


Fact = (
    ChargingSessionFact
    | MeterSample
    | ChargePointFact
    | EvseFact
    | ParkingFact
    | ObjectStateFact
    | ReferenceFact
)
