"""Fold provider-neutral facts into the domain views (migration 0004), through `ViewTx`.

Providers resend, retry and reorder, and the store may process an event again after a
crash or a replay. Every rule here therefore gives the same rows whatever the order the
events are processed in, and processing an event twice changes nothing:

- a field takes the value of the newest fact that speaks of it: newest by the time the
  provider says it happened, then by event id (arrival order) on a tie; each row keeps
  the "<occurred_at>|<event id>" version of every field in `versions`;
- a session's energy never decreases; a session that ended never becomes active again;
- id lists and flags are sorted sets;
- a payment object's state is the result of reading its whole state history in arrival
  order, so a late state is recognised whenever it is processed.

A row is written only when it changes (`updated_at` then says when).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hookgate.domain.anomalies import (
    ANOMALIES,
    OVERLAP,
    PARKED,
    UNAUTHORIZED,
    AnomalyRules,
    overlaps,
    parked_while_charging,
    plate,
    row_anomalies,
)
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import (
    ChargePointFact,
    ChargingSessionFact,
    EvseFact,
    Fact,
    MeterSample,
    ObjectStateFact,
    ParkingFact,
    ReferenceFact,
)
from hookgate.domain.rules import normalise_uid
from hookgate.ids import new_id
from hookgate.store.base import ViewTx
from hookgate.store.views import view
from hookgate.timeutil import iso, parse_iso, utcnow

__all__ = ["project"]

_STATUS_RANK = {"active": 0, "ended": 1}
_SESSION_FIELDS = (
    "charger_id",
    "installation_id",
    "evse_id",
    "connector_id",
    "token",
    "user_id",
    "external_id",
    "started_at",
    "ended_at",
    "cost",
    "cost_excl_vat",
    "currency",
    "cost_components",
)
_CHARGE_POINT_FIELDS = (
    "name",
    "vendor",
    "model",
    "serial_number",
    "firmware_version",
    "network_status",
    "hardware_status",
    "status",
    "location_id",
    "last_boot_at",
    "deleted",
)
_EVSE_FIELDS = ("charge_point_id", "status", "hardware_status", "connectors", "max_power_kw")
# The marker, among a session's versions, that its start was reported.
_OPENED = "_opened"
_UNMATCHED = "unmatched"
_HISTORY_LIMIT = 10_000
# Sessions of one token looked at for overlaps (a token's recent history).
_OVERLAP_SCAN = 500
# Rows of one vehicle (the other kind) looked at for parked-while-charging: the latest
# that started before the row ended. A vehicle's parkings (or sessions) follow each other,
# so the ones that overlap a row come first.
_PARKED_SCAN = 20


def project(
    tx: ViewTx, event: StoredEvent, facts: list[Fact], rules: AnomalyRules | None = None
) -> list[str]:
    """Fold one event's facts into the views (idempotent, order-tolerant). With `rules`,
    charging sessions and parking transactions are checked for anomalies; returns the
    anomaly flags this event newly raised on its own rows (for the metrics)."""
    raised: list[str] = []
    for fact in facts:
        if isinstance(fact, ChargingSessionFact):
            raised += _session(tx, event, fact, rules)
        elif isinstance(fact, MeterSample):
            _meter_value(tx, event, fact)
        elif isinstance(fact, ChargePointFact):
            _charge_point(tx, event, fact)
        elif isinstance(fact, EvseFact):
            _evse(tx, event, fact, fact.occurred_at or event.received_at, None)
        elif isinstance(fact, ParkingFact):
            raised += _parking(tx, event, fact, rules)
        elif isinstance(fact, ObjectStateFact):
            _object_state(tx, event, fact)
        elif isinstance(fact, ReferenceFact):
            _reference(tx, event, fact)
    return raised


# -- shared rules ---------------------------------------------------------------------


def _version(occurred_at: datetime, event_id: str) -> str:
    """Fixed-width instant, then the time-ordered event id: text order is recency."""
    return f"{iso(occurred_at)}|{event_id}"


def _blank(table: str, **values: Any) -> dict[str, Any]:
    """A new row: every column present (None unless given), a fresh time-ordered id."""
    row: dict[str, Any] = dict.fromkeys(view(table).columns)
    if "id" in row:
        row["id"] = new_id()
    row.update(values)
    return row


def _newest(row: dict[str, Any], version: str, values: dict[str, Any]) -> None:
    """Set each non-None value whose fact is at least as new as the one that set it."""
    versions: dict[str, str] = row["versions"]
    for name, value in values.items():
        if value is not None and version >= versions.get(name, ""):
            row[name] = value
            versions[name] = version


def _later(first: datetime | None, second: datetime) -> datetime:
    return second if first is None or second > first else first


def _save(tx: ViewTx, table: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """Write `new` when it differs from what is stored, stamping `updated_at`."""
    if new == old:
        return
    if "updated_at" in new:
        new["updated_at"] = utcnow()
    tx.upsert(table, new)


def _energy(value: str | None) -> Decimal | None:
    try:
        return None if value is None else Decimal(value)
    except InvalidOperation:
        return None


# -- charging sessions and meter values -----------------------------------------------


def _find_session(tx: ViewTx, source: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """The row of the first key known as a session key, else as a row's external id."""
    for key in keys:
        row = tx.get("charging_sessions", {"source": source, "session_key": key})
        if row is not None:
            return row
    for key in keys:
        rows = tx.select("charging_sessions", {"source": source, "external_id": key}, limit=1)
        if rows:
            return rows[0]
    return None


