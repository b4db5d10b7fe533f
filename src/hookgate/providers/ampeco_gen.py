"""Generate `ampeco_catalog.py` from AMPECO's OpenAPI document (its notification callbacks).

    python -m hookgate.providers.ampeco_gen [contracts/ampeco/openapi-X.Y.Z.json]
    make ampeco-catalog

Every body under `paths./public-api/notifications/v2.0.post.callbacks` becomes a msgspec
Struct; nested objects become Structs of their own (one class per distinct shape, named
below where hookgate's code uses the name). The mapping is deliberately tolerant, since
AMPECO's live API runs ahead of any copy of its document: enums are plain `str`, unknown
fields are ignored, a field that is not required may also be null, `anyOf`/`oneOf` of
different types is `Any`, and an object without listed properties is `dict[str, Any]`.
A body is refused (and, by default, quarantined) only when a required field is missing or
a listed field has the wrong JSON type.

Moving to a newer AMPECO version: put its document beside the old one in
`contracts/ampeco/`, point `SOURCE` at it, run the command, read the diff and the
contract tests (`tests/contract/test_ampeco_catalog.py` checks the output is current).
"""

from __future__ import annotations

import json
import keyword
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "contracts" / "ampeco" / "openapi-3.110.0.json"
TARGET = Path(__file__).resolve().with_name("ampeco_catalog.py")
CALLBACKS = ("paths", "/public-api/notifications/v2.0", "post", "callbacks")

# Class names of the notification bodies (by notification name) and of the nested parts
# hookgate's code refers to (by "<notification>.<path>"; `[]` is an array's item). Parts
# not named here are named after their parent and field. One name may be given to several
# places: the class then takes every field any of them lists, and requires only what all
# of them require.
NAMES: dict[str, str] = {
    "session.start.stop.notification": "SessionStartStopNotificationV2",
    "chargePoint.changed": "ChargePointChanged",
    "evse.changed": "EvseChanged",
    "circuit.changed": "CircuitChanged",
    "user.invoiceDetails.changed": "UserInvoiceDetailsChanged",
    "parkingSpace.occupancyStatus.changed": "ParkingSpaceOccupancyStatusChanged",
    "partner.changed": "PartnerChanged",
    "authorization.changed": "AuthorizationChanged",
    "reservation.changed": "ReservationChanged",
    "user.paymentMethod.changed": "UserPaymentMethodChanged",
    "partnerInvite.changed": "PartnerInviteChanged",
    "user.subscriptionChanged": "UserSubscriptionChanged",
    "user.subscription.changed": "UserSubscriptionChangedV2",
    "idTag.changed": "IdTagChanged",
    "roamingPlatform.changed": "RoamingPlatformChanged",
    "userBalance.changed": "UserBalanceChanged",
    "transaction.changed": "TransactionChanged",
    "settlementReport.created": "SettlementReportCreated",
    "chargePoint.dataTransferReceived": "ChargePointDataTransferReceived",
    "cdr.received": "CdrReceived",
    "chargingProfile.applied": "ChargingProfileApplied",
    "installerJob.changed": "InstallerJobChanged",
    "BootNotification.bootNotification": "BootInfo",
    "ChargePointChangedNotification.chargePoint": "ChargePoint",
    "ChargePointChangedNotification.chargePoint.evses[]": "ChargePointEvse",
    "ChargePointChangedNotification.chargePoint.evses[].connectors[]": "Connector",
    "ChargePointChangedNotification.chargePoint.lastBootNotification": "BootInfo",
    "CircuitConsumptionNotification.currentConsumption[]": "PhaseConsumption",
    "LocationChangedNotification.location": "Location",
    "LocationChangedNotification.location.geoposition": "GeoPosition",
    "LocationChangedNotification.location.location_image": "Image",
    "LocationChangedNotification.location.images[]": "Image",
    "LocationChangedNotification.location.working_hours": "WorkingHours",
    "LocationChangedNotification.location.working_hours.hours": "WeeklyHours",
    **{
        f"LocationChangedNotification.location.working_hours.hours.{day}[]": "TimeInterval"
        for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    },
    "SessionMeterValuesNotification.meterValues[]": "MeterValue",
    "SessionUpdateNotification.session": "Session",
    "SessionUpdateNotification.session.energyConsumption": "EnergyConsumption",
    "SessionUpdateNotification.session.totalAmount": "Amount",
    "SessionUpdateNotification.session.authorization": "SessionAuthorization",
    "SessionUpdateNotification.session.chargingPeriods[]": "ChargingPeriod",
    "SessionUpdateNotification.session.chargingPeriods[].priceBreakdown[]": "PriceComponent",
    "SessionUpdateNotification.session.priceBreakdown[]": "SessionPriceComponent",
    "SessionUpdateNotification.session.clockAlignedEnergyConsumption[]": "ClockAlignedEnergy",
    "SessionUpdateNotification.session.power": "Power",
    **{
        f"SessionUpdateNotification.session.{where}": name
        for where, name in (
            ("clockAlignedEnergyConsumption[].energyConsumption", "EnergyConsumption"),
            ("clockAlignedEnergyConsumption[].totalCost", "Amount"),
            ("chargingPeriods[].priceBreakdown[].pricePerUnit", "Amount"),
            ("chargingPeriods[].priceBreakdown[].price", "Amount"),
            ("priceBreakdown[].pricePerUnit", "Amount"),
            ("priceBreakdown[].price", "Amount"),
        )
    },
    "UserChangedNotification.user": "User",
    "UserChangedNotification.user.partnerInvites[]": "PartnerInvite",
    "PartnerChangedNotification.user": "PartnerRef",
    "SubOperatorChangedNotification.subOperator": "SubOperatorRef",
    "TariffChangedNotification.tariff": "Tariff",
    "TariffChangedNotification.tariff.pricing": "TariffPricing",
    "chargingProfile.applied.chargingProfile": "ChargingProfile",
    "chargingProfile.applied.chargingProfile.schedulePeriods[]": "SchedulePeriod",
}

