"""AMPECO charging-platform notifications (HMAC-SHA256 in X-Signature, reply 202)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from hookgate.domain.decisions import ConsumptionReport
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import (
    ChargePointFact,
    ChargingSessionFact,
    EvseFact,
    Fact,
    MeterSample,
    ReferenceFact,
)
from hookgate.providers import ampeco_catalog as catalog
from hookgate.providers._hmac import SignedProvider
from hookgate.providers.base import (
    Answer,
    Call,
    Parsed,
    body_hash,
    decode,
    json_answer,
    json_block,
)
from hookgate.timeutil import parse_iso, utcnow

_KWH = Decimal(1000)


def _instant(text: str | None) -> datetime:
    try:
        return parse_iso(text) if text else utcnow()
    except ValueError:
        return utcnow()


def _energy_wh(
    e: catalog.SessionStartStopNotification | catalog.SessionStartStopNotificationV2,
) -> float | int | None:
    """Energy of a stopped session: as reported, else the meter difference (None when
    a drifted body carries neither)."""
    if e.energyConsumed is not None:
        return e.energyConsumed
    start: int | None = getattr(e, "meterStart", None)
    stop: int | None = getattr(e, "meterStop", None)
    if start is None or stop is None:
        return None
    return max(stop - start, 0)


def session_consumption(event: msgspec.Struct) -> ConsumptionReport | None:
    """Energy (Wh, reported as kWh) and money of a session, from the events that carry them."""
    if isinstance(
        event, catalog.SessionStartStopNotification | catalog.SessionStartStopNotificationV2
    ):
        if event.action != "stop":
            return None
        wh = _energy_wh(event)
        if wh is None:
            return None
        return ConsumptionReport(
            session_key=f"session:{event.sessionId}",
            origin="ampeco",
            token=event.idTag,
            kwh=str(Decimal(str(wh)) / _KWH),
            occurred_at=_instant(event.stoppedAtTimestamp or event.lastUpdatedAt),
        )
    if isinstance(event, catalog.SessionUpdateNotification):
        session = event.session
        amount = session.totalAmount
        if not session.energy and amount is None:
            return None
        return ConsumptionReport(
            session_key=f"session:{session.id}",
            origin="ampeco",
            token=session.idTag,
            kwh=str(Decimal(str(session.energy or 0)) / _KWH),
            money=str(Decimal(str(amount.withTax))) if amount is not None else None,
            currency=session.currency if amount is not None else None,
            occurred_at=_instant(session.stoppedAt or session.startedAt),
        )
    return None


class _Head(msgspec.Struct):
    notification: str


class _LooseHead(msgspec.Struct):
    """The type name of a body the catalog refused, whatever else it holds."""

    notification: Any = None


class Ampeco(SignedProvider):
    """One URL takes every notification type; `notification` names it."""

    name = "ampeco"
    algorithm = "sha256"
    keep_headers: ClassVar[frozenset[str]] = SignedProvider.keep_headers | {
        "x-signature",
        "x-timestamp",
        "x-tenant",
        "x-webhook-id",
        "x-webhook-type",
    }
    secret_issuer = "the AMPECO API token the notification subscription is created with"
    resend = (
        "AMPECO retries a refused notification a few times and can resend failed "
        "notifications in bulk from its back office"
    )
    init_placeholder = "ampeco-api-token"

    @staticmethod
    def notifications() -> list[str]:
        """The notification types to subscribe to: every type hookgate reads, less the
        ones AMPECO deprecated in favour of a newer name."""
        return sorted(set(catalog.EVENTS) - set(catalog.DEPRECATED))

    @classmethod
    def subscription(cls, url: str) -> dict[str, object]:
        """The body of AMPECO's `POST /public-api/notifications/v2.0` (Notifications /
        Subscribe) for a webhook to this gateway."""
        return {
            "via": "webhook",
            "webhook": {"callbackUrl": f"{url}/hooks/ampeco"},
            "notifications": cls.notifications(),
        }

    @classmethod
    def starter(cls, secret: str) -> str:
        return (
            '[[sources]]\nname = "ampeco"\nprovider = "ampeco"\n'
            "# PLACEHOLDER: the AMPECO API token you create the notification subscription with;\n"
            "# AMPECO signs every notification with it (X-Signature).\n"
            f'secrets = ["{secret}"]\n'
        )

    @classmethod
    def portal(cls, url: str, secret: str, config_name: str) -> str:
        body = json_block(cls.subscription(url), "       ")
        return f"""\
