"""Typed models of the 39 AMPECO notification bodies (Public API 3.110.0 callbacks).

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


# --------------------------------------------------------------------------- nested parts


class BootInfo(AmpecoModel, kw_only=True):
    """OCPP BootNotification data as AMPECO relays it (snake_case keys)."""

    model: str | None = None
    vendor: str | None = None
    charge_box_serial_number: str | None = None
    charge_point_serial_number: str | None = None
    firmware_version: str | None = None
    iccid: str | None = None
    imsi: str | None = None
    meter_serial_number: str | None = None
    meter_type: str | None = None
    reason: str | None = None


class Connector(AmpecoModel, kw_only=True):
    """A connector of an EVSE."""

    id: int | None = None
    status: str | None = None
    type: str | None = None
    format: str | None = None


class ChargePointEvse(AmpecoModel, kw_only=True):
    """An EVSE inside the deprecated ChargePointChangedNotification."""

    id: int
    networkId: str
    externalId: str | None = None
    chargingProfile: dict[str, Any] | None = None
    roaming: dict[str, Any] | None = None
    connectors: list[Connector] | None = None
    physicalReference: str | None = None
    currentType: str | None = None
    maxPower: float | None = None
    maxVoltage: str | None = None
    maxAmperage: float | None = None
    status: str | None = None
    midMeterCertificationEndYear: float | None = None
    tariffGroupId: int | None = None
    allowsReservation: bool | None = None
    hardwareStatus: str | None = None


class ChargePoint(AmpecoModel, kw_only=True):
    """The full charge point resource (deprecated ChargePointChangedNotification)."""

    id: int
    evses: list[ChargePointEvse]
    networkStatus: str
    chargingProfile: dict[str, Any] | None = None
    lastBootNotification: BootInfo | None = None
    showToPublicWithNotice: bool | None = None
    notice: str | None = None
    currentSecurityProfile: int | None = None
    hardwareEnabledSecurityProfile: int | None = None
    desiredSecurityProfileStatus: str | None = None
    roamingOperatorId: int | None = None
    autoFaultRecovery: bool | None = None
    externalId: str | None = None
    displayTariffsAndCosts: bool | None = None
    lastUpdatedAt: str | None = None
    createdAt: str | None = None
    firstConnection: str | None = None
    ownerUserId: int | None = None
    vendorErrorCode: str | None = None
    tags: list[str] | None = None
    uptimeTrackingEnabled: bool | None = None
    uptimeTrackingActivatedAt: str | None = None
    name: str | None = None
    networkId: str | None = None
    networkProtocol: str | None = None
    networkPassword: str | None = None
    networkIp: str | None = None
    networkPort: str | None = None
    status: str | None = None
    plugAndCharge: bool | None = None
    locationId: int | None = None
    pin: str | None = None
    accessType: str | None = None
    desiredSecurityProfile: int | None = None
    ownerPartnerId: int | None = None
    ownerPartnerContractId: int | None = None
    partnerCorporateBillingAsDefault: bool | None = None
    partnerAccessType: str | None = None
    capabilities: list[str] | None = None
    managedByOperator: bool | None = None
    hardwareStatus: str | None = None


class PhaseConsumption(AmpecoModel, kw_only=True):
    """Current drawn on one phase of a circuit, in amps."""

    phase: str
    consumption: float | None = None
    lastUpdatedAt: str | None = None


class GeoPosition(AmpecoModel, kw_only=True):
    """WGS 84 coordinates."""

    latitude: float
    longitude: float


class Image(AmpecoModel, kw_only=True):
    """An image reference."""

    original: str
    mimeType: str
    thumbnail: str | None = None


class TimeInterval(AmpecoModel, kw_only=True):
    """An opening interval, ``HH:MM`` local time."""

    start: str
    end: str


class WeeklyHours(AmpecoModel, kw_only=True):
    """Opening intervals per weekday; a day without entries is closed."""

    monday: list[TimeInterval] | None = None
    tuesday: list[TimeInterval] | None = None
    wednesday: list[TimeInterval] | None = None
    thursday: list[TimeInterval] | None = None
    friday: list[TimeInterval] | None = None
    saturday: list[TimeInterval] | None = None
    sunday: list[TimeInterval] | None = None


class WorkingHours(AmpecoModel, kw_only=True):
    """Opening hours of a location."""

    is_always_open: bool
    stop_session_outside_working_hours: bool | None = None
    hours: WeeklyHours | None = None
    always_open_for_user_group_ids: list[float] | None = None


class Location(AmpecoModel, kw_only=True):
    """A location resource (snake_case keys, as AMPECO sends them)."""

    id: int | None = None
    public_charge_points: int | None = None
    public_charge_points_ids: list[int] | None = None
    name: dict[str, Any] | None = None
    status: str | None = None
    description: dict[str, Any] | None = None
    detailed_description: dict[str, Any] | None = None
    additional_description: dict[str, Any] | None = None
    geoposition: GeoPosition | None = None
    address: dict[str, Any] | None = None
    post_code: str | None = None
    region: Any = None
    city: str | None = None
    country: str | None = None
    external_id: str | None = None
    timezone: str | None = None
    location_image: Image | None = None
    images: list[Image] | None = None
    working_hours: WorkingHours | None = None
    lastUpdatedAt: str | None = None


class MeterValue(AmpecoModel, kw_only=True):
    """One sampled value; energy in Wh."""

    timestamp: str | None = None
    measurand: str | None = None
    value: float | None = None
    unit: str | None = None


class Amount(AmpecoModel, kw_only=True):
    """A money amount with and without tax."""

    withTax: float
    withoutTax: float | None = None


class SessionAuthorization(AmpecoModel, kw_only=True):
    """The authorization that started a session."""

    id: int
    method: str
    source: str
    createdAt: str
    status: str
    rejectionReason: str | None
    userId: int | None = None
    rfidTagUid: str | None = None
    roaming: dict[str, Any] | None = None
    lastUpdatedAt: str | None = None


class PriceComponent(AmpecoModel, kw_only=True):
    """One tariff element of a price breakdown."""

    type: str
    currency: str
    unit: str
    pricePerUnit: Amount
    quantity: float
    price: Amount
    taxPercentage: float | None = None


class SessionPriceComponent(PriceComponent, kw_only=True):
    """A session-level price breakdown element, with its deprecated totals."""

    totalPrice: float
    unitPrice: float


class ChargingPeriod(AmpecoModel, kw_only=True):
    """A period of a session with one charging state; energy in Wh."""

    id: int
    energy: int
    startedAt: str
    state: str
    stoppedAt: str | None = None
    chargingState: str | None = None
    pricingDetails: dict[str, Any] | None = None
    amount: float | None = None
    priceBreakdown: list[PriceComponent] | None = None


class EnergyConsumption(AmpecoModel, kw_only=True):
    """Energy split by origin, in Wh."""

    total: float
    grid: float
    local: float | None = None


class ClockAlignedEnergy(AmpecoModel, kw_only=True):
    """Energy consumed in one clock-aligned interval."""

    start: str
    end: str
    energyConsumed: int
    energyConsumption: EnergyConsumption
    totalCost: Amount | None = None


class Power(AmpecoModel, kw_only=True):
    """Charging power in watts."""

    latest: float | None = None
    peak: float | None = None
    average: float | None = None


class Session(AmpecoModel, kw_only=True):
    """A charging session; ``id`` is a string here, energy in Wh."""

    id: str
    chargePointId: int
    evseId: int
    status: str
    userId: int | None
    startedAt: str
    energy: float
    authorizationId: int | None
    energyConsumption: EnergyConsumption
    billingStatus: str | None
    connectorId: int | None = None
    reason: str | None = None
    bookingId: int | None = None
    stoppedAt: str | None = None
    powerKw: float | None = None
    socPercent: float | None = None
    amount: float | None = None
    totalAmount: Amount | None = None
    tax: dict[str, Any] | None = None
    currency: str | None = None
    paymentType: str | None = None
    paymentMethodId: str | None = None
    terminalId: int | None = None
    nonBillableEnergy: float | None = None
    paymentStatus: str | None = None
    idTag: str | None = None
    idTagLabel: str | None = None
    extendingSessionId: int | None = None
    originalSessionId: int | None = None
    extendedBySessionId: int | None = None
    reimbursementEligibility: bool | None = None
    externalSessionId: str | None = None
    authorization: SessionAuthorization | None = None
    chargingPeriods: list[ChargingPeriod] | None = None
    priceBreakdown: list[SessionPriceComponent] | None = None
    tariffSnapshotId: int | None = None
    electricityCost: float | None = None
    evsePhysicalReference: str | None = None
    paymentStatusUpdatedAt: str | None = None
    chargePointOperatorRoamingId: str | None = None
    roaming: dict[str, Any] | None = None
    lastUpdatedAt: str | None = None
    randomisedDelay: int | None = None
    receiptId: int | None = None
    externalAppData: dict[str, Any] | None = None
    clockAlignedEnergyConsumption: list[ClockAlignedEnergy] | None = None
    estimatedSavings: float | None = None
    power: Power | None = None


class PartnerInvite(AmpecoModel, kw_only=True):
    """An invitation of a user to a partner."""

    id: int
    partnerId: int
    status: str
    createdAt: str
    sendViaEmail: bool | None = None
    email: str | None = None
    language: str | None = None
    acceptUrl: str | None = None
    options: dict[str, Any] | None = None
    acceptedAt: str | None = None
    userId: int | None = None
    lastUpdatedAt: str | None = None


class User(AmpecoModel, kw_only=True):
    """A user resource; ``id`` is a string in this payload."""

    id: str | None = None
    email: str | None = None
    emailVerified: str | None = None
    requirePasswordReset: bool | None = None
    firstName: str | None = None
    middleName: str | None = None
    lastName: str | None = None
    phone: str | None = None
    country: str | None = None
    state: str | None = None
    city: str | None = None
    postCode: str | None = None
    address: str | None = None
    vehicleNo: str | None = None
    personalId: str | None = None
    locale: str | None = None
    balance: float | None = None
    status: str | None = None
    userGroupIds: list[int] | None = None
    externalId: str | None = None
    subscriptionId: int | None = None
    options: dict[str, Any] | None = None
    password: str | None = None
    lastUpdatedAt: str | None = None
    createdAt: str | None = None
    createdBy: str | None = None
    receiveNewsAndPromotions: bool | None = None
    partnerInvites: list[PartnerInvite] | None = None
    bankDetails: dict[str, Any] | None = None
    externalAppData: dict[str, Any] | None = None


class PartnerRef(AmpecoModel, kw_only=True):
    """The partner of the deprecated PartnerChangedNotification (sent as ``user``)."""

    id: str | None = None


class SubOperatorRef(AmpecoModel, kw_only=True):
    """A sub-operator reference."""

    id: int | None = None


class TariffPricing(AmpecoModel, kw_only=True):
    """Tariff prices; amounts include tax unless AMPECO says otherwise."""

    pricePerSession: float | None = None
    connectionFee: float | None = None
    pricePerKwh: float | None = None
    dayPricePerKwh: float | None = None
    nightPricePerKwh: float | None = None
    pricePeriodInMinutes: int | None = None
    pricePerPeriod: float | None = None
    durationFeeLimit: float | None = None
    dayPricePerPeriod: float | None = None
    nightPricePerPeriod: float | None = None
    dayIdleFeePerMinute: float | None = None
    nightIdleFeePerMinute: float | None = None
    idleFeePerMinute: float | None = None
    idleFeeGracePeriodMinutes: float | None = None
    idlePricingPeriodInMinutes: float | None = None
    idleFeePeriodStart: str | None = None
    idleFeePeriodEnd: str | None = None
    idleFeeLimit: float | None = None
    connectionFeeMinimumSessionDuration: int | None = None
    connectionFeeMinimumSessionEnergy: float | None = None
    durationFeeGracePeriod: int | None = None
    minPrice: float | None = None
    preAuthorizeAmount: float | None = None
    taxID: int | None = None
    chargePointElectricityRate: bool | None = None
    fallbackElectricityRateId: int | None = None
    markupPercentagePerKwh: float | None = None
    markupFixedFeePerKwh: float | None = None
    flexibleMarkUpAsFixedPerKwh: dict[str, Any] | None = None
    multiPricePerKwh: list[dict[str, Any]] | None = None
    multiPricePerDuration: list[dict[str, Any]] | None = None
    multiIdleFee: list[dict[str, Any]] | None = None
    regularUsePeriod: float | None = None
    averagePowerLevels: list[dict[str, Any]] | None = None
    peakPowerLevels: list[dict[str, Any]] | None = None
    timePeriods: list[dict[str, Any]] | None = None
    pricePeriods: dict[str, Any] | None = None
    daysWhenApplied: list[dict[str, Any]] | None = None
    thresholdPriceForEnergy: float | None = None
    priceForEnergyWhenOptimized: float | None = None
    optimisedLabel: str | None = None
    durationFeeFrom: str | None = None
    durationFeeTo: str | None = None
    subsidyIntegrationId: int | None = None
    lockPriceOnSessionStart: bool | None = None
    lockEnergyPriceOnSessionStart: bool | None = None
    lockDurationPriceOnSessionStart: bool | None = None
    lockIdlePriceOnSessionStart: bool | None = None
    stateOfChargeIdleThreshold: int | None = None
    averagePowerIdleThreshold: float | None = None


class Tariff(AmpecoModel, kw_only=True):
    """A tariff resource."""

    id: int
    name: str
    type: str
    description: dict[str, Any] | None = None
    additionalInformation: dict[str, Any] | None = None
    learnMoreUrl: dict[str, Any] | None = None
    dayTariffStart: str | None = None
    nightTariffStart: str | None = None
    pricing: TariffPricing | None = None
    currency: str | None = None
    stopSession: dict[str, Any] | None = None
    restrictions: dict[str, Any] | None = None
    partner: dict[str, Any] | None = None
    lastUpdatedAt: str | None = None
    display: dict[str, Any] | None = None
    integrationId: int | None = None
    externalId: str | None = None


class SchedulePeriod(AmpecoModel, kw_only=True):
    """One period of a charging schedule."""

    startPeriod: int | None = None
    limit: float | None = None
    numberPhases: int | None = None


class ChargingProfile(AmpecoModel, kw_only=True):
    """An OCPP charging profile (camelCase form)."""

    id: int | None = None
    minChargingRate: float | None = None
    schedulePeriods: list[SchedulePeriod] | None = None
    scheduleStart: str | None = None
    chargingRateUnit: str | None = None
    stackLevel: int | None = None
    chargingProfileKind: str | None = None
    recurrencyKind: str | None = None
    chargingCompleteAt: str | None = None
    purpose: str | None = None
    validTo: str | None = None
    validFrom: str | None = None
    duration: int | None = None


# --------------------------------------------------------------------------- notifications


class AuthorizationNotification(AmpecoEvent, kw_only=True):
    """An idTag authorization at a charge point (deprecated)."""

    chargePointId: int
    authorizationId: int
    idTag: str
    status: str
    lastUpdatedAt: str


class BootNotification(AmpecoEvent, kw_only=True):
    """A charge point (re)booted."""

    chargePointId: int | None = None
    timestamp: str | None = None
    bootNotification: BootInfo | None = None


class ChargePointChangedNotification(AmpecoEvent, kw_only=True):
    """Charge point, EVSE or connector changed (deprecated)."""

    action: str
    lastUpdatedAt: str
    chargePoint: ChargePoint | None = None


class ChargePointChanged(AmpecoEvent, kw_only=True):
    """``chargePoint.changed``: charge point master data changed."""

    chargePointId: int
    action: str
    lastUpdatedAt: str


class EvseChanged(AmpecoEvent, kw_only=True):
    """``evse.changed``: an EVSE or its connectors changed."""

    evseId: int
    action: str
    lastUpdatedAt: str


class ChargePointSyncConfigurationNotification(AmpecoEvent, kw_only=True):
    """The charge point's OCPP configuration was read."""

    chargePointId: int
    requestId: int | None = None
    configuration: list[dict[str, Any]] | None = None
    error: str | None = None