def _session(
    tx: ViewTx, event: StoredEvent, fact: ChargingSessionFact, rules: AnomalyRules | None
) -> list[str]:
    if not fact.keys:
        return []
    old = _find_session(tx, event.source, fact.keys)
    if old is None:
        row = _blank(
            "charging_sessions",
            source=event.source,
            session_key=fact.keys[0],
            provider=event.provider,
            status="active",
            flags=[],
            event_ids=[],
            versions={},
        )
    else:
        row = {**old, "versions": dict(old["versions"])}
    version = _version(fact.occurred_at, event.id)
    _newest(row, version, {name: getattr(fact, name) for name in _SESSION_FIELDS})

    reported = _energy(fact.energy_kwh)
    known = _energy(row["energy_kwh"])
    if reported is not None and (known is None or reported > known):
        row["energy_kwh"] = fact.energy_kwh
    if fact.status in _STATUS_RANK and _STATUS_RANK[fact.status] > _STATUS_RANK.get(
        row["status"], -1
    ):
        row["status"] = fact.status

    if fact.opens:
        row["versions"][_OPENED] = max(row["versions"].get(_OPENED, ""), version)
    flags = set(row["flags"]) | set(fact.flags)
    if _OPENED in row["versions"]:
        flags.discard(_UNMATCHED)
    row["flags"] = sorted(flags)
    row["event_ids"] = sorted({*row["event_ids"], event.id})
    row["last_occurred_at"] = _later(row["last_occurred_at"], fact.occurred_at)
    raised: list[str] = []
    if rules is not None:
        before = set(old["flags"]) if old else set()
        row["plate"] = _session_plate(tx, old, row)
        row["flags"] = _anomalies(tx, event, row, rules)
        raised = sorted(set(row["flags"]) - before & ANOMALIES)
    _save(tx, "charging_sessions", old, row)
    return raised


def _approved_start(row: dict[str, Any]) -> datetime | None:
    """When the session's start was reported (approved, for a Zaptec decision): the
    instant that begins its `_opened` version."""
    opened = row["versions"].get(_OPENED)
    if not opened:
        return None
    try:
        return parse_iso(opened.split("|", 1)[0])
    except ValueError:
        return None


def _anomalies(
    tx: ViewTx, event: StoredEvent, row: dict[str, Any], rules: AnomalyRules
) -> list[str]:
    """The row's flags with its anomalies computed afresh (a provider's flags and
    `unmatched` are kept as they are). An overlapping session of the same token is
    flagged too."""
    found = row_anomalies(row, event.received_at, rules, _approved_start(row))
    if row["token"]:
        others = tx.select("charging_sessions", {"token": row["token"]}, limit=_OVERLAP_SCAN)
        for other in others:
            if (other["source"], other["session_key"]) == (row["source"], row["session_key"]):
                continue
            if overlaps(row, other):
                found.add(OVERLAP)
                if OVERLAP not in other["flags"]:
                    tx.upsert(
                        "charging_sessions",
                        {
                            "source": other["source"],
                            "session_key": other["session_key"],
                            "flags": sorted({*other["flags"], OVERLAP}),
                        },
                    )
    # Only an ended session is compared (`parked_while_charging`): no lookup before then.
    if row["plate"] and row["ended_at"] and _parked(tx, row, "parking_transactions"):
        found.add(PARKED)
    kept = {flag for flag in row["flags"] if flag not in ANOMALIES or flag == UNAUTHORIZED}
    return sorted(kept | found)


def _session_plate(tx: ViewTx, old: dict[str, Any] | None, row: dict[str, Any]) -> str | None:
    """The plate of the session's vehicle: its token's `vehicle`, read once per token
    (a primary-key read), kept while the token stays the same."""
    if not row["token"]:
        return None
    if old is not None and old["token"] == row["token"] and old["plate"]:
        return str(old["plate"])
    return plate(tx.token_vehicle(normalise_uid(str(row["token"]))))