AMPECO: a notification subscription (API: Notifications / Subscribe).
   a. Put the AMPECO API token you subscribe with into {config_name},
      sources "ampeco", secrets = ["<the token>"] (replacing the REPLACE-ME-... value):
      AMPECO signs every notification with it. Restart hookgate.
   b. With that same token:
     curl -X POST "https://<your AMPECO tenant>/public-api/notifications/v2.0" \\
       -H "Authorization: Bearer <the token>" -H "Content-Type: application/json" \\
       -d @- <<'JSON'
{body}
JSON
      AMPECO answers 201 with the subscription. (In the back office: Notifications,
      callback URL {url}/hooks/ampeco, the same types, the same API token.)"""

    def via_kafka(self, source: Any) -> bool:
        return bool(source.transport == "kafka")

    def parse(self, source: Any, call: Call) -> Parsed:
        head = decode(call.body, _Head)
        model = catalog.EVENTS.get(head.notification)
        flags: list[str] = []
        consumption = None
        if model is None:
            document: Any = decode(call.body, dict[str, Any])
            subject = None
            flags.append("unknown_type")
        else:
            event = decode(call.body, model)
            document = msgspec.to_builtins(event)
            subject = catalog.subject(event)
            consumption = session_consumption(event)
            if head.notification in catalog.DEPRECATED:
                flags.append("deprecated_type")
        return Parsed(
            event_type=head.notification,
            # AMPECO resends identical bodies; the body hash is the only stable identity.
            dedup_key=body_hash(call.body),
            document=document,
            subject=subject,
            flags=flags,
            consumption=consumption,
        )

    def drift_identity(self, call: Call) -> tuple[str, str, str | None]:
        """The notification name when the body still has one; the key is the body hash,
        as for a valid body, so AMPECO's resends of a drifted body stay one event and a
        reprocess keeps the key."""
        try:
            name = msgspec.json.decode(call.body, type=_LooseHead).notification
        except (msgspec.DecodeError, msgspec.ValidationError):
            name = None
        event_type = name if isinstance(name, str) and name else "invalid"
        return event_type, body_hash(call.body), None

    def accepted(self, event_id: str) -> Answer:
        return json_answer(202, {})

    def facts(self, event: StoredEvent) -> list[Fact]:
        """Sessions, meter values, charge points/EVSEs and thin references, read back
        from the typed model the document was stored from."""
        model = catalog.EVENTS.get(event.event_type)
        if model is None or event.status == "quarantined" or not isinstance(event.document, dict):
            return []
        # A model may be a later catalog's subclass of the one a builder was written for.
        build = next((_FACTS[cls] for cls in model.__mro__ if cls in _FACTS), None)
        if build is None:
            return []
        return build(msgspec.convert(event.document, model), event)


# -- facts: AMPECO's vocabulary to hookgate's (energy Wh -> kWh, ids as text) ------------

_ENDED = frozenset({"finished", "failed", "expired"})
_RUNNING = {"pending": "active", "active": "active"}
_ENERGY_UNITS = {"wh": Decimal(1000), "kwh": Decimal(1)}


def _decimal(value: float | int | Decimal, scale: Decimal = Decimal(1)) -> str:
    """A plain decimal string (no exponent, no trailing zeros) of `value / scale`."""
    number = Decimal(str(value)) / scale
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _text(value: int | str | None) -> str | None:
    return None if value is None or value == "" else str(value)


def _when(text: str | None, fallback: datetime) -> datetime:
    """AMPECO's instant, or the time hookgate received the event when it has none."""
    if not text:
        return fallback
    try:
        return parse_iso(text)
    except ValueError:
        return fallback


def _maybe_when(text: str | None) -> datetime | None:
    try:
        return parse_iso(text) if text else None
    except ValueError:
        return None


