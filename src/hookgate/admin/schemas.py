"""The admin API's types: the query parameters and bodies handlers decode, and the shapes
they answer. The OpenAPI document is generated from these (admin/contract.py), and the
suite checks the live answers against it, so a change here is a change of the contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from hookgate.authorization.outcome import RESULTS
from hookgate.domain.anomalies import FLAGS
from hookgate.domain.decisions import DecisionRecord
from hookgate.domain.events import Event, EventStatus, IsoInstant
from hookgate.domain.outbox import Delivery, DeliveryAttempt, DeliveryDetail, DeliveryStatus
from hookgate.domain.queries import Page
from hookgate.domain.rules import Budget, ChargerRule, Group, Token

# The stored records the API answers as they are (hookgate.domain); what is defined below
# is the API's own: query parameters, bodies, and envelopes that render bytes as text.
__all__ = [
    "DecisionRecord",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryDetail",
    "DeliveryStatus",
    "Event",
    "EventStatus",
    "IsoInstant",
    "Page",
]

# Instants are parsed by the handlers (`timeutil.parse_iso`), so that an offset-less or
# out-of-range value gets a 400 naming the parameter rather than a generic type error.
Instant = Annotated[
    str,
    Meta(
        extra_json_schema={"format": "date-time"},
        description="ISO 8601 date-time with a UTC offset, e.g. 2025-12-04T12:00:00Z",
    ),
]
Limit = Annotated[int, Meta(ge=1, le=500, description="Items per page (1 to 500).")]
Cursor = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_-]+$",
        max_length=512,
        description="The `next` value of the previous page; absent for the first.",
    ),
]

DecisionResult = Literal[RESULTS]  # type: ignore[valid-type]
AnomalyFlag = Literal[FLAGS]  # type: ignore[valid-type]
Scope = Literal["read", "write"]


# -- paging ----------------------------------------------------------------------------


class PageQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every list pages the same way: `limit`, then `cursor` from the answer's `next`."""

    limit: Limit = 50
    cursor: Cursor | None = None


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details; `type` ends in a stable code (e.g. `bad-parameter`).
    Parameter errors add `parameter` (and `allowed` where the values are a fixed set)."""

    type: str
    title: str
    status: int
    detail: str
    parameter: str | None = None
    allowed: list[str] | None = None


# -- inbox, rejections, decisions ------------------------------------------------------


class EventsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    provider: str | None = None
    type: str | None = None
    status: EventStatus | None = None
    since: Instant | None = None


class EventDetail(Event, kw_only=True):
    """An event with the exact bytes the provider sent (as text when they are UTF-8)."""

    raw_body: str | None
    raw_body_base64: str


class RejectionsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None


class RejectionRecord(msgspec.Struct, kw_only=True):
    """A refused call (masked credentials), kept for inspection and never processed: the
    stored record (hookgate.domain.events.StoredRejection) with its body as text when it
    is UTF-8, and always as base64."""

    id: str
    received_at: IsoInstant
    source: str
    provider: str | None
    method: str
    path: str
    status: int
    reason: str
    detail: str
    headers: dict[str, str]
    remote: str | None
    body_sha256: str
    body_size: int
    rerun_event_id: str | None
    request_id: str | None
    body: str | None
    body_base64: str


class RejectionCountsQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    since: Instant | None = None
    until: Instant | None = None


class RejectionCount(msgspec.Struct, kw_only=True):
    source: str
    reason: str
    total: int
    recorded: int
    unrecorded: int
    body_bytes: int
    first_minute: datetime
    last_minute: datetime


class RejectionCounts(msgspec.Struct, kw_only=True):
    """Every refusal, recorded in full or only counted, per source and reason."""

    since: datetime
    until: datetime | None
    items: list[RejectionCount]


class DecisionsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    token: str | None = None
    result: DecisionResult | None = None
    since: Instant | None = None
    until: Instant | None = None


# -- domain views ----------------------------------------------------------------------


class SessionsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    status: str | None = None
    charger_id: str | None = None
    token: str | None = None
    # Sessions carrying this anomaly flag (docs/views.md#anomaly-flags).
    flag: AnomalyFlag | None = None
    since: Instant | None = None
    until: Instant | None = None


class MeterValue(msgspec.Struct, kw_only=True):
    source: str
    session_key: str
    at: datetime
    measurand: str
    phase: str
    value: str
    unit: str | None
    event_id: str


class ChargingSession(msgspec.Struct, kw_only=True):
    """A charging session as the providers' events describe it (money as decimal text)."""

    id: str
    source: str
    session_key: str
    provider: str
    status: str
    charger_id: str | None
    evse_id: str | None
    connector_id: str | None
    token: str | None
    user_id: str | None
    external_id: str | None
    started_at: datetime | None
    ended_at: datetime | None
    energy_kwh: str | None
    cost: str | None
    cost_excl_vat: str | None
    currency: str | None
    flags: list[str]
    event_ids: list[str]
    versions: dict[str, Any]
    last_occurred_at: datetime | None
    updated_at: datetime
    # What a fetched CDR says the cost is made of (type, amount, quantity, unit).
    cost_components: list[dict[str, Any]] | None = None
    # The token's vehicle as plates compare (upper case, no spaces or dashes), by which
    # parked_while_charging is found; None without a token vehicle.
    plate: str | None = None


