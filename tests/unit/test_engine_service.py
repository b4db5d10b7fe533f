"""AuthorizationService: the engine kept in step with the store's change log, and the
decision path of a running gateway when storage fails or the deadline is blown."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from hookgate.authorization.outcome import (
    ALLOWED,
    BLOCKED,
    NO_CREDIT,
    NOT_ALLOWED,
    UNKNOWN,
    Outcome,
)
from hookgate.authorization.service import AuthorizationService, to_entity
from hookgate.config import AuthorizationConfig, ZaptecSource
from hookgate.domain.decisions import ConsumptionReport, Decision, SessionEnd
from hookgate.domain.errors import StoreError
from hookgate.domain.events import InboundEvent
from hookgate.domain.rules import Budget, ChargerRule, Group, Token
from hookgate.emulate.ampeco_samples import sample
from hookgate.ids import new_id
from hookgate.providers.base import StartRequest
from hookgate.store.sqlite import SqliteStore
from support.gateway import AMPECO_OLD, ZAPTEC_PASSWORD, ZAPTEC_USER, Running, base_config
from support.polling import until, until_async

NOW = datetime(2025, 6, 11, 12, 0, tzinfo=UTC)
SITE = msgspec.convert({"name": "site", "provider": "zaptec"}, ZaptecSource)


def clock() -> datetime:
    return NOW


def req(token: str | None, charger: str = "CH-1") -> StartRequest:
    return StartRequest(charger, token, None, "INST-1")


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """Two stores on one file: this process, and "another process" (CLI, API, instance)."""
    path = str(tmp_path / "auth.db")
    ours = SqliteStore(path, auto_migrate=True)
    theirs = SqliteStore(path, auto_migrate=True)
    await ours.open()
    await theirs.open()
    yield ours, theirs
    await theirs.close()
    await ours.close()


async def started(
    store: SqliteStore, settings: AuthorizationConfig | None = None, *, follow: bool = False
) -> AuthorizationService:
    service = AuthorizationService(store, settings or AuthorizationConfig(), clock=clock)
    await service.start(follow=follow)
    return service


async def put(store: SqliteStore, kind: str, *entities: Any) -> None:
    await store.auth_put([to_entity(kind, entity) for entity in entities])


def event(kind: str, dedup: str | None = None, source: str = "site") -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source=source,
        provider="zaptec",
        event_type=f"session.{kind}",
        received_at=NOW,
        dedup_key=dedup or f"{kind}:{uuid.uuid4().hex}",
        raw_body=b"{}",
        body_sha256="00",
        headers={},
        document={},
    )


async def record_start(
    service: AuthorizationService, store: SqliteStore, token: str, charger: str = "CH-1"
) -> Outcome:
    """A start decided by the service and recorded as the ingress records it."""
    request = req(token, charger)
    outcome = await service.decide(SITE, request)
    decision = Decision(
        id=new_id(),
        decided_at=NOW,
        source=SITE.name,
        event_id=None,
        charger_id=request.charger_id,
        token=outcome.token,
        user_id=None,
        installation_id=request.installation_id,
        result=outcome.result,
        reasons=outcome.reasons,
        session_id=outcome.session_id,
        group_id=outcome.group_id,
        reserved_kwh=str(outcome.reserved_kwh),
    )
    await store.record_session_start(event("start"), decision)
    return outcome


async def record_end(
    store: SqliteStore,
    session_id: str,
    kwh: str,
    token: str | None = None,
    group: str | None = None,
) -> bool:
    end = SessionEnd(
        session_ids=[session_id], ended_at=NOW, energy_kwh=kwh, token=token, group_id=group
    )
    result = await store.record_session_end(event("end", f"end:{session_id}"), end)
    return result.stored


def budget(owner: str, limit: str, subject: str = "token", period: str = "day") -> Budget:
    return Budget(
        id=f"{subject}-{owner}-{period}",
        subject=subject,  # type: ignore[arg-type]
        subject_id=owner,
        period=period,  # type: ignore[arg-type]
        limit=Decimal(limit),
    )


def decide(service: AuthorizationService, token: str | None, charger: str = "CH-1") -> Outcome:
    """A look at the decision without holding anything."""
    return service.engine.decide(SITE, req(token, charger), NOW, reserve=False)


# -- the change log ------------------------------------------------------------------------


async def test_token_written_by_another_process_is_in_force_after_refresh(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    service = await started(ours)
    assert decide(service, "new-tag").result == UNKNOWN

    await put(theirs, "token", Token(uid="new-tag"))
    assert decide(service, "new-tag").result == UNKNOWN, "nothing changes before refresh"
    assert await service.refresh() == 1
    assert decide(service, "NEW-TAG").result == ALLOWED
    assert await service.refresh() == 0, "a change is applied once"

    await put(theirs, "token", Token(uid="new-tag", status="blocked"))
    await service.refresh()
    assert decide(service, "new-tag").result == BLOCKED


async def test_deletion_by_another_process_is_in_force_after_refresh(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    await put(theirs, "group", Group(id="FLEET"))
    await put(theirs, "token", Token(uid="T1", group_id="FLEET"), Token(uid="T2"))
    await put(theirs, "charger", ChargerRule(charger_id="CH-OPEN", mode="open"))
    await put(theirs, "budget", budget("T2", "0"))
    service = await started(ours)
    assert decide(service, "T1").result == ALLOWED
    assert decide(service, "T2").result == NO_CREDIT
    assert decide(service, "nobody", "CH-OPEN").result == ALLOWED

    assert await theirs.auth_delete("token", "T1")
    assert await theirs.auth_delete("budget", "token-T2-day")
    assert await theirs.auth_delete("charger", "CH-OPEN")
    assert await service.refresh() == 3
    assert decide(service, "T1").result == UNKNOWN
    assert decide(service, "T2").result == ALLOWED
    assert decide(service, "nobody", "CH-OPEN").result == UNKNOWN
    assert "T1" not in service.engine.tokens


async def test_group_change_by_another_process_reaches_its_tokens(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    await put(theirs, "group", Group(id="FLEET"))
    await put(theirs, "token", Token(uid="T1", group_id="FLEET"))
    service = await started(ours)
    await put(theirs, "group", Group(id="FLEET", status="blocked"))
    await service.refresh()
    outcome = decide(service, "t1")
    assert outcome.result == BLOCKED
    assert "group FLEET of token T1 is blocked" in outcome.reasons


async def test_the_follow_task_applies_changes_on_its_own(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    service = await started(ours, AuthorizationConfig(refresh_interval_ms=50), follow=True)
    try:
        await put(theirs, "token", Token(uid="LATE"))
        await until_async(
            lambda: decide(service, "late").result == ALLOWED, "the change to arrive by itself"
        )
    finally:
        await service.stop()


# -- configuration entities ------------------------------------------------------------------


async def test_config_entities_are_synced_at_start_and_removed_when_gone(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    await put(theirs, "token", Token(uid="API-1"), Token(uid="CFG-2", status="blocked"))
    first = AuthorizationConfig(
        groups=[Group(id="FLEET")],
        tokens=[Token(uid="cfg-1", group_id="FLEET"), Token(uid="cfg-2")],
        chargers=[ChargerRule(charger_id="CH-OPEN", mode="open")],
        budgets=[budget("FLEET", "0", "group")],
    )
    service = await started(ours, first)
    stored = await ours.auth_get("token", "CFG-2")
    assert stored is not None and stored.managed_by == "config"
    assert json.loads(stored.doc)["status"] == "valid", "the file replaces the API's entity"
    assert (await ours.auth_get("token", "CFG-1")).managed_by == "config"  # type: ignore[union-attr]
    assert decide(service, "cfg-1").result == NO_CREDIT  # group budget of 0
    assert decide(service, "cfg-2").result == ALLOWED
    assert decide(service, "api-1").result == ALLOWED
    assert decide(service, "nobody", "CH-OPEN").result == ALLOWED

    # The file changes: CFG-2, the charger rule and the budget are gone from it.
    second = AuthorizationConfig(
        groups=[Group(id="FLEET")], tokens=[Token(uid="cfg-1", group_id="FLEET")]
    )
    other = await started(theirs, second)
    assert await ours.auth_get("token", "CFG-2") is None
    assert await ours.auth_get("charger", "CH-OPEN") is None
    assert await ours.auth_get("budget", "group-FLEET-day") is None
    assert await ours.auth_get("token", "API-1") is not None, "API entities are not the file's"
    await service.refresh()  # the running instance follows the removal
    for s in (other, service):
        assert decide(s, "cfg-1").result == ALLOWED
        assert decide(s, "cfg-2").result == UNKNOWN
        assert decide(s, "api-1").result == ALLOWED
        assert decide(s, "nobody", "CH-OPEN").result == UNKNOWN

    # Starting again with the same file writes nothing.
    before = await ours.auth_changes(0, 10_000)
    await started(ours, second)
    assert len(await ours.auth_changes(0, 10_000)) == len(before)


# -- sessions and consumption --------------------------------------------------------------


async def test_a_session_end_reduces_active_sessions_and_adds_consumption(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    settings = AuthorizationConfig(
        session_reserve_kwh=1,
        groups=[Group(id="FLEET", max_sessions=1)],
        tokens=[Token(uid="T1", group_id="FLEET")],
        budgets=[budget("T1", "10"), budget("FLEET", "10", "group")],
    )
    service = await started(ours, settings)
    watcher = await started(theirs, settings)  # another instance, following the log only
    outcome = await record_start(service, ours, "t1")
    assert outcome.result == ALLOWED and outcome.group_id == "FLEET"
    assert outcome.session_id is not None
    await service.refresh()
    await watcher.refresh()
    for s in (service, watcher):
        assert s.engine.reserved(("token", "T1"), NOW) == (1, Decimal(1))
        assert s.engine.reserved(("group", "FLEET"), NOW) == (1, Decimal(1))
        refused = decide(s, "t1")
        assert refused.result == NOT_ALLOWED
        assert "group FLEET has 1 active sessions (limit 1)" in refused.reasons

    assert await record_end(theirs, outcome.session_id, "4")
    assert await service.refresh() >= 2  # the session and its consumption
    await watcher.refresh()
    token_budget, group_budget = (
        service.engine.budgets[k] for k in ("token-T1-day", "group-FLEET-day")
    )
    for s in (service, watcher):
        assert s.engine.reserved(("token", "T1"), NOW) == (0, Decimal(0))
        assert s.engine.active == {}
        assert s.engine.used(("token", "T1"), token_budget, NOW) == Decimal(4)
        assert s.engine.used(("group", "FLEET"), group_budget, NOW) == Decimal(4)
        assert "token T1 day budget 4/10 kWh" in decide(s, "t1").reasons

    # A repeated end changes nothing.
    assert not await record_end(theirs, outcome.session_id, "4")
    await service.refresh()
    assert service.engine.used(("token", "T1"), token_budget, NOW) == Decimal(4)

    # An end hookgate never saw the start of (offline charging) still counts.
    assert await record_end(theirs, "offline-1", "5.5", token="T1", group="FLEET")
    await service.refresh()
    assert service.engine.used(("group", "FLEET"), group_budget, NOW) == Decimal("9.5")
    refused = decide(service, "t1")
    assert refused.result == NO_CREDIT
    assert "9.5 kWh used" in " ".join(refused.reasons)


async def test_consumption_reported_by_another_provider_counts(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    settings = AuthorizationConfig(
        session_reserve_kwh=1,
        tokens=[Token(uid="T1")],
        budgets=[
            budget("T1", "10"),
            Budget(
                id="money",
                subject="token",
                subject_id="T1",
                metric="money",
                period="month",
                limit=Decimal("30"),
                currency="EUR",
            ),
        ],
    )
    service = await started(ours, settings)
    report = ConsumptionReport(
        session_key="session:42",
        origin="ampeco",
        token="T1",
        kwh="5.5",
        money="12.40",
        currency="EUR",
        occurred_at=NOW - timedelta(hours=1),
    )
    ampeco = event("stop", "ampeco-body-hash", source="ampeco")
    assert (await theirs.ingest(ampeco, report)).stored
    # A later, larger report of the same session replaces the first.
    bigger = msgspec.structs.replace(report, kwh="9.5", money="31.00")
    assert (await theirs.ingest(event("update", "other-hash", source="ampeco"), bigger)).stored
    await service.refresh()
    refused = decide(service, "T1")
    assert refused.result == NO_CREDIT
    assert "9.5 kWh used" in " ".join(refused.reasons)


# -- reload ---------------------------------------------------------------------------------


async def test_reload_gives_the_same_decisions_as_the_incremental_engine(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    settings = AuthorizationConfig(
        timezone="Europe/Oslo",
        session_reserve_kwh=1.5,
        groups=[Group(id="FLEET", max_sessions=3)],
        tokens=[Token(uid="CFG-A", group_id="FLEET")],
        budgets=[budget("FLEET", "20", "group", "week")],
    )
    service = await started(ours, settings)

    # Changes from everywhere, applied as they come.
    await put(theirs, "group", Group(id="DEPOT", status="blocked"))
    await put(
        theirs,
        "token",
        Token(uid="API-B", group_id="FLEET", max_sessions=1),
        Token(uid="API-C", status="blocked"),
        Token(uid="API-D", group_id="DEPOT"),
        Token(uid="API-E", valid_until=NOW - timedelta(days=1)),
        Token(uid="API-F"),
        Token(uid="GONE"),
    )
    await put(
        theirs,
        "charger",
        ChargerRule(charger_id="CH-OPEN", mode="open"),
        ChargerRule(charger_id="CH-RES", mode="reserved", group_id="FLEET"),
    )
    await put(theirs, "budget", budget("API-B", "5"), budget("API-F", "3"))
    await service.refresh()
    a = await record_start(service, ours, "CFG-A")
    b = await record_start(service, ours, "API-B")
    f = await record_start(service, ours, "API-F")
    assert [o.result for o in (a, b, f)] == [ALLOWED] * 3
    assert a.session_id and f.session_id
    await record_end(theirs, a.session_id, "6")
    await record_end(theirs, f.session_id, "2.25")
    await theirs.ingest(
        event("stop", "amp-1", source="ampeco"),
        ConsumptionReport(
            session_key="session:1",
            origin="ampeco",
            token="API-B",
            group_id="FLEET",
            kwh="2.5",
            occurred_at=NOW - timedelta(days=1),
        ),
    )
    await theirs.auth_delete("token", "GONE")
    await put(theirs, "budget", budget("API-F", "3.5"))
    await service.refresh()

    tokens = ["CFG-A", "API-B", "API-C", "API-D", "API-E", "API-F", "GONE", "NEW", None]
    chargers = ["CH-1", "CH-OPEN", "CH-RES"]

    def usage(s: AuthorizationService) -> dict[Any, Decimal]:
        return {key: kwh for key, kwh in s.engine._usage.items() if kwh}

    def answers(s: AuthorizationService) -> list[tuple[Any, ...]]:
        out = []
        for token in tokens:
            for charger in chargers:
                for source in (SITE, msgspec.structs.replace(SITE, unknown_token="allow")):
                    o = s.engine.decide(source, req(token, charger), NOW, reserve=False)
                    out.append((token, charger, o.result, o.reasons, o.group_id, o.reserved_kwh))
        return out

    incremental = answers(service)
    results = {r[2] for r in incremental}
    assert {ALLOWED, BLOCKED, NO_CREDIT, NOT_ALLOWED, UNKNOWN, "EXPIRED"} <= results

    fresh = AuthorizationService(theirs, settings, clock=clock)
    await fresh.reload()
    assert answers(fresh) == incremental
    assert fresh.engine.seq == service.engine.seq
    assert fresh.engine.active.keys() == service.engine.active.keys()
    assert fresh.engine.tokens == service.engine.tokens
    assert fresh.engine.budgets == service.engine.budgets
    assert usage(fresh) == usage(service)

    await service.reload()
    assert answers(service) == incremental


# -- the gateway when no decision can be reached ----------------------------------------------

BASIC = "Basic " + base64.b64encode(f"{ZAPTEC_USER}:{ZAPTEC_PASSWORD}".encode()).decode()
OFFLINE_TOKENS = [
    {"uid": "ALWAYS", "whitelist": "ALWAYS"},
    {"uid": "OFFLINE", "whitelist": "ALLOWED_OFFLINE"},
    {"uid": "ONLINE", "whitelist": "ALLOWED"},
    {"uid": "NEVER", "whitelist": "NEVER"},
    {"uid": "BLOCKED-ALWAYS", "whitelist": "ALWAYS", "status": "blocked"},
    {"uid": "BLOCKED-OFFLINE", "whitelist": "ALLOWED_OFFLINE", "status": "blocked"},
    {
        "uid": "EXPIRED-OFFLINE",
        "whitelist": "ALLOWED_OFFLINE",
        "valid_until": "2020-01-01T00:00:00Z",
    },
    {"uid": "GROUP-BLOCKED-ALWAYS", "whitelist": "ALWAYS", "group_id": "GB"},
]
EXPECTED = {
    # (source, token): answer status
    **{("deny", t): 403 for t in ("ALWAYS", "OFFLINE", "ONLINE", "UNSEEN")},
    **{("allow", t): 200 for t in ("ALWAYS", "ONLINE", "UNSEEN")},
    ("allow-known", "ALWAYS"): 200,
    ("allow-known", "OFFLINE"): 200,
    ("allow-known", "ONLINE"): 403,
    ("allow-known", "NEVER"): 403,
    ("allow-known", "UNSEEN"): 403,
    ("allow-known", "BLOCKED-ALWAYS"): 403,
    ("allow-known", "BLOCKED-OFFLINE"): 403,
    ("allow-known", "EXPIRED-OFFLINE"): 403,
    ("allow-known", "GROUP-BLOCKED-ALWAYS"): 403,
}


def fallback_gateway(make_gateway: Any, db: Path) -> Running:
    sources = [
        {
            "name": name,
            "provider": "zaptec",
            "auth": "basic",
            "username": ZAPTEC_USER,
            "password": ZAPTEC_PASSWORD,
            "on_error": name.replace("-", "_"),
            "decision_deadline_ms": 100,
        }
        for name in ("deny", "allow", "allow-known")
    ]
    return make_gateway(
        base_config(
            db,
            sources=sources,
            authorization={
                "groups": [{"id": "GB", "status": "blocked"}],
                "tokens": OFFLINE_TOKENS,
            },
        )
    )


async def _starts(url: str, cases: list[tuple[str, str]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": BASIC}) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{url}/hooks/{source}/session-start",
                    json={"ChargerId": f"CH-{n}", "TokenId": token.lower()},
                )
                for n, (source, token) in enumerate(cases)
            )
        )


@pytest.mark.parametrize("failure", ["storage", "deadline"])
def test_on_error_when_storage_fails_or_the_deadline_is_blown(
    make_gateway: Any, tmp_path: Path, failure: str
) -> None:
    running = fallback_gateway(make_gateway, tmp_path / f"{failure}.db")
    gateway = running.app.gateway
    if failure == "storage":

        async def broken(*args: Any, **kwargs: Any) -> None:
            raise StoreError("disk full")

        gateway.ingress.store.record_session_start = broken
        why = "error: disk full"
    else:

        async def slow(source: ZaptecSource, request: StartRequest) -> Outcome:
            await asyncio.Event().wait()  # a decision that never comes
            raise AssertionError("unreachable")

        gateway.authorization.decide = slow
        why = "deadline exceeded"

    cases = list(EXPECTED)
    answers = asyncio.run(_starts(running.url, cases))
    got = {case: answer.status_code for case, answer in zip(cases, answers, strict=True)}
    assert got == EXPECTED
    for (source, token), answer in zip(cases, answers, strict=True):
        if answer.status_code == 200:
            assert answer.json()["sessionId"]
        else:
            assert answer.json()["authorized"] is False
            assert answer.json()["reason"] == NOT_ALLOWED, (source, token)

    # Every fallback answer is audited with its cause.
    until(lambda: running.count("decisions", "fallback = 1") == len(cases), "the audits")
    for source, token, result, reasons in running.rows(
        "SELECT source, token, result, reasons FROM decisions"
    ):
        assert f"fallback on_error={source.replace('-', '_')}" in reasons
        assert why in reasons
        assert result == (ALLOWED if EXPECTED[(source, token)] == 200 else NOT_ALLOWED)


# -- AMPECO amounts against a money budget, through the gateway ------------------------------


def test_ampeco_amount_spends_a_money_budget(make_gateway: Any, tmp_path: Path) -> None:
    running = make_gateway(
        base_config(
            tmp_path / "money.db",
            sources=[
                {
                    "name": "site",
                    "provider": "zaptec",
                    "auth": "basic",
                    "username": ZAPTEC_USER,
                    "password": ZAPTEC_PASSWORD,
                },
                {"name": "ampeco", "provider": "ampeco", "secrets": [AMPECO_OLD]},
            ],
            authorization={
                "refresh_interval_ms": 50,
                "groups": [{"id": "FLEET"}],
                "tokens": [{"uid": "04A1B2C3", "group_id": "FLEET"}],
                "budgets": [
                    {
                        "id": "fleet-eur",
                        "subject": "group",
                        "subject_id": "FLEET",
                        "metric": "money",
                        "period": "month",
                        "limit": "25",
                        "currency": "EUR",
                    }
                ],
            },
        )
    )
    now = datetime.now(UTC)
    body = sample("SessionUpdateNotification", 3)
    body["session"].update(
        idTag="04a1b2c3",
        energy=41_000,
        totalAmount={"withTax": 30.5, "withoutTax": 24.4},
        currency="EUR",
        startedAt=(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        stoppedAt=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    raw = json.dumps(body).encode()
    signature = hmac.new(AMPECO_OLD.encode(), raw, hashlib.sha256).hexdigest()

    def start() -> httpx.Response:
        return httpx.post(
            f"{running.url}/hooks/site/session-start",
            json={"ChargerId": "CH-1", "TokenId": "04A1B2C3"},
            headers={"Authorization": BASIC},
            timeout=10,
        )

    assert start().status_code == 200
    answer = httpx.post(
        f"{running.url}/hooks/ampeco",
        content=raw,
        headers={"Content-Type": "application/json", "X-Signature": signature},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    refused = until(
        lambda: (answer := start()).status_code != 200 and answer,
        "the AMPECO amount to reach the budget",
    )
    assert refused.status_code == 403
    assert refused.json()["reason"] == NO_CREDIT
    reasons = running.rows("SELECT reasons FROM decisions WHERE result = 'NO_CREDIT'")[0][0]
    assert "group FLEET month money budget: 30.5 of 25 EUR spent" in reasons


async def test_a_stream_of_nudges_folds_into_few_refreshes_and_misses_no_report(
    stores: tuple[SqliteStore, SqliteStore],
) -> None:
    ours, theirs = stores
    service = await started(ours)
    reads = 0
    real = ours.auth_changes
    reporting = asyncio.Event()

    async def counted(after: int, limit: int) -> Any:
        # The first read returns only once every report is written and nudged: the
        # nudges land while a refresh runs whatever the machine's speed, so the count
        # below does not depend on how long an ingest takes against NUDGE_GAP.
        nonlocal reads
        reads += 1
        changes = await real(after, limit)
        if reads == 1:
            await reporting.wait()
        return changes

    ours.auth_changes = counted  # type: ignore[method-assign]
    for n in range(60):
        report = ConsumptionReport(
            session_key=f"session:{n}",
            origin="ampeco",
            token="T1",
            kwh="0.5",
            occurred_at=NOW - timedelta(minutes=1),
        )
        assert (await theirs.ingest(event("stop", f"amp-{n}", source="ampeco"), report)).stored
        service.nudge()
        if n % 20 == 0:
            await asyncio.sleep(0)  # let the first refresh start while reports keep coming
    assert reads == 1
    reporting.set()
    assert service._nudged is not None
    await asyncio.wait_for(service._nudged, 5)
    # Every report is in the engine (the later ones came while the first refresh ran),
    # after two change-log reads rather than one per report.
    used = {key: kwh for key, kwh in service.engine._usage.items() if kwh}
    assert set(used.values()) == {Decimal(30)}
    assert reads == 2
    await service.stop()