def _start_stop(
    e: catalog.SessionStartStopNotification | catalog.SessionStartStopNotificationV2,
    event: StoredEvent,
) -> list[Fact]:
    stopped = e.action == "stop" if e.action else e.stoppedAtTimestamp is not None
    energy = None
    if stopped:
        wh = _energy_wh(e)
        energy = None if wh is None else _decimal(wh, _KWH)
    started = _maybe_when(e.startedAtTimestamp)
    ended = _maybe_when(e.stoppedAtTimestamp) if stopped else None
    return [
        ChargingSessionFact(
            keys=(str(e.sessionId),),
            occurred_at=_when(e.lastUpdatedAt, ended or started or event.received_at),
            status="ended" if stopped else "active",
            charger_id=str(e.chargePointId),
            evse_id=str(e.evseId),
            token=e.idTag or None,
            user_id=_text(e.userId),
            started_at=started,
            ended_at=ended,
            energy_kwh=energy,
            external_id=e.externalSessionId or None,
            opens=not stopped,
        )
    ]


def _session_update(e: catalog.SessionUpdateNotification, event: StoredEvent) -> list[Fact]:
    s = e.session
    status = s.status.lower()
    ended = _maybe_when(s.stoppedAt)
    cost = cost_excl = None
    if s.totalAmount is not None:
        cost = _decimal(s.totalAmount.withTax)
        if s.totalAmount.withoutTax is not None:
            cost_excl = _decimal(s.totalAmount.withoutTax)
    elif s.amount is not None:
        cost = _decimal(s.amount)
    return [
        ChargingSessionFact(
            keys=(s.id,),
            occurred_at=_when(s.lastUpdatedAt, ended or _when(s.startedAt, event.received_at)),
            status="ended" if status in _ENDED or ended else _RUNNING.get(status),
            charger_id=str(s.chargePointId),
            evse_id=str(s.evseId),
            connector_id=_text(s.connectorId),
            token=s.idTag or None,
            user_id=_text(s.userId),
            started_at=_maybe_when(s.startedAt),
            ended_at=ended,
            energy_kwh=_decimal(s.energy, _KWH),
            cost=cost,
            cost_excl_vat=cost_excl,
            currency=s.currency if cost is not None else None,
            external_id=s.externalSessionId or None,
            flags=(f"session_{status}",) if status in ("failed", "expired") else (),
        )
    ]


def _meter_values(e: catalog.SessionMeterValuesNotification, event: StoredEvent) -> list[Fact]:
    key = str(e.sessionId)
    samples: list[Fact] = []
    latest: datetime | None = None
    for mv in e.meterValues or ():
        if mv.value is None or not mv.measurand:
            continue
        at = _when(mv.timestamp, event.received_at)
        latest = at if latest is None else max(latest, at)
        unit = mv.unit
        value = _decimal(mv.value)
        scale = _ENERGY_UNITS.get((unit or "wh").lower())
        if mv.measurand.lower().startswith("energy") and scale is not None:
            value, unit = _decimal(mv.value, scale), "kWh"
        samples.append(
            MeterSample(session_key=key, at=at, measurand=mv.measurand, value=value, unit=unit)
        )
    session = ChargingSessionFact(
        keys=(key,),
        occurred_at=latest or event.received_at,
        charger_id=str(e.chargePointId),
        evse_id=str(e.evseId),
        external_id=e.externalSessionId or None,
    )
    return [session, *samples]


def _boot(e: catalog.BootNotification, event: StoredEvent) -> list[Fact]:
    if e.chargePointId is None:
        return []
    boot = e.bootNotification or catalog.BootInfo()
    at = _when(e.timestamp, event.received_at)
    return [
        ChargePointFact(
            charge_point_id=str(e.chargePointId),
            occurred_at=at,
            vendor=boot.vendor,
            model=boot.model,
            serial_number=boot.charge_point_serial_number or boot.charge_box_serial_number,
            firmware_version=boot.firmware_version,
            last_boot_at=at,
        )
    ]


def _hardware(e: catalog.HardwareStatusNotification, event: StoredEvent) -> list[Fact]:
    cp, at = str(e.chargePointId), _when(e.timestamp, event.received_at)
    if e.evseId is None:
        return [
            ChargePointFact(charge_point_id=cp, occurred_at=at, hardware_status=e.hardwareStatus)
        ]
    evse = EvseFact(evse_id=str(e.evseId), charge_point_id=cp, hardware_status=e.hardwareStatus)
    return [ChargePointFact(charge_point_id=cp, occurred_at=at, evses=(evse,))]