class ChargingSessionDetail(ChargingSession, kw_only=True):
    meter_values: list[MeterValue]
    # The configured tariff's price of a session no provider priced (by, currency,
    # amount_excl_vat, vat, total, components); None otherwise.
    price: dict[str, Any] | None = None


class ParkingQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    license_number: str | None = None
    # Transactions carrying this anomaly flag (parked_while_charging is the one they get).
    flag: AnomalyFlag | None = None
    since: Instant | None = None
    until: Instant | None = None


class ParkingTransaction(msgspec.Struct, kw_only=True):
    id: str
    source: str
    parking_id: str
    event_id: str
    license_number: str
    parking_user_id: str | None
    started_at: datetime
    ended_at: datetime
    area_id: str | None
    area_name: str | None
    operator_id: str | None
    operator_name: str | None
    currency: str
    price: str
    price_vat: str
    price_excl_vat: str
    fee: str | None
    fee_vat: str | None
    fee_excl_vat: str | None
    consistent: bool
    flags: list[str]
    received_at: datetime
    # `license_number` as plates compare (upper case, no spaces or dashes).
    plate: str | None = None


class PaymentsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    object_type: str | None = None
    state: str | None = None
    since: Instant | None = None
    until: Instant | None = None


class PaymentState(msgspec.Struct, kw_only=True):
    event_id: str
    source: str
    object_type: str
    object_id: str
    state: str
    state_rank: int | None
    final: bool
    known: bool
    received_at: datetime
    applied: bool
    out_of_order: bool


class PaymentObject(msgspec.Struct, kw_only=True):
    id: str
    source: str
    object_type: str
    object_id: str
    state: str | None
    final: bool
    flags: list[str]
    first_seen_at: datetime
    updated_at: datetime
    last_event_id: str | None


class PaymentObjectDetail(PaymentObject, kw_only=True):
    history: list[PaymentState]


class ChargePointsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    source: str | None = None
    status: str | None = None
    network_status: str | None = None
    since: Instant | None = None
    until: Instant | None = None


class Evse(msgspec.Struct, kw_only=True):
    id: str
    source: str
    evse_id: str
    charge_point_id: str | None
    status: str | None
    hardware_status: str | None
    connectors: Any
    max_power_kw: str | None
    deleted: bool
    last_event_type: str | None
    last_action: str | None
    last_event_id: str | None
    versions: dict[str, Any]
    last_occurred_at: datetime | None
    updated_at: datetime


class ChargePoint(msgspec.Struct, kw_only=True):
    id: str
    source: str
    charge_point_id: str
    name: str | None
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    network_status: str | None
    hardware_status: str | None
    status: str | None
    location_id: str | None
    last_boot_at: datetime | None
    deleted: bool
    last_event_type: str | None
    last_action: str | None
    last_event_id: str | None
    versions: dict[str, Any]
    last_occurred_at: datetime | None
    updated_at: datetime


class ChargePointDetail(ChargePoint, kw_only=True):
    evses: list[Evse]


# -- deliveries, destinations, replay --------------------------------------------------


class DeliveriesQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    event_id: str | None = None
    destination: str | None = None
    status: DeliveryStatus | None = None
    since: Instant | None = None
    until: Instant | None = None


class DestinationFilter(msgspec.Struct, kw_only=True):
    providers: list[str]
    sources: list[str]
    event_types: list[str]
    where: dict[str, Any]


class RetryPolicy(msgspec.Struct, kw_only=True):
    max_attempts: int
    initial_backoff_seconds: float
    max_backoff_seconds: float
    max_age_seconds: float