def _parked(tx: ViewTx, row: dict[str, Any], other_table: str) -> bool:
    """Whether `row` (an ended session or a parking transaction) overlaps a row of the
    other kind of the same vehicle: one range read of the other table's plate index. The
    other rows found are flagged too (a flag is never taken off another row here)."""
    parking = other_table == "parking_transactions"
    found = False
    others = tx.select(
        other_table,
        {"plate": row["plate"]},
        order_by="started_at desc",
        limit=_PARKED_SCAN,
        below={"started_at": row["ended_at"]},
    )
    for other in others:
        if not (
            parked_while_charging(other, row) if parking else parked_while_charging(row, other)
        ):
            continue
        found = True
        if PARKED not in other["flags"]:
            key = {column: other[column] for column in view(other_table).key}
            tx.upsert(other_table, {**key, "flags": sorted({*other["flags"], PARKED})})
    return found


def _meter_value(tx: ViewTx, event: StoredEvent, sample: MeterSample) -> None:
    key = {
        "source": event.source,
        "session_key": sample.session_key,
        "at": sample.at,
        "measurand": sample.measurand,
        "phase": sample.phase,
    }
    row = {**key, "value": sample.value, "unit": sample.unit, "event_id": event.id}
    if tx.insert("meter_values", row):  # the usual case: a new reading, one statement
        return
    old = tx.get("meter_values", key)
    # A reading sent again with another value: the later arrival corrects it.
    if old is None or (old != row and event.id >= old["event_id"]):
        tx.upsert("meter_values", row)


# -- charge points and EVSEs ----------------------------------------------------------


def _charge_point(tx: ViewTx, event: StoredEvent, fact: ChargePointFact) -> None:
    key = {"source": event.source, "charge_point_id": fact.charge_point_id}
    old = tx.get("charge_points", key)
    if old is None:
        row = _blank("charge_points", **key, deleted=False, versions={})
    else:
        row = {**old, "versions": dict(old["versions"])}
    version = _version(fact.occurred_at, event.id)
    values = {name: getattr(fact, name) for name in _CHARGE_POINT_FIELDS}
    values.update(last_event_type=event.event_type, last_action=fact.action, last_event_id=event.id)
    _newest(row, version, values)
    row["last_occurred_at"] = _later(row["last_occurred_at"], fact.occurred_at)
    _save(tx, "charge_points", old, row)
    for evse in fact.evses:
        _evse(tx, event, evse, evse.occurred_at or fact.occurred_at, fact.charge_point_id)


def _evse(
    tx: ViewTx,
    event: StoredEvent,
    fact: EvseFact,
    occurred_at: datetime,
    charge_point_id: str | None,
) -> None:
    key = {"source": event.source, "evse_id": fact.evse_id}
    old = tx.get("evses", key)
    if old is None:
        row = _blank("evses", **key, deleted=False, versions={})
    else:
        row = {**old, "versions": dict(old["versions"])}
    values = {name: getattr(fact, name) for name in _EVSE_FIELDS}
    values.update(
        charge_point_id=fact.charge_point_id or charge_point_id,
        deleted=fact.deleted,
        last_event_type=event.event_type,
        last_action=fact.action,
        last_event_id=event.id,
    )
    _newest(row, _version(occurred_at, event.id), values)
    row["last_occurred_at"] = _later(row["last_occurred_at"], occurred_at)
    _save(tx, "evses", old, row)


# -- parking --------------------------------------------------------------------------


def _parking(
    tx: ViewTx, event: StoredEvent, fact: ParkingFact, rules: AnomalyRules | None
) -> list[str]:
    key = {"source": event.source, "parking_id": fact.parking_id}
    old = tx.get("parking_transactions", key)
    # One event per parking id (the inbox deduplicates); should two ever meet, the later
    # arrival wins.
    if old is not None and event.id < old["event_id"]:
        return []
    row = {
        **key,
        "id": old["id"] if old else new_id(),
        "event_id": event.id,
        "license_number": fact.license_number,
        "parking_user_id": fact.parking_user_id,
        "started_at": fact.started_at,
        "ended_at": fact.ended_at,
        "area_id": fact.area_id,
        "area_name": fact.area_name,
        "operator_id": fact.operator_id,
        "operator_name": fact.operator_name,
        "currency": fact.currency,
        "price": fact.price,
        "price_vat": fact.price_vat,
        "price_excl_vat": fact.price_excl_vat,
        "fee": fact.fee,
        "fee_vat": fact.fee_vat,
        "fee_excl_vat": fact.fee_excl_vat,
        "consistent": fact.consistent,
        "flags": sorted(set(fact.flags)),
        "received_at": event.received_at,
        "plate": plate(fact.license_number),
    }
    raised: list[str] = []
    if rules is not None and row["plate"] and _parked(tx, row, "charging_sessions"):
        row["flags"] = sorted({*fact.flags, PARKED})
        if old is None or PARKED not in old["flags"]:
            raised.append(PARKED)
    _save(tx, "parking_transactions", old, row)
    return raised


