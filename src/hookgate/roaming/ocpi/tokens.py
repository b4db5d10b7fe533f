"""The OCPI Tokens module as hookgate's eMSP sends it, and the CPO's sessions and CDRs
as it receives them, over the same decision engine and audit as a Zaptec start.

A real-time authorization is a session start: `ChargingSessions.start` decides it within
the configured deadline, reserves against the token's budgets, and writes the call (as
an inbox event) with its decision before the answer. The approval's session id is the
`authorization_reference` the CPO quotes in its Session and CDR objects, so their end (a
COMPLETED or INVALID session, or a CDR) closes that session and releases its reservation
through `ChargingSessions.end`, with the energy charged counted against the budgets.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec

from hookgate.authorization.outcome import UNKNOWN
from hookgate.authorization.service import AuthorizationService
from hookgate.config import OcpiConfig, ZaptecSource
from hookgate.domain.decisions import Decision, SessionEnd
from hookgate.domain.events import InboundEvent, SessionEndResult
from hookgate.domain.rules import Token, normalise_uid
from hookgate.ids import new_id
from hookgate.providers.base import StartRequest
from hookgate.roaming.ocpi import models
from hookgate.services.sessions import ChargingSessions
from hookgate.store import roaming as sql
from hookgate.store.base import Store
from hookgate.timeutil import utcnow

PROVIDER = "ocpi"
# The most tokens one page of the token list holds (sent as X-Limit).
MAX_LIMIT = 1000
# Session states after which the CPO will not charge on the authorization again.
FINAL = ("COMPLETED", "INVALID")


def deciding_source(config: OcpiConfig) -> ZaptecSource:
    """The engine's view of OCPI as a source: tokens are hookgate's own, so an unknown
    one is refused (and answered 404 with status 2004)."""
    return ZaptecSource(
        name=config.source,
        unknown_token="deny",  # noqa: S106 - a policy, not a secret
        on_error=config.on_error,
        decision_deadline_ms=config.decision_deadline_ms,
    )


def utc(moment: datetime) -> datetime:
    """An OCPI DateTime as an aware UTC instant: one without a zone designator is UTC
    (OCPI 2.2.1, 16.1)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def ocpi_time(moment: datetime) -> datetime:
    """OCPI DateTime is string(25): whole seconds in UTC."""
    return moment.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class Authorized:
    """What a real-time authorization came to: None as `info` when the token is unknown."""

    decision: Decision
    info: models.AuthorizationInfo | None