class CircuitConsumptionNotification(AmpecoEvent, kw_only=True):
    """Per-phase consumption of a load-management circuit."""

    circuitId: int | None = None
    maxCurrent: float | None = None
    minChargePointCurrent: float | None = None
    currentConsumption: list[PhaseConsumption] | None = None


class CircuitChanged(AmpecoEvent, kw_only=True):
    """``circuit.changed``."""

    circuitId: int
    action: str
    lastUpdatedAt: str


class DiagnosticsStatusNotification(AmpecoEvent, kw_only=True):
    """Progress of a diagnostics upload."""

    chargePointId: int
    requestId: int
    status: str
    lastUpdatedAt: str


class HardwareStatusNotification(AmpecoEvent, kw_only=True):
    """OCPP status of a charge point or one of its EVSEs."""

    chargePointId: int
    timestamp: str
    hardwareStatus: str | None
    evseId: int | None = None
    errorCode: str | None = None
    info: str | None = None
    vendorId: str | None = None
    vendorErrorCode: str | None = None


class LocationChangedNotification(AmpecoEvent, kw_only=True):
    """A location was created, updated or deleted."""

    location: Location
    lastUpdatedAt: str
    action: str | None = None


class NetworkStatusNotification(AmpecoEvent, kw_only=True):
    """Connectivity of a charge point to AMPECO changed."""

    chargePointId: int
    timestamp: str
    networkStatus: str


