"""Realistic AMPECO notification bodies for the emulator, fixtures and benchmarks.

Bodies are deterministic in ``seq`` and the moment ``at``: the same pair gives the same
body; another ``seq`` gives other ids and another charging profile (20 min to 8 h, 2.7
to 80 kWh). Times are UTC (``Z``) from ``at``: the emulator passes the current time (or
``--at``); the contract fixtures are these bodies at `FIXTURE_AT` with ``seq`` 0
(`hookgate.emulate.fixtures`). Energy is in Wh, money in EUR with 20 % VAT.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from hookgate.providers.ampeco_catalog import EVENTS

__all__ = ["FIXTURE_AT", "NAMES", "PROFILES", "sample", "session_minutes", "session_sequence"]

NAMES: tuple[str, ...] = tuple(EVENTS)
"""All AMPECO notification names, in the order of AMPECO's listing."""

FIXTURE_AT = datetime(2025, 12, 4, 12, 0, 0, tzinfo=UTC)
"""The moment the contract fixtures are dated from (`sample(name, 0, FIXTURE_AT)`)."""
_VAT = 0.20
_PRICE_PER_KWH = 0.39  # incl. VAT
_CONNECTION_FEE = 1.00  # incl. VAT
_CURRENCY = "EUR"

Body = dict[str, Any]


def _ts(at: datetime, minutes: float = 0) -> str:
    moment = (at + timedelta(minutes=minutes)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _net(gross: float) -> float:
    return round(gross / (1 + _VAT), 2)


def _ids(seq: int) -> dict[str, Any]:
    """Entity ids used by the single-body samples; all shift with ``seq``."""
    return {
        "cp": 117 + seq,
        "evse": 341 + seq,
        "session": 184_210 + seq,
        "user": 5_321 + seq,
        "id_tag": f"04A1B2C3D4{seq % 0x10000:04X}",
        "location": 23 + seq,
        "circuit": 8 + seq,
        "partner": 42 + seq,
        "authorization": 912_004 + seq,
    }


# --------------------------------------------------------------------------- sessions


def _price_component(kind: str, unit: str, unit_gross: float, quantity: float) -> Body:
    gross = round(unit_gross * quantity, 2)
    unit_net = round(unit_gross / (1 + _VAT), 5)
    return {
        "type": kind,
        "currency": _CURRENCY,
        "unit": unit,
        "pricePerUnit": {"withTax": unit_gross, "withoutTax": unit_net},
        "quantity": quantity,
        "price": {"withTax": gross, "withoutTax": _net(gross)},
        "taxPercentage": _VAT * 100,
    }


def _session_update(
    *,
    session_id: int,
    charge_point_id: int,
    evse_id: int,
    id_tag: str,
    user_id: int,
    authorization_id: int,
    started_at: str,
    authorized_at: str,
    energy_wh: int,
    updated_at: str,
    stopped_at: str | None,
    idle_from: str | None,
    power_w: int,
) -> Body:
    finished = stopped_at is not None
    kwh = round(energy_wh / 1000, 3)
    energy_part = _price_component("energy", "kwh", _PRICE_PER_KWH, kwh)
    connection_part = _price_component("connection", "session", _CONNECTION_FEE, 1)
    parts = [connection_part, energy_part]
    gross = round(sum(p["price"]["withTax"] for p in parts), 2)
    net = round(sum(p["price"]["withoutTax"] for p in parts), 2)
    charging: Body = {
        "id": session_id * 10 + 1,
        "energy": energy_wh,
        "startedAt": started_at,
        "stoppedAt": idle_from,
        "state": "charging",
        "chargingState": "charging",
        "amount": gross,
    }
    periods = [charging]
    if finished:
        periods.append(
            {
                "id": session_id * 10 + 2,
                "energy": 0,
                "startedAt": idle_from,
                "stoppedAt": stopped_at,
                "state": "idle",
                "chargingState": "idle",
                "amount": 0.0,
            }
        )
    session: Body = {
        "id": str(session_id),
        "chargePointId": charge_point_id,
        "evseId": evse_id,
        "connectorId": 1,
        "status": "finished" if finished else "active",
        "userId": user_id,
        "startedAt": started_at,
        "stoppedAt": stopped_at,
        "energy": energy_wh,
        "powerKw": 0.0 if finished else (power_w + 20) / 1000,
        "amount": gross,
        "totalAmount": {"withTax": gross, "withoutTax": net},
        "currency": _CURRENCY,
        "paymentType": "tokenized",
        "paymentMethodId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ampeco-pm-{user_id}")),
        "nonBillableEnergy": 0,
        "paymentStatus": "paid" if finished else None,
        "authorizationId": authorization_id,
        "idTag": id_tag,
        "idTagLabel": "RFID card",
        "reimbursementEligibility": False,
        "authorization": {
            "id": authorization_id,
            "method": "rfid_tag",
            "source": "local",
            "createdAt": authorized_at,
            "status": "accepted",
            "rejectionReason": None,
            "userId": user_id,
            "rfidTagUid": id_tag,
            "lastUpdatedAt": authorized_at,
        },
        "chargingPeriods": periods,
        "priceBreakdown": [
            {**p, "totalPrice": p["price"]["withTax"], "unitPrice": p["pricePerUnit"]["withTax"]}
            for p in parts
        ],
        "tariffSnapshotId": 70_000 + session_id % 10_000,
        "evsePhysicalReference": f"DE*AMP*E{charge_point_id:05d}*{evse_id % 10}",
        "lastUpdatedAt": updated_at,
        "energyConsumption": {"total": energy_wh, "grid": energy_wh, "local": 0},
        "billingStatus": "completed" if finished else None,
        "power": {
            "latest": 0.0 if finished else float(power_w + 20),
            "peak": float(power_w + 80),
            "average": float(power_w),
        },
    }
    if finished:
        session["reason"] = "EVDisconnected"
        session["paymentStatusUpdatedAt"] = updated_at
    return {"notification": "SessionUpdateNotification", "session": session}