# What AMPECO's document does not say: units, id types, the deprecated form.
DOCS: dict[str, str] = {
    "BootInfo": "OCPP BootNotification data as AMPECO relays it (snake_case keys).",
    "Connector": "A connector of an EVSE.",
    "ChargePointEvse": "An EVSE inside the deprecated ChargePointChangedNotification.",
    "ChargePoint": "The full charge point resource (deprecated ChargePointChangedNotification).",
    "PhaseConsumption": "Current drawn on one phase of a circuit, in amps.",
    "GeoPosition": "WGS 84 coordinates.",
    "Image": "An image reference.",
    "TimeInterval": "An opening interval, ``HH:MM`` local time.",
    "WeeklyHours": "Opening intervals per weekday; a day without entries is closed.",
    "WorkingHours": "Opening hours of a location.",
    "Location": "A location resource (snake_case keys, as AMPECO sends them).",
    "MeterValue": "One sampled value; energy in Wh.",
    "Amount": "A money amount with and without tax.",
    "SessionAuthorization": "The authorization that started a session.",
    "PriceComponent": "One tariff element of a price breakdown.",
    "SessionPriceComponent": "A session price breakdown element, with its deprecated totals.",
    "ChargingPeriod": "A period of a session with one charging state; energy in Wh.",
    "EnergyConsumption": "Energy split by origin, in Wh.",
    "ClockAlignedEnergy": "Energy consumed in one clock-aligned interval.",
    "Power": "Charging power in watts.",
    "Session": "A charging session; ``id`` is a string here, energy in Wh.",
    "PartnerInvite": "An invitation of a user to a partner.",
    "User": "A user resource; ``id`` is a string in this payload.",
    "PartnerRef": "The partner of the deprecated PartnerChangedNotification (sent as ``user``).",
    "SubOperatorRef": "A sub-operator reference.",
    "TariffPricing": "Tariff prices; amounts include tax unless AMPECO says otherwise.",
    "Tariff": "A tariff resource.",
    "SchedulePeriod": "One period of a charging schedule.",
    "ChargingProfile": "An OCPP charging profile (camelCase form).",
    "AuthorizationNotification": "An idTag authorization at a charge point (deprecated).",
    "BootNotification": "A charge point (re)booted.",
    "ChargePointChangedNotification": "Charge point, EVSE or connector changed (deprecated).",
    "ChargePointChanged": "``chargePoint.changed``: charge point master data changed.",
    "EvseChanged": "``evse.changed``: an EVSE or its connectors changed.",
    "ChargePointSyncConfigurationNotification": "The charge point's OCPP configuration was read.",
    "CircuitConsumptionNotification": "Per-phase consumption of a load-management circuit.",
    "DiagnosticsStatusNotification": "Progress of a diagnostics upload.",
    "HardwareStatusNotification": "OCPP status of a charge point or one of its EVSEs.",
    "LocationChangedNotification": "A location was created, updated or deleted.",
    "NetworkStatusNotification": "Connectivity of a charge point to AMPECO changed.",
    "SecurityEventNotification": "An OCPP security event.",
    "SessionMeterValuesNotification": "Meter values sampled during a session.",
    "SessionStartStopNotification": "A session started or stopped (deprecated; energy in Wh).",
    "SessionStartStopNotificationV2": "A session started or stopped (energy in Wh).",
    "SessionUpdateNotification": "The full session resource after a change.",
    "UserChangedNotification": "A user was created, updated or deleted.",
    "PartnerChangedNotification": "A partner was created or deleted (it is under ``user``).",
    "PartnerChanged": "Identifying details only on ``deleted``.",
    "SubOperatorChangedNotification": "A sub-operator was created or deleted.",
    "TariffChangedNotification": "A tariff was created, updated or deleted.",
    "UserPaymentMethodChanged": "The payment method id is a string.",
    "SettlementReportCreated": "Energy here is in kWh.",
    "ChargePointDataTransferReceived": "An OCPP DataTransfer from the charger.",
    "CdrReceived": "The CDR id is a string.",
}