class SecurityEventNotification(AmpecoEvent, kw_only=True):
    """An OCPP security event."""

    chargePointId: int
    type: str
    timestamp: str
    critical: bool
    techInfo: str | None = None


class SessionMeterValuesNotification(AmpecoEvent, kw_only=True):
    """Meter values sampled during a session."""

    chargePointId: int
    evseId: int
    sessionId: int
    externalSessionId: str | None = None
    meterValues: list[MeterValue] | None = None


class SessionStartStopNotification(AmpecoEvent, kw_only=True):
    """A session started or stopped (deprecated; energy in Wh)."""

    chargePointId: int
    evseId: int
    sessionId: int
    startedAtTimestamp: str
    meterStart: int
    meterStop: int
    lastUpdatedAt: str
    action: str | None = None
    idTag: str | None = None
    stoppedAtTimestamp: str | None = None
    energyConsumed: float | None = None
    reason: str | None = None
    userId: int | None = None
    externalSessionId: str | None = None
    externalAppData: dict[str, Any] | None = None


class SessionStartStopNotificationV2(AmpecoEvent, kw_only=True):
    """``session.start.stop.notification``: a session started or stopped (Wh)."""

    sessionId: int
    chargePointId: int
    evseId: int
    action: str
    startedAtTimestamp: str
    meterStart: int
    meterStop: int
    lastUpdatedAt: str
    userId: int | None = None
    idTag: str | None = None
    externalSessionId: str | None = None
    startedAtTimestampLocal: str | None = None
    stoppedAtTimestamp: str | None = None
    stoppedAtTimestampLocal: str | None = None
    energyConsumed: float | None = None
    reason: str | None = None
    externalAppData: dict[str, Any] | None = None