def _meter_values(
    *,
    session_id: int,
    charge_point_id: int,
    evse_id: int,
    at: str,
    register_wh: int,
    temperature: float,
) -> Body:
    return {
        "notification": "SessionMeterValuesNotification",
        "chargePointId": charge_point_id,
        "evseId": evse_id,
        "sessionId": session_id,
        "meterValues": [
            {
                "timestamp": at,
                "measurand": "Energy Active Import Register",
                "value": register_wh,
                "unit": "Wh",
            },
            {"timestamp": at, "measurand": "Current Import", "value": 15.9, "unit": "A"},
            {"timestamp": at, "measurand": "Current Offered", "value": 16.0, "unit": "A"},
            {"timestamp": at, "measurand": "Voltage", "value": 230.4, "unit": "V"},
            {"timestamp": at, "measurand": "Temperature", "value": temperature, "unit": "Celsius"},
        ],
    }


class Profile(NamedTuple):
    """How one charge goes: minutes charging, average power, energy before the jitter."""

    charge_minutes: int
    power_w: int
    energy_wh: int


# Charging then 5 idle minutes: 20 min to 8 h in all, 2.7 to 80 kWh (AC 3.7-22 kW, DC).
PROFILES: tuple[Profile, ...] = (
    Profile(55, 10_960, 10_250),  # 11 kW AC, an hour at the office
    Profile(170, 20_900, 59_000),  # 22 kW AC, a large battery
    Profile(470, 7_020, 55_000),  # 7.4 kW AC overnight
    Profile(235, 3_520, 13_800),  # 3.7 kW AC, a plug-in hybrid
    Profile(40, 44_000, 29_000),  # 50 kW DC
    Profile(15, 10_960, 2_700),  # 11 kW AC, a short top-up
    Profile(32, 146_000, 78_000),  # 150 kW DC, nearly a full battery
)
_IDLE_MINUTES = 5


def profile(seq: int) -> Profile:
    """The charging profile of the ``seq``-th session."""
    return PROFILES[seq % len(PROFILES)]


