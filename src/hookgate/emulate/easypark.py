"""EasyPark Fleet: parking transactions, Basic or API key, retried until 2xx or 409."""

from __future__ import annotations

import asyncio
import base64
import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx

from hookgate.emulate.base import OBSERVER, Sent, encode, post

_AREAS = [
    (291048, "Nyköpings lasarett, besökande", 403, "EuroPark Svenska AB"),
    (118202, "Stockholm Centralstation P-hus", 17, "Q-Park AB"),
    (540017, "Göteborg Nordstan", 88, "Parkering Göteborg"),
]


def _stamp(moment: datetime, offset_hours: int) -> str:
    """EasyPark's `yyyy-MM-dd'T'HH:mm:ssX`: `Z`, or the offset in hours (`+01`)."""
    if not offset_hours:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    local = moment.astimezone(timezone(timedelta(hours=offset_hours)))
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{offset_hours:+03d}"


def transaction(
    parking_id: int,
    *,
    end: datetime | None = None,
    legacy: bool = False,
    seed: int = 0,
    start: datetime | None = None,
    price: Decimal | None = None,
    plate: str | None = None,
    area: int | None = None,
    offset_hours: int = 0,
) -> dict[str, Any]:
    """A realistic completed paid parking that ended at ``end`` (default: now): 15 minutes
    to 10 hours, a fee that grows with the time parked, a VAT split (25 %) that adds up. The keyword
    arguments pin what is otherwise drawn from ``parking_id`` (the contract fixtures do);
    ``legacy`` is the feed without `parkingUserId`, ``offset_hours`` writes local times."""
    rng = random.Random(parking_id + seed)  # noqa: S311
    end = (end or datetime.now(UTC)).astimezone(UTC)
    minutes = rng.randint(15, 600)
    if start is None:
        start = end - timedelta(minutes=minutes, seconds=rng.randint(0, 59))
    # SEK 12-30 an hour, at least SEK 5.
    hourly = Decimal(rng.randint(1200, 3000)) / 100
    if price is None:
        price = max((hourly * minutes / 60).quantize(Decimal("0.01")), Decimal("5.00"))
    where = _AREAS[parking_id % len(_AREAS) if area is None else area]
    net = (price / Decimal("1.25")).quantize(Decimal("0.01"))
    fee = Decimal("4.95")
    fee_net = Decimal("3.96")
    document: dict[str, Any] = {
        "parkingId": parking_id,
        "parkingUserId": 8993734,
        "licenseNumber": plate
        or f"{'ABCDEFGHJK'[parking_id % 10]}{'LMNOPRSTUW'[parking_id // 10 % 10]}"
        f"X{parking_id % 1000:03d}",
        "startDate": _stamp(start, offset_hours),
        "endDate": _stamp(end, offset_hours),
        "parkingAreaId": where[0],
        "parkingAreaName": where[1],
        "parkingOperatorId": where[2],
        "parkingOperatorName": where[3],
        "price": float(price),
        "priceVatAmount": float(price - net),
        "priceExclusiveVatAmount": float(net),
        "transactionFeeExclusiveVatAmount": float(fee_net),
        "transactionFeeVatAmount": float(fee - fee_net),
        "transactionFee": float(fee),
        "currency": "SEK",
    }
    if legacy:
        del document["parkingUserId"]
    return document


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    headers: dict[str, str],
    label: str,
    *,
    retry_interval: float,
    max_attempts: int,
) -> Sent:
    """Post until 2xx or 409 (EasyPark retries every other 4xx/5xx, hourly by default)."""
    attempt = 0
    while True:
        attempt += 1
        sent = await post(client, "easypark", label, url, body, headers)
        sent.attempts = attempt
        if sent.ok or attempt >= max_attempts:
            return sent
        observer = OBSERVER.get()
        if observer is not None:
            observer.retrying(sent, attempt, max_attempts, retry_interval)
        await asyncio.sleep(retry_interval)


async def run(
    client: httpx.AsyncClient,
    base_url: str,
    source: str,
    *,
    auth: str = "basic",
    username: str = "",
    password: str = "",
    api_key_header: str = "X-Api-Key",
    api_key: str = "",
    count: int = 1,
    duplicate: bool = False,
    legacy: bool = False,
    retry_interval: float = 3600.0,
    max_attempts: int = 24,
    first_id: int | None = None,
    at: datetime | None = None,
) -> list[Sent]:
    """`count` transactions that ended around `at` (default: now), a few minutes apart;
    with `duplicate`, each delivered twice (the second gets 409)."""
    url = f"{base_url.rstrip('/')}/hooks/{source}"
    headers = {"Content-Type": "application/json"}
    if auth == "basic":
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        )
    else:
        headers[api_key_header] = api_key
    base = first_id if first_id is not None else random.randint(10**9, 9 * 10**9)  # noqa: S311
    results = []
    moment = at or datetime.now(UTC)
    for i in range(count):
        # EasyPark reports a parking as soon as it is paid: it ended just before.
        end = moment - timedelta(minutes=1 + i * 3 % (24 * 60))
        document = transaction(base + i, end=end.replace(microsecond=0), legacy=legacy)
        body = encode(document)
        for _ in range(2 if duplicate else 1):
            results.append(
                await deliver(
                    client,
                    url,
                    body,
                    headers,
                    f"parking {document['parkingId']}",
                    retry_interval=retry_interval,
                    max_attempts=max_attempts,
                )
            )
    return results