class SessionUpdateNotification(AmpecoEvent, kw_only=True):
    """The full session resource after a change."""

    session: Session


class UserChangedNotification(AmpecoEvent, kw_only=True):
    """A user was created, updated or deleted."""

    user: User
    action: str
    lastUpdatedAt: str


class UserInvoiceDetailsChanged(AmpecoEvent, kw_only=True):
    """``user.invoiceDetails.changed``."""

    userId: int
    action: str
    lastUpdatedAt: str


class PartnerChangedNotification(AmpecoEvent, kw_only=True):
    """A partner was created or deleted (deprecated; the partner is under ``user``)."""

    user: PartnerRef
    action: str


class ParkingSpaceOccupancyStatusChanged(AmpecoEvent, kw_only=True):
    """``parkingSpace.occupancyStatus.changed``."""

    parkingSpaceId: int
    occupancyStatus: str
    lastUpdatedAt: str


class PartnerChanged(AmpecoEvent, kw_only=True):
    """``partner.changed``; identifying details only on ``deleted``."""

    partnerId: int
    action: str
    lastUpdatedAt: str
    externalId: str | None = None
    companyName: str | None = None
    businessName: str | None = None
    regNo: str | None = None
    vatNo: str | None = None
    country: str | None = None


class AuthorizationChanged(AmpecoEvent, kw_only=True):
    """``authorization.changed``."""

    authorizationId: int
    action: str
    status: str
    lastUpdatedAt: str
    chargePointId: int | None = None
    idTag: str | None = None


