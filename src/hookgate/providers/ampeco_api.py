"""AMPECO's public API, read after a thin notification (ADR 0026).

`cdr.received`, `transaction.changed` and `chargePoint.changed` carry only an id; the
billing record, the payment and the charge point are read from
`/public-api/resources/...` with the source's API token, then turned into the same facts
as a full notification. This module knows AMPECO's paths and shapes; when and how often
to call is the fetch worker's business (processing/fetcher.py).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from hookgate.domain.facts import ChargePointFact, ChargingSessionFact, Fact, ObjectStateFact
from hookgate.timeutil import parse_iso, utcnow

# Notification kind (processing's ReferenceFact.kind) to the API path that reads it.
PATHS = {
    "cdr": "/public-api/resources/cdrs/v2.0/{id}",
    "transaction": "/public-api/resources/transactions/v1.0/{id}",
    "chargePoint": "/public-api/resources/charge-points/v2.0/{id}",
}
_CDR_LIST = "/public-api/resources/cdrs/v2.0"
# A transaction's states, in AMPECO's progression; the last four are final.
_TRANSACTION_RANK = {
    "initialized": 0,
    "pending": 1,
    "authorized": 2,
    "finalized": 3,
    "failed": 3,
    "reversed": 4,
    "refunded": 4,
}
_FINAL = frozenset({"finalized", "failed", "reversed", "refunded"})
# OCPI CDR totals that are parts of the total cost, and the quantity that goes with each.
_COMPONENTS = (
    ("energy", "totalEnergyCost", "totalEnergy", "kWh"),
    ("time", "totalTimeCost", "totalTime", "h"),
    ("parking", "totalParkingCost", "totalParkingTime", "h"),
    ("fixed", "totalFixedCost", None, None),
)


class FetchError(Exception):
    """A read that did not return the object. `retryable`: the same request may work
    later (429, 5xx, a network error); `retry_after`: seconds the API asked to wait."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class AmpecoApi:
    """A client of one tenant's public API (bearer token)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch(self, kind: str, ref_id: str) -> dict[str, Any]:
        """The object `kind`/`ref_id` as the API returns it; FetchError otherwise."""
        template = PATHS.get(kind)
        if template is None:
            raise FetchError(f"no AMPECO API path reads a {kind!r}", retryable=False)
        if ref_id.isascii() and ref_id.isdigit():
            body = await self._get(template.format(id=ref_id), None)
        elif kind == "cdr":
            # `cdr.received` names a CDR by its roaming id (`DE-AMP-...`): the listing
            # filtered by it finds the record.
            listing = await self._get(_CDR_LIST, {"filter[roamingId]": ref_id})
            found = [
                item
                for item in listing.get("data") or []
                if isinstance(item, dict) and str(item.get("roamingId")) == ref_id
            ]
            if not found:
                raise FetchError(f"no CDR with roaming id {ref_id!r}", retryable=False)
            body = {"data": found[0]}
        else:
            raise FetchError(f"{kind} id {ref_id!r} is not an AMPECO id", retryable=False)
        return body

    async def _get(self, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = await self._client.get(path, params=params)
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError as exc:
                raise FetchError("200 with a body that is not JSON", retryable=True) from exc
            if not isinstance(body, dict):
                raise FetchError("200 with a body that is not an object", retryable=True)
            return body
        message = f"HTTP {response.status_code}: {_message(response)}"
        retryable = response.status_code == 429 or response.status_code >= 500
        raise FetchError(message, retryable=retryable, retry_after=_retry_after(response))


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", ""))[:200] if isinstance(body, dict) else ""


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (a number or an HTTP date), capped at an hour."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - utcnow()).total_seconds()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), 3600.0)


# -- fetched objects to facts ---------------------------------------------------------


def _decimal(value: Any) -> str | None:
    """A plain decimal string of a JSON number; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _when(value: Any) -> datetime | None:
    try:
        return parse_iso(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _data(document: dict[str, Any]) -> dict[str, Any]:
    """The resource: AMPECO wraps most in `data`, transactions not."""
    inner = document.get("data")
    return inner if isinstance(inner, dict) else document


def facts_of(kind: str, document: dict[str, Any], received_at: datetime) -> list[Fact]:
    """The facts an object read from the API carries (empty when it names nothing)."""
    data = _data(document)
    if kind == "cdr":
        return _cdr(data, received_at)
    if kind == "transaction":
        return _transaction(data, received_at)
    if kind == "chargePoint":
        return _charge_point(data, received_at)
    return []


def cost_components(ocpi: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of an OCPI CDR's total cost that it states (zero parts included)."""
    parts = []
    for name, cost_key, quantity_key, unit in _COMPONENTS:
        amount = _decimal(ocpi.get(cost_key))
        if amount is None:
            continue
        quantity = _decimal(ocpi.get(quantity_key)) if quantity_key else None
        parts.append({"type": name, "amount": amount, "quantity": quantity, "unit": unit})
    return parts


def _cdr(data: dict[str, Any], received_at: datetime) -> list[Fact]:
    session_id = data.get("sessionId")
    if session_id in (None, ""):
        return []
    ocpi = data.get("ocpiData") if isinstance(data.get("ocpiData"), dict) else {}
    assert isinstance(ocpi, dict)
    token = ocpi.get("cdrToken") if isinstance(ocpi.get("cdrToken"), dict) else {}
    assert isinstance(token, dict)
    if data.get("credit") is True:
        # A credit CDR cancels (part of) the original's amount: the session keeps the
        # original's cost and is marked; the credit is its own line in reconciliation.
        return [
            ChargingSessionFact(
                keys=(str(session_id),),
                occurred_at=_when(data.get("receivedAt")) or received_at,
                flags=("credited",),
            )
        ]
    started, ended = _when(data.get("startTime")), _when(data.get("endTime"))
    cost = _decimal(ocpi.get("totalCost"))
    components = cost_components(ocpi)
    uid = token.get("uid")
    return [
        ChargingSessionFact(
            keys=(str(session_id),),
            occurred_at=_when(data.get("receivedAt")) or ended or received_at,
            status="ended" if ended else None,
            token=uid if isinstance(uid, str) and uid else None,
            started_at=started,
            ended_at=ended,
            energy_kwh=_decimal(ocpi.get("totalEnergy")),  # OCPI: kWh
            cost=cost,
            currency=ocpi.get("currency") if cost is not None else None,
            cost_components=components or None,
            flags=("cdr",),
        )
    ]


def _transaction(data: dict[str, Any], received_at: datetime) -> list[Fact]:
    transaction_id, status = data.get("id"), data.get("status")
    if transaction_id is None or not isinstance(status, str):
        return []
    at = _when(data.get("lastUpdatedAt")) or _when(data.get("date")) or received_at
    facts: list[Fact] = [
        ObjectStateFact(
            object_type="payment",
            object_id=f"transaction:{transaction_id}",
            state=status,
            final=status in _FINAL,
            known=status in _TRANSACTION_RANK,
            rank=_TRANSACTION_RANK.get(status),
        )
    ]
    session_id = data.get("sessionId")
    amount = _decimal(data.get("totalAmount"))
    if (
        data.get("purchaseResourceType") == "session"
        and session_id is not None
        and status == "finalized"
        and amount is not None
    ):
        facts.append(
            ChargingSessionFact(
                keys=(str(session_id),),
                occurred_at=at,
                cost=amount,
                currency=data.get("currency"),
            )
        )
    return facts


def _charge_point(data: dict[str, Any], received_at: datetime) -> list[Fact]:
    cp_id = data.get("id")
    if cp_id is None:
        return []

    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None or value == "" else str(value)

    return [
        ChargePointFact(
            charge_point_id=str(cp_id),
            occurred_at=_when(data.get("lastUpdatedAt")) or received_at,
            name=text("name"),
            network_status=text("networkStatus"),
            hardware_status=text("hardwareStatus"),
            status=text("status"),
            location_id=text("locationId"),
        )
    ]
