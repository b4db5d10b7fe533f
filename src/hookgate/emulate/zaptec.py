"""Zaptec Cloud: fetch a token (or use Basic), post a session start, then its end."""

from __future__ import annotations

import base64
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from hookgate.emulate.base import Sent, encode, observe, post, response_json


def _case(document: dict[str, Any], case: str) -> dict[str, Any]:
    if case == "pascal":
        return document
    return {key[0].lower() + key[1:]: value for key, value in document.items()}


def charge(rng: random.Random) -> tuple[timedelta, float]:
    """How long a plug-in lasted (20 minutes to 8 hours) and the kWh it charged: a Zaptec
    charger gives 3.7 to 22 kW, for part of the time plugged in, at most 80 kWh."""
    plugged = timedelta(minutes=rng.randint(20, 480))
    power_kw = rng.choice((3.7, 7.4, 11.0, 22.0))
    charging_hours = plugged.total_seconds() / 3600 * rng.uniform(0.5, 0.95)
    return plugged, round(min(max(power_kw * charging_hours, 2.0), 80.0), 3)


class ZaptecEmulator:
    """Behaves like a Zaptec installation configured for webhook authentication."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        source: str,
        *,
        username: str,
        password: str,
        auth: str = "oauth",
        case: str = "pascal",
    ) -> None:
        self.client = client
        self.hooks = f"{base_url.rstrip('/')}/hooks/{source}"
        self.username = username
        self.password = password
        self.auth = auth
        self.case = case
        self._token: str | None = None

    async def authenticate(self, *, refresh: bool = False) -> str:
        """The Authorization header: a fresh OAuth token (password grant) or Basic."""
        if self.auth == "basic":
            raw = f"{self.username}:{self.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if self._token is None or refresh:
            response = await self.client.post(
                f"{self.hooks}/oauth/token",
                data={
                    "grant_type": "password",
                    "username": self.username,
                    "password": self.password,
                },
            )
            if response.status_code != 200:
                raise TokenRefused(response.status_code, response_json(response))
            self._token = str(response.json()["access_token"])
        return f"Bearer {self._token}"

    async def _post(self, route: str, label: str, document: dict[str, Any]) -> Sent:
        body = encode(_case(document, self.case))
        for attempt in (1, 2):
            headers = {
                "Authorization": await self.authenticate(refresh=attempt == 2),
                "Content-Type": "application/json",
            }
            sent = await post(self.client, "zaptec", label, f"{self.hooks}/{route}", body, headers)
            if sent.status != 401 or self.auth == "basic":
                sent.attempts = attempt
                return sent
        return sent

    async def session(
        self,
        *,
        token: str | None = None,
        charger: str | None = None,
        installation: str | None = None,
        energy_kwh: float | None = None,
        duplicate: bool = False,
        at: datetime | None = None,
    ) -> list[Sent]:
        """One plug-in: start, and (when approved) the end with the sessionId received."""
        charger_id = charger or str(uuid.uuid4())
        start_doc = {
            "ChargerId": charger_id,
            "DeviceId": f"ZAP{random.randint(100000, 999999)}",  # noqa: S311
            "InstallationId": installation or str(uuid.uuid4()),
            "UserId": str(uuid.uuid4()),
            "TokenId": token or f"RFID-{random.randint(10**7, 10**8 - 1):X}",  # noqa: S311
        }
        results = [await self._post("session-start", "session-start", start_doc)]
        start = results[0]
        if start.status != 200 or not isinstance(start.response, dict):
            return results
        session_id = start.response.get("sessionId")
        ended = (at or datetime.now(UTC)).replace(microsecond=0)
        plugged, drawn = charge(random.Random())  # noqa: S311
        started = ended - plugged
        energy = energy_kwh if energy_kwh is not None else drawn
        end_doc = {
            "SessionId": session_id,
            "ChargerId": charger_id,
            "DeviceId": start_doc["DeviceId"],
            "InstallationId": start_doc["InstallationId"],
            "UserId": start_doc["UserId"],
            "TokenId": start_doc["TokenId"],
            "StartDateTime": started.isoformat().replace("+00:00", "Z"),
            "EndDateTime": ended.isoformat().replace("+00:00", "Z"),
            "Energy": energy,
            "SignedSession": 'OCMF|{"FV":"1.0","GI":"ZAPTEC GO"}|{"SA":"ECDSA-secp384r1-SHA256"}',
        }
        results.append(await self._post("session-end", "session-end", end_doc))
        if duplicate:
            results.append(await self._post("session-end", "session-end (again)", end_doc))
        return results


class TokenRefused(RuntimeError):
    """The token endpoint did not issue a token."""

    def __init__(self, status: int, response: Any) -> None:
        super().__init__(f"token endpoint answered {status}: {response}")
        self.status, self.response = status, response


async def run(
    client: httpx.AsyncClient,
    base_url: str,
    source: str,
    *,
    username: str,
    password: str,
    auth: str = "oauth",
    count: int = 1,
    duplicate: bool = False,
    case: str = "pascal",
    token: str | None = None,
    charger: str | None = None,
    at: datetime | None = None,
) -> list[Sent]:
    """`count` plug-in cycles, one after another, each ending at `at` (default: now)."""
    emulator = ZaptecEmulator(
        client, base_url, source, username=username, password=password, auth=auth, case=case
    )
    results: list[Sent] = []
    for _ in range(count):
        try:
            results.extend(
                await emulator.session(token=token, charger=charger, duplicate=duplicate, at=at)
            )
        except TokenRefused as exc:
            results.append(observe(Sent("zaptec", "token", exc.status, exc.response)))
            break
        except (RuntimeError, httpx.HTTPError) as exc:
            results.append(observe(Sent("zaptec", "token", None, error=str(exc))))
            break
    return results
