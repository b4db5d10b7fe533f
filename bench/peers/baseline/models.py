"""pydantic v2 models of what the providers send (see /work/shared/contracts/README.md).

AMPECO has about forty notification types; the ones a team acts on (sessions, meter
values, CDRs) are modelled field by field, every other type is accepted through the
envelope with its extra fields kept. Unknown fields are kept everywhere (`extra="allow"`)
so that nothing the provider sent is lost from `document`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- AMPECO ------------------------------------------------------------------------------


class AmpecoNotification(_Open):
    """Every AMPECO body names its type in `notification`."""

    notification: str


class Money(_Open):
    withTax: Decimal
    withoutTax: Decimal


class ChargingPeriod(_Open):
    id: int
    energy: int
    startedAt: datetime
    stoppedAt: datetime | None = None
    state: str


class AmpecoSession(_Open):
    id: str
    chargePointId: int
    evseId: int
    status: str
    userId: int | None = None
    startedAt: datetime
    stoppedAt: datetime | None = None
    energy: int
    amount: Decimal | None = None
    totalAmount: Money | None = None
    currency: str | None = None
    idTag: str | None = None
    chargingPeriods: list[ChargingPeriod] = []
    lastUpdatedAt: datetime | None = None


class SessionUpdate(AmpecoNotification):
    session: AmpecoSession


class SessionStartStop(AmpecoNotification):
    sessionId: int
    userId: int | None = None
    chargePointId: int
    evseId: int
    idTag: str | None = None
    action: Literal["start", "stop"]
    meterStart: int
    meterStop: int
    energyConsumed: int | None = None
    startedAtTimestamp: datetime | None = None
    stoppedAtTimestamp: datetime | None = None
    reason: str | None = None


class MeterValue(_Open):
    timestamp: datetime
    measurand: str
    value: float
    unit: str


class SessionMeterValues(AmpecoNotification):
    chargePointId: int
    evseId: int
    sessionId: int
    meterValues: list[MeterValue]


class CdrReceived(AmpecoNotification):
    id: str
    createdAt: datetime


AMPECO_MODELS: dict[str, type[AmpecoNotification]] = {
    "SessionUpdateNotification": SessionUpdate,
    "SessionStartStopNotification": SessionStartStop,
    "session.start.stop.notification": SessionStartStop,
    "SessionMeterValuesNotification": SessionMeterValues,
    "cdr.received": CdrReceived,
}


# -- EasyPark ----------------------------------------------------------------------------


class ParkingTransaction(_Open):
    """A completed paid parking; amounts are Decimal from parse to storage."""

    parkingId: int
    parkingUserId: int | None = None  # absent in the legacy feed
    licenseNumber: str = Field(min_length=1)
    startDate: datetime
    endDate: datetime
    parkingAreaId: int | None = None
    parkingAreaName: str | None = None
    parkingOperatorId: int | None = None
    parkingOperatorName: str | None = None
    price: Decimal
    priceVatAmount: Decimal
    priceExclusiveVatAmount: Decimal
    transactionFeeExclusiveVatAmount: Decimal | None = None
    transactionFeeVatAmount: Decimal | None = None
    transactionFee: Decimal | None = None
    currency: str = Field(pattern=r"^[A-Z]{3}$")


# -- ZTLment -----------------------------------------------------------------------------


class ObjectState(_Open):
    id: int
    type: Literal["PAYMENT_OBJECT", "APPROVAL_OBJECT"]
    state: str = Field(min_length=1)


# -- Zaptec ------------------------------------------------------------------------------


class SessionStart(_Open):
    """Zaptec's API is .NET: PascalCase keys."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    charger_id: str = Field(alias="ChargerId")
    device_id: str | None = Field(default=None, alias="DeviceId")
    installation_id: str | None = Field(default=None, alias="InstallationId")
    user_id: str | None = Field(default=None, alias="UserId")
    token_id: str | None = Field(default=None, alias="TokenId")