# Where each event keeps its primary entity: (kind, dotted attribute path), first hit wins.
# Sessions come before charge points; a charge point before one of its EVSEs.
SUBJECTS: dict[str, tuple[tuple[str, str], ...]] = {
    "AuthorizationNotification": (("authorization", "authorizationId"),),
    "BootNotification": (("charge-point", "chargePointId"),),
    "ChargePointChangedNotification": (("charge-point", "chargePoint.id"),),
    "chargePoint.changed": (("charge-point", "chargePointId"),),
    "evse.changed": (("evse", "evseId"),),
    "ChargePointSyncConfigurationNotification": (("charge-point", "chargePointId"),),
    "CircuitConsumptionNotification": (("circuit", "circuitId"),),
    "circuit.changed": (("circuit", "circuitId"),),
    "DiagnosticsStatusNotification": (("charge-point", "chargePointId"),),
    "HardwareStatusNotification": (("charge-point", "chargePointId"), ("evse", "evseId")),
    "LocationChangedNotification": (("location", "location.id"),),
    "NetworkStatusNotification": (("charge-point", "chargePointId"),),
    "SecurityEventNotification": (("charge-point", "chargePointId"),),
    "SessionMeterValuesNotification": (("session", "sessionId"),),
    "SessionStartStopNotification": (("session", "sessionId"),),
    "session.start.stop.notification": (("session", "sessionId"),),
    "SessionUpdateNotification": (("session", "session.id"),),
    "UserChangedNotification": (("user", "user.id"),),
    "user.invoiceDetails.changed": (("user", "userId"),),
    "PartnerChangedNotification": (("partner", "user.id"),),
    "parkingSpace.occupancyStatus.changed": (("parking-space", "parkingSpaceId"),),
    "partner.changed": (("partner", "partnerId"),),
    "authorization.changed": (("authorization", "authorizationId"),),
    "SubOperatorChangedNotification": (("sub-operator", "subOperator.id"),),
    "TariffChangedNotification": (("tariff", "tariff.id"),),
    "reservation.changed": (("reservation", "reservationId"),),
    "user.paymentMethod.changed": (("user", "userId"),),
    "partnerInvite.changed": (("partner-invite", "partnerInviteId"),),
    "user.subscriptionChanged": (("user", "userId"),),
    "user.subscription.changed": (("user", "userId"),),
    "idTag.changed": (("id-tag", "idTagsId"),),
    "roamingPlatform.changed": (("roaming-platform", "roamingPlatformId"),),
    "userBalance.changed": (("user", "userId"),),
    "transaction.changed": (("transaction", "transactionId"),),
    "settlementReport.created": (("settlement-report", "id"),),
    "chargePoint.dataTransferReceived": (("charge-point", "chargePointId"),),
    "cdr.received": (("cdr", "id"),),
    "chargingProfile.applied": (
        ("session", "sessionId"),
        ("charge-point", "chargePointId"),
        ("evse", "evseId"),
    ),
    "installerJob.changed": (("installer-job", "id"),),
}