def _network(e: catalog.NetworkStatusNotification, event: StoredEvent) -> list[Fact]:
    return [
        ChargePointFact(
            charge_point_id=str(e.chargePointId),
            occurred_at=_when(e.timestamp, event.received_at),
            network_status=e.networkStatus,
        )
    ]


def _charge_point_resource(
    e: catalog.ChargePointChangedNotification, event: StoredEvent
) -> list[Fact]:
    cp = e.chargePoint
    if cp is None:
        return []
    deleted = e.action == "deleted"
    boot = cp.lastBootNotification or catalog.BootInfo()
    evses = tuple(
        EvseFact(
            evse_id=str(evse.id),
            charge_point_id=str(cp.id),
            status=evse.status,
            hardware_status=evse.hardwareStatus,
            connectors=None
            if evse.connectors is None
            else [msgspec.to_builtins(c) for c in evse.connectors],
            max_power_kw=None if evse.maxPower is None else _decimal(evse.maxPower, _KWH),
            deleted=deleted,
        )
        for evse in cp.evses
    )
    return [
        ChargePointFact(
            charge_point_id=str(cp.id),
            occurred_at=_when(e.lastUpdatedAt or cp.lastUpdatedAt, event.received_at),
            name=cp.name,
            vendor=boot.vendor,
            model=boot.model,
            serial_number=boot.charge_point_serial_number or boot.charge_box_serial_number,
            firmware_version=boot.firmware_version,
            network_status=cp.networkStatus,
            hardware_status=cp.hardwareStatus,
            status=cp.status,
            location_id=_text(cp.locationId),
            evses=evses,
            deleted=deleted,
            action=e.action,
        )
    ]


def _charge_point_changed(e: catalog.ChargePointChanged, event: StoredEvent) -> list[Fact]:
    at = _when(e.lastUpdatedAt, event.received_at)
    facts: list[Fact] = [
        ChargePointFact(
            charge_point_id=str(e.chargePointId),
            occurred_at=at,
            deleted=e.action == "deleted",
            action=e.action,
        )
    ]
    if e.action != "deleted":  # a deleted charge point has nothing left to read
        facts.append(
            ReferenceFact(
                kind="chargePoint", ref_id=str(e.chargePointId), occurred_at=at, action=e.action
            )
        )
    return facts


def _evse_changed(e: catalog.EvseChanged, event: StoredEvent) -> list[Fact]:
    return [
        EvseFact(
            evse_id=str(e.evseId),
            occurred_at=_when(e.lastUpdatedAt, event.received_at),
            deleted=e.action == "deleted",
            action=e.action,
        )
    ]


def _cdr(e: catalog.CdrReceived, event: StoredEvent) -> list[Fact]:
    at = _when(e.createdAt, event.received_at)
    return [ReferenceFact(kind="cdr", ref_id=e.id, occurred_at=at, action="received")]


def _transaction(e: catalog.TransactionChanged, event: StoredEvent) -> list[Fact]:
    at = _when(e.lastUpdatedAt, event.received_at)
    return [
        ReferenceFact(
            kind="transaction", ref_id=str(e.transactionId), occurred_at=at, action=e.action
        )
    ]


_FACTS: dict[type[msgspec.Struct], Callable[[Any, StoredEvent], list[Fact]]] = {
    catalog.SessionStartStopNotification: _start_stop,
    catalog.SessionStartStopNotificationV2: _start_stop,
    catalog.SessionUpdateNotification: _session_update,
    catalog.SessionMeterValuesNotification: _meter_values,
    catalog.BootNotification: _boot,
    catalog.HardwareStatusNotification: _hardware,
    catalog.NetworkStatusNotification: _network,
    catalog.ChargePointChangedNotification: _charge_point_resource,
    catalog.ChargePointChanged: _charge_point_changed,
    catalog.EvseChanged: _evse_changed,
    catalog.CdrReceived: _cdr,
    catalog.TransactionChanged: _transaction,
}
