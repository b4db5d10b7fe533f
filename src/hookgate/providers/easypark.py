"""EasyPark Fleet (CameraPark) parking transactions: Basic or API key, 409 for duplicates."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from hookgate.config import EasyParkSource
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import Fact, ParkingFact
from hookgate.domain.money import amount_problem
from hookgate.providers.base import (
    Answer,
    Call,
    Parsed,
    Provider,
    decode,
    problem_answer,
    unauthorized,
)
from hookgate.verify import any_equal, basic_matches

_TOLERANCE = Decimal("0.01")
_OFFSET_HOURS = re.compile(r"([+-]\d{2})$")
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
_AMOUNTS = (
    "price",
    "priceVatAmount",
    "priceExclusiveVatAmount",
    "transactionFeeExclusiveVatAmount",
    "transactionFeeVatAmount",
    "transactionFee",
)


def parse_instant(text: str) -> datetime:
    """`yyyy-MM-dd'T'HH:mm:ssX`: Z, +01, +0100 or +01:00."""
    value = _OFFSET_HOURS.sub(r"\1:00", text.strip())
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    try:
        moment.astimezone(UTC)  # the views store UTC: it must exist there too
    except OverflowError:
        raise ValueError(f"{text!r} is out of the range of UTC instants") from None
    return moment


class ParkingTransaction(msgspec.Struct, kw_only=True):
    """The body EasyPark posts when a paid parking session completes."""

    parkingId: int
    parkingUserId: int | None = None  # absent in the legacy feed
    licenseNumber: str
    startDate: str
    endDate: str
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
    currency: Currency

    def __post_init__(self) -> None:
        if not self.licenseNumber.strip():
            raise ValueError("licenseNumber must not be empty")
        for name in _AMOUNTS:
            value = getattr(self, name)
            problem = None if value is None else amount_problem(value)
            if problem is not None:
                raise ValueError(f"{name}: {problem}")
        try:
            start, end = parse_instant(self.startDate), parse_instant(self.endDate)
        except ValueError as exc:
            raise ValueError(f"startDate/endDate must be yyyy-MM-dd'T'HH:mm:ssX: {exc}") from None
        if end < start:
            raise ValueError("endDate is before startDate")


def _adds_up(total: Decimal | None, net: Decimal | None, vat: Decimal | None) -> bool:
    if total is None or net is None or vat is None:
        return True
    return abs(total - (net + vat)) <= _TOLERANCE


class EasyPark(Provider[EasyParkSource]):
    """Dedup on parkingId; a duplicate answers 409 so EasyPark stops retrying."""

    name = "easypark"
    secret_issuer = "the credentials agreed with EasyPark"
    resend = (
        "EasyPark retries a refused delivery every hour until it is accepted, so it arrives "
        "again once the configuration is fixed"
    )

    @classmethod
    def starter(cls, secret: str) -> str:
        return (
            '[[sources]]\nname = "easypark"\nprovider = "easypark"\nauth = "basic"\n'
            f'username = "easypark"\npassword = "{secret}"\non_invalid = "reject"\n'
        )

    @classmethod
    def portal(cls, url: str, secret: str, config_name: str) -> str:
        return f"""\
EasyPark Fleet: give your EasyPark partner contact the endpoint and its credentials.
     Endpoint                {url}/hooks/easypark
     HTTP Basic              easypark / {secret}"""

    def guessable(self, source: EasyParkSource) -> bool:
        return True

    def secret_headers(self, source: EasyParkSource) -> frozenset[str]:
        return (
            frozenset({source.api_key_header.lower()}) if source.auth == "api_key" else frozenset()
        )

    def authenticate(self, source: EasyParkSource, call: Call) -> None:
        # Without credentials every call fails as a wrong credential would: the caller is
        # not told that the source is misconfigured; the operator is (the note).
        note = (
            None
            if source.credentials()
            else f"source {source.name!r} has no credentials configured"
        )
        if source.auth == "basic":
            if note or not basic_matches(
                call.headers.get("authorization"), source.username, [source.password]
            ):
                raise unauthorized(
                    "HTTP Basic credentials are missing or wrong",
                    'Basic realm="hookgate"',
                    note=note,
                )
            return
        key = call.headers.get(source.api_key_header.lower())
        if not key:
            raise unauthorized(f"the {source.api_key_header} header is missing", note=note)
        if note or not any_equal(key, source.api_keys):
            raise unauthorized(f"the {source.api_key_header} API key is wrong", note=note)

    def parse(self, source: EasyParkSource, call: Call) -> Parsed:
        tx = decode(call.body, ParkingTransaction)
        flags = []
        if not _adds_up(tx.price, tx.priceExclusiveVatAmount, tx.priceVatAmount):
            flags.append("price_inconsistent")
        if not _adds_up(
            tx.transactionFee, tx.transactionFeeExclusiveVatAmount, tx.transactionFeeVatAmount
        ):
            flags.append("fee_inconsistent")
        if tx.parkingUserId is None:
            flags.append("legacy_feed")
        document = msgspec.to_builtins(tx)
        document["startDate"] = parse_instant(tx.startDate).isoformat()
        document["endDate"] = parse_instant(tx.endDate).isoformat()
        document["consistent"] = not any(f.endswith("_inconsistent") for f in flags)
        return Parsed(
            event_type="parking.completed",
            dedup_key=f"parking:{tx.parkingId}",
            document=document,
            subject=f"parking/{tx.parkingId}",
            flags=flags,
        )

    def duplicate(self, event_id: str) -> Answer:
        return problem_answer(
            409,
            {
                "type": "urn:hookgate:problem:duplicate",
                "title": "Conflict",
                "status": 409,
                "detail": "this parking transaction was already received",
                "event_id": event_id,
            },
        )

    def facts(self, event: StoredEvent) -> list[Fact]:
        """The transaction with its amounts as decimal strings and the consistency flag
        `parse` worked out (a quarantined body says nothing until it is re-parsed)."""
        doc = event.document
        if event.event_type != "parking.completed" or not isinstance(doc, dict):
            return []
        return [
            ParkingFact(
                parking_id=str(doc["parkingId"]),
                license_number=doc["licenseNumber"],
                started_at=parse_instant(doc["startDate"]),
                ended_at=parse_instant(doc["endDate"]),
                currency=doc["currency"],
                price=_amount(doc["price"]),
                price_vat=_amount(doc["priceVatAmount"]),
                price_excl_vat=_amount(doc["priceExclusiveVatAmount"]),
                fee=_maybe_amount(doc.get("transactionFee")),
                fee_vat=_maybe_amount(doc.get("transactionFeeVatAmount")),
                fee_excl_vat=_maybe_amount(doc.get("transactionFeeExclusiveVatAmount")),
                parking_user_id=_maybe_text(doc.get("parkingUserId")),
                area_id=_maybe_text(doc.get("parkingAreaId")),
                area_name=doc.get("parkingAreaName"),
                operator_id=_maybe_text(doc.get("parkingOperatorId")),
                operator_name=doc.get("parkingOperatorName"),
                consistent=bool(doc.get("consistent", True)),
                flags=tuple(event.flags),
            )
        ]


def _amount(value: Any) -> str:
    """The amount exactly as EasyPark wrote it (the stored document keeps it as text)."""
    return str(Decimal(str(value)))


def _maybe_amount(value: Any) -> str | None:
    return None if value is None else _amount(value)


def _maybe_text(value: Any) -> str | None:
    return None if value is None else str(value)