_SCALARS = {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}


def _merge(parts: list[dict[str, Any]], *, all_require: bool = False) -> dict[str, Any]:
    """One object schema of an `allOf` (a field is required when any part requires it) or,
    with `all_require`, of several places given one class name (required only when every
    place requires it): every listed property, merged where several list it."""
    merged: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    sets: list[set[str]] = []
    for given in parts:
        part = _flatten(given)
        for name, schema in part.get("properties", {}).items():
            known = merged["properties"].get(name)
            merged["properties"][name] = schema if known is None else _merge_property(known, schema)
        merged["required"] += [r for r in part.get("required", []) if r not in merged["required"]]
        sets.append(set(part.get("required", [])))
        for key in ("nullable", "description", "deprecated"):
            if key in part:
                merged.setdefault(key, part[key])
    if all_require and sets:
        common = set.intersection(*sets)
        merged["required"] = [r for r in merged["required"] if r in common]
    return merged


def _merge_property(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    a, b = _flatten(a), _flatten(b)
    if _kind(a) == _kind(b) == "object" and ("properties" in a or "properties" in b):
        return _merge([a, b]) | {"nullable": bool(a.get("nullable") or b.get("nullable"))}
    if _kind(a) == _kind(b) == "array":
        return a | {"items": _merge_property(a.get("items", {}), b.get("items", {}))}
    return b if b.get("type") else a


def _flatten(schema: dict[str, Any]) -> dict[str, Any]:
    if "allOf" in schema:
        rest = {k: v for k, v in schema.items() if k != "allOf"}
        kinds = {_kind(_flatten(p)) for p in schema["allOf"]}
        if kinds <= {"object"}:
            return (
                _merge([rest, *schema["allOf"]])
                if rest.get("properties")
                else (_merge(schema["allOf"]) | {k: v for k, v in rest.items() if k != "type"})
            )
        if len(kinds) == 1:
            return _flatten(schema["allOf"][0]) | {k: v for k, v in rest.items() if k != "type"}
        return rest | {"type": None}
    return schema


def _kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None


@dataclass
class _Class:
    name: str
    doc: str
    event: str | None
    fields: list[str] = field(default_factory=list)


@dataclass
class _Generator:
    document: dict[str, Any]
    classes: dict[str, _Class] = field(default_factory=dict)
    shapes: dict[str, str] = field(default_factory=dict)
    named: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def collect(self, path: str, schema: dict[str, Any]) -> None:
        """First pass: every schema that a fixed name covers, to merge them."""
        schema = _flatten(schema)
        if path in NAMES:
            self.named.setdefault(NAMES[path], []).append(schema)
        for name, prop in schema.get("properties", {}).items():
            self.collect(f"{path}.{name}", prop)
        if "items" in schema:
            self.collect(f"{path}[]", schema["items"])

    def type_of(self, path: str, owner: str, name: str, schema: dict[str, Any]) -> str:
        schema = _flatten(schema)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                kinds = {_kind(_flatten(s)) for s in schema[key]}
                if len(kinds) == 1 and (kind := kinds.pop()) in _SCALARS:
                    return _SCALARS[kind]
                return "Any"
        kind = _kind(schema)
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            if not items:
                return "list[Any]"
            return f"list[{self.type_of(path + '[]', owner, name, items)}]"
        if kind == "object":
            if not schema.get("properties"):
                return "dict[str, Any]"
            return self.struct(
                path, owner + name[:1].upper() + name[1:], schema, where=f"{owner}.{name}"
            )
        return "Any"

    def struct(
        self, path: str, default_name: str, schema: dict[str, Any], event: str = "", where: str = ""
    ) -> str:
        schema = _flatten(schema)
        name = NAMES.get(path, default_name)
        if name in self.named and len(self.named[name]) > 1:
            schema = _merge(self.named[name], all_require=True)
        lines = self.fields(path, name, schema, top=bool(event))
        shape = "\n".join(lines)
        # An unnamed part shaped like an earlier unnamed part shares its class.
        if path not in NAMES and shape in self.shapes:
            return self.shapes[shape]
        if name in self.classes:
            if "\n".join(self.classes[name].fields) == shape:
                return name
            if path in NAMES:
                raise ValueError(f"{path}: {name} already has another shape")
            number = 2
            while f"{name}{number}" in self.classes:
                number += 1
            name = f"{name}{number}"
        doc = DOCS.get(name) or _sentence(schema.get("description")) or f"``{where or path}``."
        if event and not event[:1].isupper() and not doc.startswith("``"):
            # A dotted notification name says more than any class name.
            doc = f"``{event}``: {doc[:1].lower()}{doc[1:]}" if name in DOCS else f"``{event}``."
        self.classes[name] = _Class(name, doc, event or None, lines)
        if path not in NAMES:
            self.shapes.setdefault(shape, name)
        return name

    def fields(self, path: str, owner: str, schema: dict[str, Any], *, top: bool) -> list[str]:
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        lines: list[str] = []
        for name, prop in props.items():
            if top and name == "notification":
                continue  # AmpecoEvent's
            flat = _flatten(prop)
            annotation = self.type_of(f"{path}.{name}", owner, name, prop)
            nullable = bool(flat.get("nullable")) or annotation == "Any"
            if name in required:
                text = f"{annotation} | None" if nullable and annotation != "Any" else annotation
                lines.append(f"    {_ident(name)}: {text}")
            else:
                text = annotation if annotation == "Any" else f"{annotation} | None"
                lines.append(f"    {_ident(name)}: {text} = None")
        # Required first (a reader sees what a body must carry), each group in AMPECO's order.
        lines.sort(key=lambda line: line.endswith(" = None"))
        return lines

    def run(self) -> str:
        callbacks: Any = self.document
        for key in CALLBACKS:
            callbacks = callbacks[key]
        bodies: list[tuple[str, dict[str, Any], bool]] = []
        for event, entry in callbacks.items():
            (operation,) = entry.values()
            post = operation["post"]
            body = post["requestBody"]["content"]["application/json"]["schema"]
            bodies.append((event, body, bool(post.get("deprecated"))))
            self.collect(event, body)
        events: list[tuple[str, str]] = []
        for event, body, _ in bodies:
            cls = self.struct(event, NAMES.get(event, _pascal(event)), body, event)
            events.append((event, cls))
        deprecated = [event for event, _, dep in bodies if dep]
        version = self.document.get("info", {}).get("version", "?")
        return _render(version, self.classes, events, deprecated)


def _ident(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a Python identifier; add a rename")
    return name


def _pascal(text: str) -> str:
    parts = text.replace("-", ".").replace("_", ".").split(".")
    return "".join(p[:1].upper() + p[1:] for p in parts if p)


def _sentence(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        return ""
    first = " ".join(text.strip().split("\n\n")[0].split())
    if len(first) > 80:
        return ""
    return first if first.endswith(".") else first + "."


_HEAD = (
    '''"""Typed models of the {count} AMPECO notification bodies '''
    '''(Public API {version} callbacks).

GENERATED by `python -m hookgate.providers.ampeco_gen` (`make ampeco-catalog`) from
`contracts/ampeco/openapi-{version}.json`: do not edit, change the generator.

Enums are plain ``str`` and unknown fields are ignored, because AMPECO adds values
and fields over time; a body is rejected only when it lacks a required field or a
field has the wrong JSON type.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "DEPRECATED",
    "EVENTS",
    "AmpecoEvent",
    "AmpecoModel",
    "occurred_at",
    "subject",
]


class AmpecoModel(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=False):
    """Base of every AMPECO model: keyword-only, tolerant of unknown fields."""


class AmpecoEvent(AmpecoModel, kw_only=True, omit_defaults=True, forbid_unknown_fields=False):
    """Base of every notification body; ``notification`` names its type."""

    notification: str
'''
)

_TAIL = '''
_TIME_FIELDS = (
    "lastUpdatedAt",
    "timestamp",
    "appliedAt",
    "createdAt",
    "issueDate",
    "stoppedAtTimestamp",
    "startedAtTimestamp",
)


def _lookup(obj: object, path: str) -> object:
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def subject(event: msgspec.Struct) -> str | None:
    """The primary entity of ``event`` as ``"<kind>/<id>"``, e.g. ``"session/1234"``."""
    for kind, path in _SUBJECTS.get(type(event), ()):
        value = _lookup(event, path)
        if value is not None and value != "":
            return f"{kind}/{value}"
    return None


def occurred_at(event: msgspec.Struct) -> str | None:
    """The event's own time string as AMPECO sent it, or None if it carries none."""
    if isinstance(event, SessionUpdateNotification):
        s = event.session
        return s.lastUpdatedAt or s.stoppedAt or s.startedAt
    for name in _TIME_FIELDS:
        value = getattr(event, name, None)
        if isinstance(value, str) and value:
            return value
    if isinstance(event, SessionMeterValuesNotification):
        stamps = [mv.timestamp for mv in event.meterValues or () if mv.timestamp]
        return stamps[-1] if stamps else None
    if isinstance(event, CircuitConsumptionNotification):
        stamps = [c.lastUpdatedAt for c in event.currentConsumption or () if c.lastUpdatedAt]
        return stamps[-1] if stamps else None
    return None
'''


def _docstring(text: str, indent: str = "    ") -> str:
    line = f'{indent}"""{text}"""'
    if len(line) <= 100:
        return line
    words, lines, current = text.split(), [], ""
    for word in words:
        if current and len(indent) + len(current) + len(word) + 1 > 92:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    lines.append(current)
    body = "\n".join(f"{indent}{part}" for part in lines)
    return f'{indent}"""\n{body}\n{indent}"""'


_EVENTS_DOC = '"""Exact notification name -> its Struct, in the order of AMPECO\'s listing."""\n\n'
_DEPRECATED_DOC = (
    '"""Notification names AMPECO marks DEPRECATED (still delivered, still accepted)."""\n\n'
)


def _render(
    version: str, classes: dict[str, _Class], events: list[tuple[str, str]], deprecated: list[str]
) -> str:
    out = [_HEAD.format(count=len(events), version=version)]
    nested = [c for c in classes.values() if c.event is None]
    notifications = [c for c in classes.values() if c.event is not None]
    out.append("\n\n# " + "-" * 75 + " nested parts\n\n")
    # Nested classes were registered innermost first, so each is defined before its use.
    for cls in nested:
        out.append(f"\nclass {cls.name}(AmpecoModel, kw_only=True):\n{_docstring(cls.doc)}\n")
        if cls.fields:
            out.append("\n" + "\n".join(cls.fields) + "\n")
        out.append("\n")
    out.append("\n# " + "-" * 75 + " notifications\n\n")
    for cls in notifications:
        out.append(f"\nclass {cls.name}(AmpecoEvent, kw_only=True):\n{_docstring(cls.doc)}\n")
        if cls.fields:
            out.append("\n" + "\n".join(cls.fields) + "\n")
        out.append("\n")
    out.append("\n# " + "-" * 75 + " registry\n\n")
    out.append("EVENTS: dict[str, type[msgspec.Struct]] = {\n")
    out.extend(f'    "{event}": {cls},\n' for event, cls in events)
    out.append("}\n")
    out.append(_EVENTS_DOC)
    out.append("DEPRECATED: frozenset[str] = frozenset(\n    {\n")
    out.extend(f'        "{event}",\n' for event in deprecated)
    out.append("    }\n)\n")
    out.append(_DEPRECATED_DOC)
    out.append(
        "# Where each event keeps its primary entity: (kind, dotted attribute path), first hit"
        " wins.\n# Sessions come before charge points; a charge point before one of its EVSEs.\n"
    )
    out.append("_SUBJECTS: dict[type[msgspec.Struct], tuple[tuple[str, str], ...]] = {\n")
    by_event = dict(events)
    for event, places in SUBJECTS.items():
        owner = by_event[event]
        inner = ", ".join(repr(p).replace("'", '"') for p in places)
        one = f"    {owner}: ({inner},)," if len(places) == 1 else f"    {owner}: ({inner}),"
        if len(one) <= 100:
            out.append(one + "\n")
        else:
            out.append(f"    {owner}: (\n")
            out.extend("        " + repr(p).replace("'", '"') + ",\n" for p in places)
            out.append("    ),\n")
    out.append("}\n")
    out.append(_TAIL)
    return "".join(out)


def generate(source: Path = SOURCE) -> str:
    """The text of `ampeco_catalog.py` for the OpenAPI document at `source`."""
    return _Generator(json.loads(source.read_text(encoding="utf-8"))).run()


def main(argv: list[str] | None = None) -> int:
    """Write `ampeco_catalog.py` from the document given (default: `SOURCE`)."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else SOURCE
    text = generate(source)
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET} from {source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