class SubOperatorChangedNotification(AmpecoEvent, kw_only=True):
    """A sub-operator was created or deleted."""

    subOperator: SubOperatorRef
    action: str
    lastUpdatedAt: str


class TariffChangedNotification(AmpecoEvent, kw_only=True):
    """A tariff was created, updated or deleted."""

    tariff: Tariff
    action: str
    lastUpdatedAt: str


class ReservationChanged(AmpecoEvent, kw_only=True):
    """``reservation.changed``."""

    reservationId: int
    status: str
    lastUpdatedAt: str


class UserPaymentMethodChanged(AmpecoEvent, kw_only=True):
    """``user.paymentMethod.changed``; the payment method id is a string."""

    paymentMethodId: str
    userId: int
    action: str
    lastUpdatedAt: str


class PartnerInviteChanged(AmpecoEvent, kw_only=True):
    """``partnerInvite.changed``."""

    partnerInviteId: int
    action: str
    lastUpdatedAt: str
    userId: int | None = None
    email: str | None = None
    allowCorporateAccountBilling: bool | None = None
    limitCorporateAccountBillingToPartnerChargePoints: bool | None = None
    allowAccessToPrivateChargePoints: bool | None = None


class UserSubscriptionChanged(AmpecoEvent, kw_only=True):
    """``user.subscriptionChanged`` (deprecated)."""

    userId: int
    planId: int
    status: str
    endDate: str
    lastUpdatedAt: str


