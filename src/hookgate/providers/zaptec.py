"""Zaptec charging-session authorization: session start (decide) and session end (log).

Zaptec does not publish its field names; its API is .NET (PascalCase). Keys are matched
case-insensitively, with the known aliases, and the raw body is always kept.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from hookgate.config import ZaptecSource
from hookgate.domain.decisions import SessionEnd
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import ChargingSessionFact, Fact
from hookgate.domain.money import amount_problem
from hookgate.oauth import TokenIssuer
from hookgate.providers.base import (
    Answer,
    Call,
    Parsed,
    Provider,
    Reject,
    RouteKind,
    StartRequest,
    decode,
    json_answer,
    unauthorized,
)
from hookgate.timeutil import parse_iso
from hookgate.verify import basic_matches, bearer_token

ALIASES: dict[str, tuple[str, ...]] = {
    "charger_id": ("chargerid", "deviceid"),
    "token": ("tokenid", "authenticationcode", "idtag", "rfidtoken", "tokenname"),
    "user_id": ("userid",),
    "installation_id": ("installationid",),
    "session_id": ("sessionid",),
    "external_id": ("externalid",),
    "energy_kwh": ("energy",),
    "started_at": ("startdatetime",),
    "ended_at": ("enddatetime",),
    "signed_session": ("signedsession",),
}
_TEXT_FIELDS = ("charger_id", "token", "user_id", "installation_id", "session_id", "external_id")


def _schema(detail: str) -> Reject:
    return Reject(422, "schema-violation", "Unprocessable Content", detail)


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    """Pick the known fields whatever their case; ids become text, energy a Decimal string."""
    lowered = {key.lower(): value for key, value in body.items()}
    out: dict[str, Any] = {}
    for name, keys in ALIASES.items():
        for key in keys:
            value = lowered.get(key)
            if value is not None and value != "":
                out[name] = value
                break
    for name in _TEXT_FIELDS:
        value = out.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _schema(f"{name} must be a string or an integer")
        out[name] = str(value).strip()
    if "energy_kwh" in out:
        raw = out["energy_kwh"]
        try:
            if isinstance(raw, bool):
                raise InvalidOperation
            energy = Decimal(str(raw))
        except InvalidOperation:
            raise _schema("Energy must be a number of kWh") from None
        if not energy.is_finite() or energy < 0:
            raise _schema("Energy must be a non-negative number of kWh")
        problem = amount_problem(energy)
        if problem is not None:
            raise _schema(f"Energy: {problem}")
        out["energy_kwh"] = str(energy)
    for name in ("started_at", "ended_at"):
        if name in out:
            if not isinstance(out[name], str):
                raise _schema(f"{name} must be an ISO 8601 date-time")
            try:
                out[name] = parse_iso(out[name]).isoformat()
            except ValueError:
                raise _schema(f"{name} must be an ISO 8601 date-time") from None
    if "signed_session" in out and not isinstance(out["signed_session"], str):
        out["signed_session"] = str(out["signed_session"])
    return out


class Zaptec(Provider[ZaptecSource]):
    """Session start is decided synchronously; session end is logged once per session."""

    name = "zaptec"
    routes: ClassVar[dict[str, RouteKind]] = {
        "session-start": "authorize",
        "session-end": "session_end",
        "oauth/token": "token",
    }

    credential_bodies = True
    secret_issuer = "the password entered in the Zaptec Portal"
    resend = (
        "Zaptec does not send a session start or end again: a refused start meant no "
        "charging (the driver plugs in again), and a refused end's data stays in the Zaptec "
        "Portal"
    )

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    @classmethod
    def create(cls, issuer: Any) -> Zaptec:
        return cls(issuer)

    @classmethod
    def starter(cls, secret: str) -> str:
        return (
            '[[sources]]\nname = "zaptec"\nprovider = "zaptec"\nauth = "oauth"\n'
            f'username = "zaptec"\npassword = "{secret}"\nunknown_token = "deny"\n'
            'on_error = "deny"\n'
        )

    @classmethod
    def portal(cls, url: str, secret: str, config_name: str) -> str:
        return f"""\