# -- payment and approval objects -----------------------------------------------------


def _step(current: dict[str, Any] | None, rank: int | None, state: dict[str, Any]) -> str:
    """What one state does to the object, read in arrival order:
    `apply`, `late` (behind the current state: kept in the history only), `conflict`
    (another final state of the same rank: the first one stays) or `hold` (an unknown
    state after a final one)."""
    if current is None:
        return "apply"
    own = state["state_rank"] or 0
    if current["final"]:
        if not state["known"]:
            return "hold"
        if state["final"] and own > (rank or 0):
            return "apply"
        if state["final"] and own == rank and state["state"] != current["state"]:
            return "conflict"
        return "late"
    if not state["known"] or rank is None or own >= rank:
        return "apply"
    return "late"


def _object_state(tx: ViewTx, event: StoredEvent, fact: ObjectStateFact) -> None:
    key = {"source": event.source, "object_type": fact.object_type, "object_id": fact.object_id}
    tx.insert(
        "payment_states",
        {
            "event_id": event.id,
            **key,
            "state": fact.state,
            "state_rank": fact.rank if fact.known else None,
            "final": fact.final,
            "known": fact.known,
            "received_at": event.received_at,
            "applied": False,
            "out_of_order": False,
        },
    )
    history = tx.select("payment_states", key, order_by="event_id", limit=_HISTORY_LIMIT)
    current: dict[str, Any] | None = None
    rank: int | None = None
    flags: set[str] = set()
    for state in history:
        outcome = _step(current, rank, state)
        if outcome == "apply":
            current = state
            if state["known"]:
                rank = state["state_rank"]
        elif outcome == "late":
            flags.add("out_of_order")
        elif outcome == "conflict":
            flags.add("conflicting_final")
        if not state["known"]:
            flags.add("unknown_state")
        applied, late = outcome == "apply", outcome == "late"
        if (state["applied"], state["out_of_order"]) != (applied, late):
            tx.upsert(
                "payment_states",
                {"event_id": state["event_id"], "applied": applied, "out_of_order": late},
            )
    if current is None:
        return
    old = tx.get("payment_objects", key)
    row = {
        **key,
        "id": old["id"] if old else new_id(),
        "state": current["state"],
        "final": current["final"],
        "flags": sorted(flags),
        "first_seen_at": min(state["received_at"] for state in history),
        "updated_at": current["received_at"],
        "last_event_id": current["event_id"],
    }
    if row != old:
        tx.upsert("payment_objects", row)


# -- thin references ------------------------------------------------------------------


def _reference(tx: ViewTx, event: StoredEvent, fact: ReferenceFact) -> None:
    key = {"source": event.source, "kind": fact.kind, "ref_id": fact.ref_id}
    old = tx.get("provider_refs", key)
    if old is None:
        row = _blank(
            "provider_refs",
            **key,
            action=fact.action,
            first_seen_at=event.received_at,
            last_occurred_at=fact.occurred_at,
            last_event_id=event.id,
            event_ids=[event.id],
        )
    else:
        row = dict(old)
        row["event_ids"] = sorted({*old["event_ids"], event.id})
        row["first_seen_at"] = min(old["first_seen_at"], event.received_at)
        stored = _version(old["last_occurred_at"], old["last_event_id"])
        if _version(fact.occurred_at, event.id) >= stored:
            row["last_occurred_at"] = fact.occurred_at
            row["last_event_id"] = event.id
            if fact.action is not None:
                row["action"] = fact.action
    _save(tx, "provider_refs", old, row)
    if old is None or event.id not in old["event_ids"]:
        _queue_fetch(tx, event, key)


def _queue_fetch(tx: ViewTx, event: StoredEvent, key: dict[str, Any]) -> None:
    """Ask the fetch worker (processing/fetcher.py) to read the named object: it is new,
    or a notification it had not seen says it changed. A row already pending keeps its
    attempts; the newest notification is the one the fetched object is projected under."""
    old = tx.get("reference_fetches", key)
    if old is not None and old["status"] == "pending" and old["event_id"] >= event.id:
        return
    now = utcnow()
    tx.upsert(
        "reference_fetches",
        {
            **key,
            "id": old["id"] if old else new_id(),
            "event_id": max(event.id, old["event_id"]) if old else event.id,
            "status": "pending",
            "attempts": old["attempts"] if old and old["status"] == "pending" else 0,
            "next_at": now,
            "last_error": old["last_error"] if old else None,
            "fetched_at": old["fetched_at"] if old else None,
            "document": old["document"] if old else None,
            "updated_at": now,
        },
    )