def session_minutes(seq: int) -> int:
    """From the start of the ``seq``-th session to its CDR."""
    return profile(seq).charge_minutes + _IDLE_MINUTES + 1


def session_sequence(
    session_id: int,
    charge_point_id: int,
    evse_id: int,
    id_tag: str,
    seq: int = 0,
    *,
    start: datetime | None = None,
) -> list[dict[str, Any]]:
    """One RFID charging session as AMPECO reports it, oldest first, from ``start``
    (default `FIXTURE_AT`).

    start, three meter-value reports with a rising energy register, session updates
    (active, then finished), stop with ``energyConsumed == meterStop - meterStart``,
    then the CDR a minute later. The charge follows `profile(seq)`, with 5 idle minutes
    at the end.
    """
    at = start or FIXTURE_AT
    charge = profile(seq)
    minutes = charge.charge_minutes
    user_id = 5_000 + session_id % 1_000
    authorization_id = 900_000 + session_id % 100_000
    energy_wh = min(charge.energy_wh + (session_id % 97) * 10, 80_000)
    meter_start = 3_250_000 + (session_id % 1_000) * 1_000
    meter_stop = meter_start + energy_wh
    idle_from = minutes
    stopped = idle_from + _IDLE_MINUTES
    started_at, stopped_at = _ts(at), _ts(at, stopped)

    common = {
        "sessionId": session_id,
        "userId": user_id,
        "chargePointId": charge_point_id,
        "evseId": evse_id,
        "idTag": id_tag,
        "startedAtTimestamp": started_at,
        "meterStart": meter_start,
    }
    start_body: Body = {
        "notification": "session.start.stop.notification",
        **common,
        "action": "start",
        "meterStop": meter_start,
        "lastUpdatedAt": started_at,
    }
    # Meter reports at 3/11, 6/11 and 9/11 of the charging time.
    meters = [
        _meter_values(
            session_id=session_id,
            charge_point_id=charge_point_id,
            evse_id=evse_id,
            at=_ts(at, minutes * eleventh / 11),
            register_wh=meter_start + energy_wh * eleventh // 11,
            temperature=temp,
        )
        for eleventh, temp in ((3, 31.5), (6, 33.0), (9, 34.5))
    ]
    update_args: dict[str, Any] = {
        "session_id": session_id,
        "charge_point_id": charge_point_id,
        "evse_id": evse_id,
        "id_tag": id_tag,
        "user_id": user_id,
        "authorization_id": authorization_id,
        "started_at": started_at,
        "authorized_at": _ts(at, -0.1),
        "power_w": charge.power_w,
    }
    active = _session_update(
        **update_args,
        energy_wh=energy_wh * 9 // 11,
        updated_at=_ts(at, minutes * 9 / 11 + 0.5),
        stopped_at=None,
        idle_from=None,
    )
    finished = _session_update(
        **update_args,
        energy_wh=energy_wh,
        updated_at=stopped_at,
        stopped_at=stopped_at,
        idle_from=_ts(at, idle_from),
    )
    stop: Body = {
        "notification": "session.start.stop.notification",
        **common,
        "action": "stop",
        "meterStop": meter_stop,
        "stoppedAtTimestamp": stopped_at,
        "energyConsumed": energy_wh,
        "reason": "EVDisconnected",
        "lastUpdatedAt": stopped_at,
    }
    cdr: Body = {
        "notification": "cdr.received",
        "id": f"DE-AMP-{session_id:010d}",
        "createdAt": _ts(at, stopped + 1),
    }
    return [start_body, *meters, active, finished, stop, cdr]


def _lifecycle(seq: int, at: datetime) -> list[Body]:
    i = _ids(seq)
    return session_sequence(i["session"], i["cp"], i["evse"], i["id_tag"], seq, start=at)


def _legacy_start_stop(seq: int, at: datetime) -> Body:
    stop = dict(_lifecycle(seq, at)[-2])
    stop["notification"] = "SessionStartStopNotification"
    stop["userId"] = None  # the deprecated stop never names the user
    return stop


