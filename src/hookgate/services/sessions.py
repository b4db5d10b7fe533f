"""Charging sessions: a start decided within the source's deadline and audited (or the
fallback), an end recorded and counted against budgets (in money too: an end that
reports no money is priced by the configured tariffs, domain/tariffs.py).

Nothing here knows HTTP: the edge parses the call and turns the result into the
provider's answer, so the deadline, the answer claim and the fallback are tested with a
real store and an injected clock, without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import msgspec
import structlog

from hookgate.authorization.decider import Claim, Decider, fallback
from hookgate.authorization.outcome import Outcome
from hookgate.config import ZaptecSource
from hookgate.domain.decisions import Decision, SessionEnd
from hookgate.domain.errors import LimitReached, StoreError
from hookgate.domain.events import InboundEvent, SessionEndResult
from hookgate.domain.rules import normalise_uid
from hookgate.domain.tariffs import NO_RATES, Priced, Pricing, Rates, price
from hookgate.domain.tariffs import Session as PricedSession
from hookgate.ids import new_id
from hookgate.metrics import Metrics
from hookgate.providers.base import StartRequest
from hookgate.store.base import Store
from hookgate.timeutil import utcnow

log = structlog.get_logger("hookgate.ingress")

# Attempts at an approval the store refuses because another instance took the budget.
ATTEMPTS = 3
# Of the deadline, the share for the decision and its audit; the rest is for recording
# the fallback answer before it is given.
DECISION_SHARE = 0.8


@dataclass(frozen=True, slots=True)
class Started:
    """What a start came to: the audited decision and the outcome behind it."""

    decision: Decision
    outcome: Outcome

    @property
    def message(self) -> str:
        return self.outcome.message or "Charging is not authorized."


class ChargingSessions:
    """Decides session starts against the engine and records each answer before it goes
    out; past the deadline, or when storage fails, the source's `on_error` answers."""

    def __init__(
        self,
        store: Store,
        decider: Decider,
        metrics: Metrics,
        clock: Callable[[], datetime] = utcnow,
        rates: Rates = NO_RATES,
    ) -> None:
        self.store = store
        self.decider = decider
        self.metrics = metrics
        self.clock = clock
        self.rates = rates
        # Without rates nothing is priced, and the store is not asked to.
        self._pricing: Pricing | None = (
            self._price if rates.tariffs or rates.reimbursements else None
        )
        self._background: set[asyncio.Future[None]] = set()

    async def start(
        self,
        source: ZaptecSource,
        request: StartRequest,
        event: InboundEvent,
        started: float | None = None,
    ) -> Started:
        """The answer to one start. `started` (a `time.perf_counter()` reading) is when the
        call arrived, so the audited latency covers the whole request."""
        began = time.perf_counter() if started is None else started
        claim = Claim()
        decided: list[Decision] = []

        async def decide_and_record() -> tuple[Decision, Outcome]:
            for attempt in range(ATTEMPTS):
                outcome = await self.decider.decide(source, request)
                decision = self.decision(source, event, request, outcome, began, fallback=False)
                decided.append(decision)
                try:
                    writing = time.perf_counter()
                    await self.store.record_session_start(
                        event,
                        decision,
                        claim=lambda: claim.take(Claim.WRITER),
                        limits=outcome.limits,
                    )
                    self.metrics.commit_seconds.labels("session_start").observe(
                        time.perf_counter() - writing
                    )
                except LimitReached as exc:
                    if attempt == ATTEMPTS - 1:
                        raise
                    # Another instance approved against the same budget since this one
                    # last looked: catch up and decide again (now likely a refusal).
                    self.decider.release(source.name, outcome)
                    self.metrics.rechecks.labels(source.name).inc()
                    log.info("limit re-checked by the store", source=source.name, why=str(exc))
                    await self.decider.refresh()
                    continue
                except BaseException:
                    self.decider.release(source.name, outcome)
                    raise
                return decision, outcome
            raise AssertionError("unreachable")

        deadline = source.decision_deadline_ms / 1000
        task = asyncio.ensure_future(decide_and_record())
        try:
            decision, outcome = await asyncio.wait_for(
                asyncio.shield(task), deadline * DECISION_SHARE
            )
        except Exception as exc:
            why = "deadline exceeded" if isinstance(exc, TimeoutError) else f"error: {exc}"
            log.warning("decision fallback", source=source.name, reason=why)
            self.metrics.fallbacks.labels(
                source.name, "deadline" if isinstance(exc, TimeoutError) else "error"
            ).inc()
            known = (
                self.decider.known_for_offline(request, self.clock())
                if source.on_error == "allow_known"
                else None
            )
            outcome = fallback(source, why, known)
            decision = self.decision(source, event, request, outcome, began, fallback=True)
            won = claim.take(Claim.FALLBACK)
            record = asyncio.ensure_future(
                self._record_fallback(None if won else task, event, decision, decided)
            )
            self._background.add(record)
            record.add_done_callback(self._background.discard)
            with contextlib.suppress(TimeoutError):
                # Usually storage is fine and only the decision was slow: then the answer
                # is audited before it goes out. Otherwise it goes out at the deadline and
                # the audit follows when storage allows.
                await asyncio.wait_for(asyncio.shield(record), deadline * (1 - DECISION_SHARE))
        self.metrics.decisions.labels(
            source.name, decision.result, str(decision.fallback).lower()
        ).inc()
        return Started(decision, outcome)

    def decision(
        self,
        source: ZaptecSource,
        event: InboundEvent,
        request: StartRequest,
        outcome: Outcome,
        started: float,
        *,
        fallback: bool,
    ) -> Decision:
        """The audit record of an outcome; an approval gets its session id here."""
        return Decision(
            id=new_id(),
            decided_at=self.clock(),
            source=source.name,
            event_id=event.id,
            charger_id=request.charger_id,
            token=normalise_uid(request.token) if request.token else None,
            user_id=request.user_id,
            installation_id=request.installation_id,
            result=outcome.result,
            reasons=outcome.reasons,
            session_id=(outcome.session_id or str(uuid.uuid4())) if outcome.allowed else None,
            fallback=fallback,
            latency_us=int((time.perf_counter() - started) * 1e6),
            group_id=outcome.group_id,
            reserved_kwh=str(outcome.reserved_kwh),
        )

    async def _record_fallback(
        self,
        primary: asyncio.Future[tuple[Decision, Outcome]] | None,
        event: InboundEvent,
        decision: Decision,
        decided: list[Decision],
    ) -> None:
        """Audit the fallback answer. `primary` is the decision path's write when it had
        already claimed the start: it commits a session Zaptec never hears of, to be voided."""
        void = None
        if primary is not None:
            try:
                await primary
                void = decided[-1].session_id if decided else None
            except Exception:  # noqa: S110 - the primary failure is already logged as the reason
                pass
        try:
            await self.store.record_fallback(event, decision, void)
        except StoreError as exc:
            log.error("fallback decision not recorded", source=decision.source, error=str(exc))

    async def end(self, event: InboundEvent, end: SessionEnd) -> SessionEndResult:
        """Record a session end with its consumption, counted against the token's group;
        the engine catches up before the answer, so the next start of the same token sees
        its budgets with this end in them."""
        end.token = normalise_uid(end.token) if end.token else None
        end.group_id = self.decider.group_of(end.token)
        result = await self.store.record_session_end(event, end, self._pricing)
        if result.stored:
            await self.decider.refresh()
        return result

    def _price(self, session: PricedSession, token: str | None) -> Priced | None:
        """The tariff's (or a reimbursement's) price of an ended session, for its money
        budgets: the token's vehicle and driver come from the engine's memory."""
        known = self.decider.token_of(token)
        if known is not None:
            session = msgspec.structs.replace(session, vehicle=known.vehicle, driver=known.driver)
        return price(session, self.rates.tariffs, self.rates.reimbursements)

    async def drain(self) -> None:
        """Wait for the fallback audits still being written (on shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