class TokenDesk:
    """Token list, real-time authorization, and the CPO's session and CDR updates."""

    def __init__(
        self,
        config: OcpiConfig,
        store: Store,
        authorization: AuthorizationService,
        sessions: ChargingSessions,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.store = store
        self.authorization = authorization
        self.sessions = sessions
        self.source = deciding_source(config)
        self.clock = clock

    # -- the token list ----------------------------------------------------------------

    def ocpi_token(self, token: Token, updated_at: datetime) -> models.Token:
        """A token as OCPI shows it. `valid` says whether it may charge at all now
        (neither it nor its group blocked, within its validity); budgets and schedules
        are for the real-time authorization to apply."""
        now = self.clock()
        group = self.authorization.engine.groups.get(token.group_id) if token.group_id else None
        valid = (
            token.status == "valid"
            and (group is None or group.status == "valid")
            and (token.valid_until is None or now < token.valid_until)
            and (token.valid_from is None or now >= token.valid_from)
        )
        return models.Token(
            country_code=self.config.country_code,
            party_id=self.config.party_id,
            uid=token.uid,
            type=token.type,
            contract_id=token.uid,
            visual_number=token.label,
            issuer=self.config.business_name,
            group_id=token.group_id,
            valid=valid,
            whitelist=token.whitelist,
            last_updated=ocpi_time(updated_at),
        )

    async def page(
        self, date_from: datetime | None, date_to: datetime | None, offset: int, limit: int
    ) -> tuple[int, list[models.Token]]:
        """One page of the token list and the total it is part of."""
        total, rows = await self.store.sql_read(
            lambda conn: sql.token_page(conn, date_from, date_to, offset, limit)
        )
        return total, [
            self.ocpi_token(msgspec.json.decode(row.doc, type=Token), row.updated_at)
            for row in rows
        ]

    # -- real-time authorization ---------------------------------------------------------

    def _event(
        self,
        event_type: str,
        body: bytes,
        document: Any,
        subject: str | None,
        dedup_key: str | None = None,
        request_id: str | None = None,
    ) -> InboundEvent:
        event_id = new_id()
        return InboundEvent(
            id=event_id,
            source=self.config.source,
            provider=PROVIDER,
            event_type=event_type,
            received_at=self.clock(),
            dedup_key=dedup_key or event_id,
            raw_body=body,
            body_sha256=hashlib.sha256(body).hexdigest(),
            headers={},
            document=document,
            subject=subject,
            request_id=request_id,
        )

    async def authorize(
        self,
        party_id: str,
        uid: str,
        token_type: str,
        location: models.LocationReferences | None,
        body: bytes,
        request_id: str | None = None,
    ) -> Authorized:
        """Decide one real-time authorization and record it before answering."""
        began = time.perf_counter()
        wanted = normalise_uid(uid)
        token = self.authorization.engine.tokens.get(wanted)
        document = {
            "party": party_id,
            "token_uid": uid,
            "type": token_type,
            "location": msgspec.to_builtins(location) if location else None,
        }
        event = self._event("tokens.authorize", body, document, wanted, request_id=request_id)
        evse = location.evse_uids[0] if location and location.evse_uids else None
        request = StartRequest(
            charger_id=evse,
            token=wanted,
            user_id=None,
            installation_id=location.location_id if location else None,
        )
        if token is None or token.type != token_type:
            decision = Decision(
                id=new_id(),
                decided_at=self.clock(),
                source=self.source.name,
                event_id=event.id,
                charger_id=evse,
                token=wanted,
                user_id=None,
                installation_id=request.installation_id,
                result=UNKNOWN,
                reasons=[f"token {wanted} of type {token_type} is not one hookgate issued"],
                session_id=None,
                latency_us=int((time.perf_counter() - began) * 1e6),
            )
            await self.store.record_session_start(event, decision)
            self.sessions.metrics.decisions.labels(self.source.name, UNKNOWN, "false").inc()
            return Authorized(decision, None)
        started = await self.sessions.start(self.source, request, event, began)
        decision = started.decision
        updated_at = await self._updated_at(token.uid)
        info = models.AuthorizationInfo(
            allowed=decision.result if decision.result != UNKNOWN else "NOT_ALLOWED",  # type: ignore[arg-type]
            token=self.ocpi_token(token, updated_at),
            location=location,
            authorization_reference=decision.session_id,
            info=None
            if started.outcome.allowed
            else models.DisplayText(language="en", text=started.message[:512]),
        )
        return Authorized(decision, info)

    async def _updated_at(self, uid: str) -> datetime:
        changed = await self.store.sql_read(lambda conn: sql.token_updated(conn, uid))
        return changed or self.clock()

    # -- the CPO's sessions and CDRs -------------------------------------------------------

    @staticmethod
    def session_prefix(country_code: str, party_id: str, session_id: str) -> str:
        """The start of the dedup keys of every stored version of one Session."""
        return f"session:{country_code}:{party_id}:{session_id}:"

    @staticmethod
    def cdr_key(country_code: str, party_id: str, cdr_id: str) -> str:
        return f"cdr:{country_code}:{party_id}:{cdr_id}"

    async def stored_session(self, country_code: str, party_id: str, session_id: str) -> Any:
        """The last version of a Session the CPO pushed (PUT or PATCH), or None."""
        prefix = self.session_prefix(country_code, party_id, session_id)
        return await self.store.sql_read(
            lambda conn: sql.latest_document(conn, self.config.source, prefix)
        )

    async def stored_cdr(self, country_code: str, party_id: str, cdr_id: str) -> Any:
        """A CDR the CPO pushed, or None."""
        key = self.cdr_key(country_code, party_id, cdr_id)
        return await self.store.sql_read(
            lambda conn: sql.document_by_key(conn, self.config.source, key)
        )

    async def session_update(
        self, session: models.Session, body: bytes, document: Any
    ) -> SessionEndResult | None:
        """A Session the CPO pushed (`document`: the whole object, a PATCH merged into
        the version before it), stored once per version (`last_updated`); a final one
        ends the authorization it quotes, releasing its reservation."""
        final = session.status in FINAL and session.authorization_reference
        prefix = self.session_prefix(session.country_code, session.party_id, session.id)
        event = self._event(
            "sessions.ended" if final else "sessions.updated",
            body,
            document,
            normalise_uid(session.cdr_token.uid),
            dedup_key=f"{prefix}{session.status}:{utc(session.last_updated).isoformat()}",
        )
        if not final:
            await self.store.ingest(event)
            return None
        assert session.authorization_reference is not None
        end = SessionEnd(
            session_ids=[session.authorization_reference],
            ended_at=utc(session.end_date_time or session.last_updated),
            energy_kwh=_kwh(session.kwh),
            token=session.cdr_token.uid,
        )
        return await self.sessions.end(event, end)

    async def cdr(self, cdr: models.Cdr, body: bytes) -> SessionEndResult:
        """A CDR the CPO pushed: the billing record closes the authorization it quotes
        (when it is still open) and its energy replaces any the session reported."""
        event = self._event(
            "cdrs.received",
            body,
            msgspec.json.decode(body),
            normalise_uid(cdr.cdr_token.uid),
            dedup_key=self.cdr_key(cdr.country_code, cdr.party_id, cdr.id),
        )
        reference = cdr.authorization_reference or f"cdr:{cdr.id}"
        end = SessionEnd(
            session_ids=[reference],
            ended_at=utc(cdr.end_date_time),
            energy_kwh=_kwh(cdr.total_energy),
            token=cdr.cdr_token.uid,
            # The CPO's price counts against money budgets (no tariff replaces it).
            money=_money(cdr.total_cost),
            currency=cdr.currency.upper(),
        )
        return await self.sessions.end(event, end)


def _money(cost: models.Price) -> str | None:
    """The CPO's total (incl. VAT where it says) as decimal text in cents, for money
    budgets; None for no amount they count: negative (a credit CDR) or out of range."""
    value = Decimal(repr(cost.excl_vat if cost.incl_vat is None else cost.incl_vat))
    if not value.is_finite() or value < 0 or value.adjusted() >= 9:
        return None
    return str(value.quantize(Decimal("0.01"), ROUND_HALF_UP))


def _kwh(value: float) -> str:
    """kWh as the exact decimal text the counters add (OCPI sends a JSON number)."""
    return format(value, ".6f").rstrip("0").rstrip(".") or "0"