class UserSubscriptionChangedV2(AmpecoEvent, kw_only=True):
    """``user.subscription.changed``."""

    userId: int
    planId: int
    status: str
    endsAt: str
    lastUpdatedAt: str


class IdTagChanged(AmpecoEvent, kw_only=True):
    """``idTag.changed``."""

    idTagsId: int
    action: str
    lastUpdatedAt: str | None = None


class RoamingPlatformChanged(AmpecoEvent, kw_only=True):
    """``roamingPlatform.changed``."""

    roamingPlatformId: int
    action: str
    lastUpdatedAt: str


class UserBalanceChanged(AmpecoEvent, kw_only=True):
    """``userBalance.changed``."""

    debit: float
    credit: float
    updatedBalance: float
    userId: int
    currency: str
    type: str
    timestamp: str
    lastUpdatedAt: str
    transactionId: int | None = None


class TransactionChanged(AmpecoEvent, kw_only=True):
    """``transaction.changed``."""

    transactionId: int
    action: str
    lastUpdatedAt: str | None = None


class SettlementReportCreated(AmpecoEvent, kw_only=True):
    """``settlementReport.created``; energy here is in kWh."""

    id: int
    reportUid: str
    partnerId: int
    issueDate: str
    period: str
    totalKwhDeliveredAsCPO: float
    totalKwhDeliveredAsEmsp: float
    totalRevenueCollectedCurrentPeriod: float
    totalCollectedBalanceCurrentPeriod: float
    totalRevenue: float
    totalExpenses: float
    totalAmount: float
    currency: str
    lastUpdatedAt: str
    totalRevenueCollectedPreviousPeriods: float | None = None
    totalCollectedBalancePreviousPeriods: float | None = None