class Destination(msgspec.Struct, kw_only=True):
    """A configured destination without its secrets, and whether it is paused."""

    name: str
    kind: str
    url: str | None
    topic: str | None
    brokers: list[str]
    signed: bool
    header_names: list[str]
    filter: DestinationFilter
    retry: RetryPolicy
    disabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None


class DestinationsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    pass


class DisableBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Why the destination is paused (shown in its listing and the audit log)."""

    reason: Annotated[str, Meta(max_length=500)] = "disabled by an operator"


class ReplayBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Deliver again: named events, or every delivery matching the filters. With
    `dry_run` nothing is queued and the answer says how many would be."""

    event_ids: Annotated[list[str], Meta(max_length=1000)] = []
    source: str | None = None
    since: Instant | None = None
    status: DeliveryStatus | None = None
    destination: str | None = None
    dry_run: bool = False


class ReplayEventQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    destination: str | None = None
    dry_run: bool = False


class ReplayResult(msgspec.Struct, kw_only=True):
    """How many deliveries (and failed events) were queued, or would be with `dry_run`."""

    queued: int
    dry_run: bool = False


class RerunResult(msgspec.Struct, kw_only=True):
    """`queued`: a quarantined event is queued for processing; `stored`: a rejected call is
    now an inbox event; `duplicate`: the inbox already holds it as `duplicate_of`."""

    status: Literal["queued", "stored", "duplicate"]
    event_id: str
    event_type: str
    duplicate_of: str | None = None
    detail: str


class ExportQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    month: Annotated[str, Meta(pattern=r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
    format: Literal["csv", "json"] = "csv"
    totals: bool = False


class ReconcileQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    month: Annotated[str, Meta(pattern=r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
    format: Literal["csv", "json"] = "json"
    part: Literal["lines", "totals", "exceptions"] = "lines"


# -- sources ---------------------------------------------------------------------------


class SourceHealth(msgspec.Struct, kw_only=True):
    """A configured source as operators may see it: its settings without secrets (each
    credential as a masked hint), and what it received lately."""

    name: str
    provider: str
    transport: Literal["http", "kafka"]
    path: str | None
    auth: str | None
    credentials: list[str]
    settings: dict[str, Any]
    last_event_at: IsoInstant | None
    last_event_id: str | None
    last_rejection_at: IsoInstant | None
    last_rejection_reason: str | None
    events_24h: dict[str, int]
    rejections_24h: int


# -- audit log -------------------------------------------------------------------------


class AuditQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    actor: str | None = None
    action: str | None = None
    outcome: Literal["ok", "refused", "failed"] | None = None
    since: Instant | None = None
    until: Instant | None = None


class AuditEntry(msgspec.Struct, kw_only=True):
    """One change made through the API or the command line: who (`actor`: an admin
    token's name or `cli:<user>`), when, what, on which target, and how it ended."""

    id: str
    at: datetime
    actor: str
    channel: Literal["api", "cli", "console"]
    action: str
    target: str | None
    detail: dict[str, Any]
    outcome: Literal["ok", "refused", "failed"]
    status: int | None


# -- rules -----------------------------------------------------------------------------


class TokensQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    group_id: str | None = None
    status: Literal["valid", "blocked"] | None = None
    type: str | None = None
    whitelist: str | None = None
    managed_by: Literal["api", "config"] | None = None


class GroupsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    status: Literal["valid", "blocked"] | None = None
    managed_by: Literal["api", "config"] | None = None


class RulesQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["open", "reserved"] | None = None
    group_id: str | None = None
    managed_by: Literal["api", "config"] | None = None


class BudgetsQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    subject: Literal["token", "group"] | None = None
    subject_id: str | None = None
    metric: str | None = None
    period: str | None = None
    managed_by: Literal["api", "config"] | None = None


class BudgetUsage(Budget, kw_only=True):
    """A budget with its current period as the engine counts it (decimal text)."""

    used: str
    reserved_kwh: str
    remaining: str
    active_sessions: int


class Health(msgspec.Struct, kw_only=True):
    status: str
    storage: str | None = None


ENTITIES: dict[str, type[msgspec.Struct]] = {
    "tokens": Token,
    "groups": Group,
    "rules": ChargerRule,
    "budgets": Budget,
}
ENTITY_ANSWERS: dict[str, type[msgspec.Struct]] = {**ENTITIES, "budgets": BudgetUsage}
RULE_QUERIES: dict[str, type[PageQuery]] = {
    "tokens": TokensQuery,
    "groups": GroupsQuery,
    "rules": RulesQuery,
    "budgets": BudgetsQuery,
}