# --------------------------------------------------------------------------- other types


def _boot_info(seq: int) -> Body:
    return {
        "model": "Terra AC W22-T-RD-M-0",
        "vendor": "ABB",
        "charge_box_serial_number": f"TACW22420{seq:05d}",
        "charge_point_serial_number": f"TACW22420{seq:05d}",
        "firmware_version": "1.8.27",
        "iccid": None,
        "imsi": None,
        "meter_serial_number": f"EM{seq + 31_410_000}",
        "meter_type": "MID Class B",
        "reason": None,
    }


def _authorization_notification(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    return {
        "notification": "AuthorizationNotification",
        "chargePointId": i["cp"],
        "authorizationId": i["authorization"],
        "idTag": i["id_tag"],
        "status": "Accepted",
        "lastUpdatedAt": _ts(at),
    }


def _boot_notification(seq: int, at: datetime) -> Body:
    return {
        "notification": "BootNotification",
        "chargePointId": _ids(seq)["cp"],
        "timestamp": _ts(at),
        "bootNotification": _boot_info(seq),
    }


def _charge_point_changed_legacy(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    cp, evse = i["cp"], i["evse"]
    return {
        "notification": "ChargePointChangedNotification",
        "chargePoint": {
            "id": cp,
            "name": f"Alexanderplatz P1 #{cp}",
            "networkId": f"ABB-TACW-{cp:05d}",
            "networkProtocol": "ocpp 1.6",
            "status": "active",
            "accessType": "public",
            "locationId": i["location"],
            "plugAndCharge": False,
            "networkStatus": "available",
            "hardwareStatus": "available",
            "currentSecurityProfile": 2,
            "hardwareEnabledSecurityProfile": 2,
            "desiredSecurityProfile": 2,
            "desiredSecurityProfileStatus": "applied",
            "roamingOperatorId": None,
            "autoFaultRecovery": True,
            "externalId": None,
            "displayTariffsAndCosts": True,
            "ownerPartnerId": None,
            "capabilities": ["REMOTE_START_STOP_CAPABLE", "METER_VALUES"],
            "managedByOperator": True,
            "tags": ["berlin", "ac"],
            "uptimeTrackingEnabled": False,
            "lastBootNotification": _boot_info(seq),
            "evses": [
                {
                    "id": evse,
                    "networkId": "1",
                    "physicalReference": f"DE*AMP*E{cp:05d}*1",
                    "currentType": "ac",
                    "maxPower": 22000,
                    "maxVoltage": "230",
                    "maxAmperage": 32,
                    "status": "active",
                    "hardwareStatus": "available",
                    "allowsReservation": True,
                    "tariffGroupId": 3,
                    "midMeterCertificationEndYear": 2033,
                    "connectors": [
                        {
                            "id": evse * 10 + 1,
                            "status": "active",
                            "type": "type2",
                            "format": "socket",
                        }
                    ],
                }
            ],
            "createdAt": "2024-03-18T09:12:44Z",
            "firstConnection": "2024-03-18T10:02:51Z",
            "lastUpdatedAt": _ts(at),
        },
        "action": "updated",
        "lastUpdatedAt": _ts(at),
    }


def _simple(
    notification: str, key: str, base: int, action: str = "updated"
) -> Callable[[int, datetime], Body]:
    def build(seq: int, at: datetime) -> Body:
        return {
            "notification": notification,
            key: base + seq,
            "action": action,
            "lastUpdatedAt": _ts(at),
        }

    return build


def _sync_configuration(seq: int, at: datetime) -> Body:
    stamp = _ts(at)
    entries = [
        ("HeartbeatInterval", "300", False),
        ("MeterValueSampleInterval", "60", False),
        ("MeterValuesSampledData", "Energy.Active.Import.Register,Current.Import,Voltage", False),
        ("AuthorizeRemoteTxRequests", "false", False),
        ("NumberOfConnectors", "1", True),
    ]
    return {
        "notification": "ChargePointSyncConfigurationNotification",
        "chargePointId": _ids(seq)["cp"],
        "requestId": 77_100 + seq,
        "configuration": [
            {
                "key": key,
                "value": value,
                "readonly": readonly,
                "required": True,
                "timestamp": stamp,
                "lastUpdatedAt": stamp,
            }
            for key, value, readonly in entries
        ],
    }


def _circuit_consumption(seq: int, at: datetime) -> Body:
    stamp = _ts(at)
    return {
        "notification": "CircuitConsumptionNotification",
        "circuitId": _ids(seq)["circuit"],
        "maxCurrent": 63.0,
        "minChargePointCurrent": 6.0,
        "currentConsumption": [
            {"phase": "L1", "consumption": 31.8, "lastUpdatedAt": stamp},
            {"phase": "L2", "consumption": 31.5, "lastUpdatedAt": stamp},
            {"phase": "L3", "consumption": 15.9, "lastUpdatedAt": stamp},
        ],
    }


def _diagnostics_status(seq: int, at: datetime) -> Body:
    return {
        "notification": "DiagnosticsStatusNotification",
        "chargePointId": _ids(seq)["cp"],
        "requestId": 66_300 + seq,
        "status": "uploaded",
        "lastUpdatedAt": _ts(at),
    }


def _hardware_status(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    return {
        "notification": "HardwareStatusNotification",
        "chargePointId": i["cp"],
        "evseId": i["evse"],
        "timestamp": _ts(at),
        "hardwareStatus": "charging",
        "errorCode": "NoError",
        "info": None,
        "vendorId": None,
        "vendorErrorCode": None,
    }


def _location_changed(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    days = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    return {
        "notification": "LocationChangedNotification",
        "location": {
            "id": i["location"],
            "public_charge_points": 2,
            "public_charge_points_ids": [i["cp"], i["cp"] + 1],
            "name": {"en": "Alexanderplatz car park P1", "de": "Parkhaus Alexanderplatz P1"},
            "description": {"en": "Level -1, bays 12-15", "de": "Ebene -1, Stellplätze 12-15"},
            "geoposition": {"latitude": 52.521918, "longitude": 13.413215},
            "address": {"en": "Alexanderstraße 7", "de": "Alexanderstraße 7"},
            "post_code": "10178",
            "city": "Berlin",
            "country": "DE",
            "external_id": f"LOC-BER-{i['location']:04d}",
            "timezone": "Europe/Berlin",
            "images": [],
            "working_hours": {
                "is_always_open": False,
                "stop_session_outside_working_hours": False,
                "hours": {day: [{"start": "06:00", "end": "23:00"}] for day in days},
            },
            "lastUpdatedAt": _ts(at),
        },
        "action": "updated",
        "lastUpdatedAt": _ts(at),
    }


def _network_status(seq: int, at: datetime) -> Body:
    return {
        "notification": "NetworkStatusNotification",
        "chargePointId": _ids(seq)["cp"],
        "timestamp": _ts(at),
        "networkStatus": "available",
    }


def _security_event(seq: int, at: datetime) -> Body:
    return {
        "notification": "SecurityEventNotification",
        "chargePointId": _ids(seq)["cp"],
        "type": "StartupOfTheDevice",
        "timestamp": _ts(at),
        "techInfo": "Cold boot after power loss",
        "critical": True,
    }


def _user_changed(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    return {
        "notification": "UserChangedNotification",
        "user": {
            "id": str(i["user"]),
            "email": f"maria.schneider+{i['user']}@example.com",
            "emailVerified": "2025-03-02T08:14:09Z",
            "requirePasswordReset": False,
            "firstName": "Maria",
            "middleName": None,
            "lastName": "Schneider",
            "phone": "+4915123456789",
            "country": "DE",
            "state": None,
            "city": "Berlin",
            "postCode": "10178",
            "address": "Karl-Liebknecht-Straße 13",
            "vehicleNo": "B-MS 2041E",
            "personalId": "",
            "locale": "de-DE",
            "balance": 12.5,
            "status": "enabled",
            "userGroupIds": [3],
            "externalId": None,
            "subscriptionId": None,
            "options": {"sessionsAllowed": "single_session"},
            "lastUpdatedAt": _ts(at),
            "createdAt": "2025-03-02T08:11:47Z",
            "createdBy": "token:12",
            "receiveNewsAndPromotions": False,
        },
        "action": "updated",
        "lastUpdatedAt": _ts(at),
    }


def _partner_changed_legacy(seq: int, at: datetime) -> Body:
    return {
        "notification": "PartnerChangedNotification",
        "user": {"id": str(_ids(seq)["partner"])},
        "action": "created",
    }


def _parking_space(seq: int, at: datetime) -> Body:
    return {
        "notification": "parkingSpace.occupancyStatus.changed",
        "parkingSpaceId": 610 + seq,
        "occupancyStatus": "occupied",
        "lastUpdatedAt": _ts(at),
    }


def _partner_changed(seq: int, at: datetime) -> Body:
    partner = _ids(seq)["partner"]
    return {
        "notification": "partner.changed",
        "partnerId": partner,
        "action": "deleted",
        "lastUpdatedAt": _ts(at),
        "externalId": f"CRM-{partner:06d}",
        "companyName": "Stadtwerke Musterstadt GmbH",
        "businessName": "SWM eMobil",
        "regNo": "HRB 123456",
        "vatNo": "DE123456789",
        "country": "DE",
    }


def _authorization_changed(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    return {
        "notification": "authorization.changed",
        "authorizationId": i["authorization"],
        "action": "created",
        "chargePointId": i["cp"],
        "idTag": i["id_tag"],
        "status": "accepted",
        "lastUpdatedAt": _ts(at),
    }


def _sub_operator(seq: int, at: datetime) -> Body:
    return {
        "notification": "SubOperatorChangedNotification",
        "subOperator": {"id": 4 + seq},
        "action": "created",
        "lastUpdatedAt": _ts(at),
    }


def _tariff_changed(seq: int, at: datetime) -> Body:
    tariff_id = 310 + seq
    return {
        "notification": "TariffChangedNotification",
        "tariff": {
            "id": tariff_id,
            "name": "Public AC 2026",
            "type": "duration+energy",
            "description": {"en": "0.39 EUR/kWh, 1.00 EUR per session, idle fee after 30 min"},
            "pricing": {
                "connectionFee": _CONNECTION_FEE,
                "pricePerKwh": _PRICE_PER_KWH,
                "pricePeriodInMinutes": 15,
                "pricePerPeriod": 0.0,
                "idleFeePerMinute": 0.10,
                "idleFeeGracePeriodMinutes": 30,
                "idleFeeLimit": 12.0,
                "durationFeeGracePeriod": 0,
                "minPrice": None,
                "preAuthorizeAmount": 30.0,
                "chargePointElectricityRate": True,
                "lockPriceOnSessionStart": True,
            },
            "currency": _CURRENCY,
            "stopSession": {"timeLimitMinutes": None, "stopWhenEnergyExceedsKwh": None},
            "restrictions": {
                "applyToAdHocUsers": True,
                "adHocPreAuthorizeAmount": 30.0,
                "applyToUsersOfPartners": [],
                "applyToUserGroupIds": [],
                "startDate": None,
                "endDate": None,
            },
            "partner": {"id": None},
            "display": {
                "defaultPriceInformation": "0.39 EUR/kWh + 1.00 EUR",
                "priceInformation": "0.39 EUR/kWh + 1.00 EUR",
            },
            "externalId": f"TAR-{tariff_id}",
            "lastUpdatedAt": _ts(at),
        },
        "action": "updated",
        "lastUpdatedAt": _ts(at),
    }


def _reservation(seq: int, at: datetime) -> Body:
    return {
        "notification": "reservation.changed",
        "reservationId": 2_150 + seq,
        "status": "active",
        "lastUpdatedAt": _ts(at),
    }


def _payment_method(seq: int, at: datetime) -> Body:
    user = _ids(seq)["user"]
    return {
        "notification": "user.paymentMethod.changed",
        "paymentMethodId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ampeco-pm-{user}")),
        "userId": user,
        "action": "created",
        "lastUpdatedAt": _ts(at),
    }


def _partner_invite(seq: int, at: datetime) -> Body:
    user = _ids(seq)["user"]
    return {
        "notification": "partnerInvite.changed",
        "partnerInviteId": 870 + seq,
        "userId": user,
        "email": f"fleet.driver+{user}@example.com",
        "action": "created",
        "allowCorporateAccountBilling": True,
        "limitCorporateAccountBillingToPartnerChargePoints": False,
        "allowAccessToPrivateChargePoints": True,
        "lastUpdatedAt": _ts(at),
    }


def _subscription_legacy(seq: int, at: datetime) -> Body:
    return {
        "notification": "user.subscriptionChanged",
        "userId": _ids(seq)["user"],
        "planId": 5,
        "status": "active",
        "endDate": _ts(at, 30 * 24 * 60),
        "lastUpdatedAt": _ts(at),
    }


def _subscription(seq: int, at: datetime) -> Body:
    return {
        "notification": "user.subscription.changed",
        "userId": _ids(seq)["user"],
        "planId": 5,
        "status": "active",
        "endsAt": _ts(at, 30 * 24 * 60),
        "lastUpdatedAt": _ts(at),
    }


def _user_balance(seq: int, at: datetime) -> Body:
    return {
        "notification": "userBalance.changed",
        "debit": 0.0,
        "credit": 20.0,
        "updatedBalance": 32.5,
        "userId": _ids(seq)["user"],
        "currency": _CURRENCY,
        "type": "user_top_up",
        "transactionId": 448_200 + seq,
        "timestamp": _ts(at),
        "lastUpdatedAt": _ts(at),
    }


def _transaction(seq: int, at: datetime) -> Body:
    return {
        "notification": "transaction.changed",
        "transactionId": 448_200 + seq,
        "action": "created",
        "lastUpdatedAt": _ts(at),
    }


def _settlement_report(seq: int, at: datetime) -> Body:
    revenue, expenses = 1842.60, 312.40
    collected_now, collected_before = 1710.30, 96.50
    return {
        "notification": "settlementReport.created",
        "id": 1_204 + seq,
        "reportUid": f"SR-2025-11-{seq + 1:05d}",
        "partnerId": _ids(seq)["partner"],
        "issueDate": _ts(at),
        "period": "2025-11-01 - 2025-11-30",
        "totalKwhDeliveredAsCPO": 4210.532,
        "totalKwhDeliveredAsEmsp": 0.0,
        "totalRevenueCollectedCurrentPeriod": collected_now,
        "totalRevenueCollectedPreviousPeriods": collected_before,
        "totalCollectedBalanceCurrentPeriod": round(collected_now - expenses, 2),
        "totalCollectedBalancePreviousPeriods": round(
            collected_now + collected_before - expenses, 2
        ),
        "totalRevenue": revenue,
        "totalExpenses": expenses,
        "totalAmount": round(revenue - expenses, 2),
        "currency": _CURRENCY,
        "lastUpdatedAt": _ts(at),
    }


def _data_transfer(seq: int, at: datetime) -> Body:
    return {
        "notification": "chargePoint.dataTransferReceived",
        "chargePointId": _ids(seq)["cp"],
        "vendorId": "com.abb",
        "messageId": "SignedMeterValue",
        "data": f'{{"connectorId":1,"meterSerial":"EM{seq + 31_410_000}","format":"OCMF"}}',
    }


def _charging_profile(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    return {
        "notification": "chargingProfile.applied",
        "chargePointId": i["cp"],
        "evseId": i["evse"],
        "sessionId": i["session"],
        "chargingProfile": {
            "id": 55_000 + seq,
            "stackLevel": 1,
            "purpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "recurrencyKind": None,
            "chargingRateUnit": "A",
            "minChargingRate": None,
            "scheduleStart": _ts(at),
            "duration": 3600,
            "schedulePeriods": [
                {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                {"startPeriod": 1800, "limit": 10.0, "numberPhases": 3},
            ],
            "validFrom": _ts(at),
            "validTo": None,
            "chargingCompleteAt": None,
        },
        "appliedAt": _ts(at, 0.05),
    }


def _installer_job(seq: int, at: datetime) -> Body:
    i = _ids(seq)
    return {
        "notification": "installerJob.changed",
        "action": "updated",
        "id": 730 + seq,
        "status": "completed",
        "installationAndMaintenanceCompanyId": 9,
        "locationId": i["location"],
        "installerAdminId": 61,
        "pin": f"{(seq * 7_919 + 482_915) % 1_000_000:06d}",
        "description": "Install and commission 2 x Terra AC wallbox, level -1",
        "outcomeDetails": "Both charge points online via OCPP 1.6J, MID meters sealed",
        "createdAt": _ts(at, -3 * 24 * 60),
        "lastUpdatedAt": _ts(at),
        "chargePoints": [{"id": i["cp"]}, {"id": i["cp"] + 1}],
    }


_BUILDERS: dict[str, Callable[[int, datetime], Body]] = {
    "AuthorizationNotification": _authorization_notification,
    "BootNotification": _boot_notification,
    "ChargePointChangedNotification": _charge_point_changed_legacy,
    "chargePoint.changed": _simple("chargePoint.changed", "chargePointId", 117),
    "evse.changed": _simple("evse.changed", "evseId", 341),
    "ChargePointSyncConfigurationNotification": _sync_configuration,
    "CircuitConsumptionNotification": _circuit_consumption,
    "circuit.changed": _simple("circuit.changed", "circuitId", 8),
    "DiagnosticsStatusNotification": _diagnostics_status,
    "HardwareStatusNotification": _hardware_status,
    "LocationChangedNotification": _location_changed,
    "NetworkStatusNotification": _network_status,
    "SecurityEventNotification": _security_event,
    "SessionMeterValuesNotification": lambda seq, at: _lifecycle(seq, at)[2],
    "SessionStartStopNotification": _legacy_start_stop,
    "session.start.stop.notification": lambda seq, at: _lifecycle(seq, at)[-2],
    "SessionUpdateNotification": lambda seq, at: _lifecycle(seq, at)[-3],
    "UserChangedNotification": _user_changed,
    "user.invoiceDetails.changed": _simple("user.invoiceDetails.changed", "userId", 5_321),
    "PartnerChangedNotification": _partner_changed_legacy,
    "parkingSpace.occupancyStatus.changed": _parking_space,
    "partner.changed": _partner_changed,
    "authorization.changed": _authorization_changed,
    "SubOperatorChangedNotification": _sub_operator,
    "TariffChangedNotification": _tariff_changed,
    "reservation.changed": _reservation,
    "user.paymentMethod.changed": _payment_method,
    "partnerInvite.changed": _partner_invite,
    "user.subscriptionChanged": _subscription_legacy,
    "user.subscription.changed": _subscription,
    "idTag.changed": _simple("idTag.changed", "idTagsId", 1_880, "created"),
    "roamingPlatform.changed": _simple("roamingPlatform.changed", "roamingPlatformId", 2),
    "userBalance.changed": _user_balance,
    "transaction.changed": _transaction,
    "settlementReport.created": _settlement_report,
    "chargePoint.dataTransferReceived": _data_transfer,
    "cdr.received": lambda seq, at: _lifecycle(seq, at)[-1],
    "chargingProfile.applied": _charging_profile,
    "installerJob.changed": _installer_job,
}


def sample(notification: str, seq: int = 0, at: datetime | None = None) -> dict[str, Any]:
    """A realistic body of type ``notification`` happening at ``at`` (a session's start for
    the session types; default `FIXTURE_AT`); deterministic in ``seq`` and ``at``."""
    try:
        build = _BUILDERS[notification]
    except KeyError:
        raise KeyError(
            f"unknown AMPECO notification {notification!r}; known: {', '.join(NAMES)}"
        ) from None
    return build(seq, at or FIXTURE_AT)