Zaptec: Zaptec Portal > your installation > Authentication tab > Webhook authentication
     Authentication URL      {url}/hooks/zaptec/oauth/token
     Authentication payload  grant_type=password&username=zaptec&password={secret}
     Session start URL       {url}/hooks/zaptec/session-start
     Session end URL         {url}/hooks/zaptec/session-end"""

    def guessable(self, source: ZaptecSource) -> bool:
        return source.auth == "basic"

    def authenticate(self, source: ZaptecSource, call: Call) -> None:
        # Without credentials every call fails as a wrong credential would: the caller is
        # not told that the source is misconfigured; the operator is (the note).
        note = (
            None
            if source.credentials()
            else f"source {source.name!r} has no credentials configured"
        )
        header = call.headers.get("authorization")
        if source.auth == "basic":
            if note or not basic_matches(header, source.username, [source.password]):
                raise unauthorized(
                    "HTTP Basic credentials are missing or wrong",
                    'Basic realm="hookgate"',
                    note=note,
                )
            return
        token = bearer_token(header)
        if token is None:
            raise unauthorized(
                "a bearer token from the token endpoint is required",
                'Bearer realm="hookgate"',
                note=note,
            )
        problem = self.issuer.check(source, token)
        if problem is None and note:
            problem = "the access token was not issued for this source or its credentials changed"
        if problem is not None:
            raise unauthorized(
                problem,
                f'Bearer realm="hookgate", error="invalid_token", error_description="{problem}"',
                note=note,
            )

    def parse(self, source: ZaptecSource, call: Call) -> Parsed:
        body = decode(call.body, dict[str, Any])
        fields = _normalise(body)
        if call.route == "session-start":
            if "charger_id" not in fields:
                raise _schema("session start needs ChargerId (or DeviceId)")
            return Parsed(
                event_type="session.start",
                dedup_key="start:" + uuid.uuid4().hex,
                document=fields,
                subject=f"charger/{fields['charger_id']}",
            )
        session = fields.get("session_id") or fields.get("external_id")
        if not session:
            raise _schema("session end needs SessionId (or ExternalId)")
        return Parsed(
            event_type="session.end",
            dedup_key=f"end:{session}",
            document=fields,
            subject=f"session/{session}",
        )

    @staticmethod
    def start_request(parsed: Parsed) -> StartRequest:
        """The decision input of a parsed session start."""
        doc = parsed.document
        return StartRequest(
            doc.get("charger_id"), doc.get("token"), doc.get("user_id"), doc.get("installation_id")
        )

    @staticmethod
    def session_end(parsed: Parsed) -> SessionEnd:
        """The session an end closes: our sessionId may come back as SessionId or ExternalId."""
        doc = parsed.document
        ended: datetime | None = parse_iso(doc["ended_at"]) if "ended_at" in doc else None
        ids = [v for v in (doc.get("session_id"), doc.get("external_id")) if v]
        return SessionEnd(
            session_ids=ids,
            ended_at=ended,
            energy_kwh=doc.get("energy_kwh"),
            token=doc.get("token"),
            charger_id=doc.get("charger_id"),
            installation_id=doc.get("installation_id"),
            started_at=parse_iso(doc["started_at"]) if "started_at" in doc else None,
        )

    @staticmethod
    def approve(session_id: str) -> Answer:
        """Approval: 200 with the unique sessionId."""
        return json_answer(200, {"sessionId": session_id})

    @staticmethod
    def deny(source: ZaptecSource, reason: str, message: str) -> Answer:
        """Deny: never 2xx (403 unless the source says otherwise)."""
        return json_answer(
            source.deny_status, {"authorized": False, "reason": reason, "message": message}
        )

    def accepted(self, event_id: str) -> Answer:
        return json_answer(200, {"status": "recorded", "eventId": event_id})

    def facts(self, event: StoredEvent) -> list[Fact]:
        """An approved start opens a session under the sessionId hookgate issued (a denied
        start is no session); an end closes it, named by either id it carries."""
        doc: dict[str, Any] = event.document if isinstance(event.document, dict) else {}
        if event.event_type == "session.start":
            session_id = (event.decision or {}).get("session_id")
            if not session_id:
                return []
            return [
                ChargingSessionFact(
                    keys=(str(session_id),),
                    occurred_at=event.received_at,
                    status="active",
                    charger_id=doc.get("charger_id"),
                    installation_id=doc.get("installation_id"),
                    token=doc.get("token"),
                    user_id=doc.get("user_id"),
                    started_at=event.received_at,
                    opens=True,
                )
            ]
        if event.event_type != "session.end":
            return []
        keys = tuple(dict.fromkeys(v for v in (doc.get("session_id"), doc.get("external_id")) if v))
        if not keys:
            return []
        ended = _instant(doc.get("ended_at"))
        return [
            ChargingSessionFact(
                keys=keys,
                # On hookgate's clock, like the start's: the charger's times in the end call
                # then always outrank the provisional start time.
                occurred_at=event.received_at,
                status="ended",
                charger_id=doc.get("charger_id"),
                installation_id=doc.get("installation_id"),
                token=doc.get("token"),
                user_id=doc.get("user_id"),
                started_at=_instant(doc.get("started_at")),
                ended_at=ended or event.received_at,
                energy_kwh=doc.get("energy_kwh"),
                external_id=keys[1] if len(keys) > 1 else None,
                flags=("unmatched",) if "unmatched" in event.flags else (),
            )
        ]


def _instant(text: Any) -> datetime | None:
    """An instant `_normalise` stored (ISO text), or None."""
    return parse_iso(text) if isinstance(text, str) and text else None