class ChargePointDataTransferReceived(AmpecoEvent, kw_only=True):
    """``chargePoint.dataTransferReceived``: an OCPP DataTransfer from the charger."""

    chargePointId: int
    vendorId: str
    messageId: str | None = None
    data: str | None = None


class CdrReceived(AmpecoEvent, kw_only=True):
    """``cdr.received``; the CDR id is a string."""

    id: str
    createdAt: str


class ChargingProfileApplied(AmpecoEvent, kw_only=True):
    """``chargingProfile.applied``."""

    chargePointId: int
    evseId: int | None
    sessionId: int | None
    chargingProfile: ChargingProfile
    appliedAt: str


class InstallerJobChanged(AmpecoEvent, kw_only=True):
    """``installerJob.changed``."""

    action: str
    id: int
    status: str
    installationAndMaintenanceCompanyId: int
    description: str
    createdAt: str
    lastUpdatedAt: str
    locationId: int | None = None
    installerAdminId: int | None = None
    pin: str | None = None
    outcomeDetails: str | None = None
    chargePoints: list[dict[str, Any]] | None = None


# --------------------------------------------------------------------------- registry

EVENTS: dict[str, type[msgspec.Struct]] = {
    "AuthorizationNotification": AuthorizationNotification,
    "BootNotification": BootNotification,
    "ChargePointChangedNotification": ChargePointChangedNotification,
    "chargePoint.changed": ChargePointChanged,
    "evse.changed": EvseChanged,
    "ChargePointSyncConfigurationNotification": ChargePointSyncConfigurationNotification,
    "CircuitConsumptionNotification": CircuitConsumptionNotification,
    "circuit.changed": CircuitChanged,
    "DiagnosticsStatusNotification": DiagnosticsStatusNotification,
    "HardwareStatusNotification": HardwareStatusNotification,
    "LocationChangedNotification": LocationChangedNotification,
    "NetworkStatusNotification": NetworkStatusNotification,
    "SecurityEventNotification": SecurityEventNotification,
    "SessionMeterValuesNotification": SessionMeterValuesNotification,
    "SessionStartStopNotification": SessionStartStopNotification,
    "session.start.stop.notification": SessionStartStopNotificationV2,
    "SessionUpdateNotification": SessionUpdateNotification,
    "UserChangedNotification": UserChangedNotification,
    "user.invoiceDetails.changed": UserInvoiceDetailsChanged,
    "PartnerChangedNotification": PartnerChangedNotification,
    "parkingSpace.occupancyStatus.changed": ParkingSpaceOccupancyStatusChanged,
    "partner.changed": PartnerChanged,
    "authorization.changed": AuthorizationChanged,
    "SubOperatorChangedNotification": SubOperatorChangedNotification,
    "TariffChangedNotification": TariffChangedNotification,
    "reservation.changed": ReservationChanged,
    "user.paymentMethod.changed": UserPaymentMethodChanged,
    "partnerInvite.changed": PartnerInviteChanged,
    "user.subscriptionChanged": UserSubscriptionChanged,
    "user.subscription.changed": UserSubscriptionChangedV2,
    "idTag.changed": IdTagChanged,
    "roamingPlatform.changed": RoamingPlatformChanged,
    "userBalance.changed": UserBalanceChanged,
    "transaction.changed": TransactionChanged,
    "settlementReport.created": SettlementReportCreated,
    "chargePoint.dataTransferReceived": ChargePointDataTransferReceived,
    "cdr.received": CdrReceived,
    "chargingProfile.applied": ChargingProfileApplied,
    "installerJob.changed": InstallerJobChanged,
}
"""Exact notification name -> its Struct, in the order of AMPECO's listing."""

DEPRECATED: frozenset[str] = frozenset(
    {
        "AuthorizationNotification",
        "ChargePointChangedNotification",
        "SessionStartStopNotification",
        "PartnerChangedNotification",
        "user.subscriptionChanged",
    }
)
"""Notification names AMPECO marks DEPRECATED (still delivered, still accepted)."""

# Where each event keeps its primary entity: (kind, dotted attribute path), first hit wins.
# Sessions come before charge points; a charge point before one of its EVSEs.
_SUBJECTS: dict[type[msgspec.Struct], tuple[tuple[str, str], ...]] = {
    AuthorizationNotification: (("authorization", "authorizationId"),),
    BootNotification: (("charge-point", "chargePointId"),),
    ChargePointChangedNotification: (("charge-point", "chargePoint.id"),),
    ChargePointChanged: (("charge-point", "chargePointId"),),
    EvseChanged: (("evse", "evseId"),),
    ChargePointSyncConfigurationNotification: (("charge-point", "chargePointId"),),
    CircuitConsumptionNotification: (("circuit", "circuitId"),),
    CircuitChanged: (("circuit", "circuitId"),),
    DiagnosticsStatusNotification: (("charge-point", "chargePointId"),),
    HardwareStatusNotification: (("charge-point", "chargePointId"), ("evse", "evseId")),
    LocationChangedNotification: (("location", "location.id"),),
    NetworkStatusNotification: (("charge-point", "chargePointId"),),
    SecurityEventNotification: (("charge-point", "chargePointId"),),
    SessionMeterValuesNotification: (("session", "sessionId"),),
    SessionStartStopNotification: (("session", "sessionId"),),
    SessionStartStopNotificationV2: (("session", "sessionId"),),
    SessionUpdateNotification: (("session", "session.id"),),
    UserChangedNotification: (("user", "user.id"),),
    UserInvoiceDetailsChanged: (("user", "userId"),),
    PartnerChangedNotification: (("partner", "user.id"),),
    ParkingSpaceOccupancyStatusChanged: (("parking-space", "parkingSpaceId"),),
    PartnerChanged: (("partner", "partnerId"),),
    AuthorizationChanged: (("authorization", "authorizationId"),),
    SubOperatorChangedNotification: (("sub-operator", "subOperator.id"),),
    TariffChangedNotification: (("tariff", "tariff.id"),),
    ReservationChanged: (("reservation", "reservationId"),),
    UserPaymentMethodChanged: (("user", "userId"),),
    PartnerInviteChanged: (("partner-invite", "partnerInviteId"),),
    UserSubscriptionChanged: (("user", "userId"),),
    UserSubscriptionChangedV2: (("user", "userId"),),
    IdTagChanged: (("id-tag", "idTagsId"),),
    RoamingPlatformChanged: (("roaming-platform", "roamingPlatformId"),),
    UserBalanceChanged: (("user", "userId"),),
    TransactionChanged: (("transaction", "transactionId"),),
    SettlementReportCreated: (("settlement-report", "id"),),
    ChargePointDataTransferReceived: (("charge-point", "chargePointId"),),
    CdrReceived: (("cdr", "id"),),
    ChargingProfileApplied: (
        ("session", "sessionId"),
        ("charge-point", "chargePointId"),
        ("evse", "evseId"),
    ),
    InstallerJobChanged: (("installer-job", "id"),),
}

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
