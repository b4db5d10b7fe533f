"""Admin API over views, deliveries and destinations, and its operator actions, served by
uvicorn on a real socket against a migrated SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette

from hookgate.admin.api import AdminApi
from hookgate.admin.views import ViewsApi
from hookgate.bootstrap import bootstrap
from hookgate.config import Config, StorageConfig, parse_config
from hookgate.domain.events import InboundEvent, Rejection, StoredEvent
from hookgate.domain.outbox import DeliveryOutcome
from hookgate.ids import new_id
from hookgate.store import Store, make_store
from hookgate.store.base import ViewTx
from support.gateway import ADMIN_TOKEN, base_config
from support.servers import in_thread
from support.views import T0, seed

pytestmark = pytest.mark.backends("sqlite", "postgresql")

T = TypeVar("T")
PROBLEM = "application/problem+json"
DESTINATIONS = [
    {
        "name": "erp",
        "kind": "http",
        "url": "http://user:pw@127.0.0.1:9/hook?code=secret-code",
        "secret": "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
        "headers": {"X-Api-Key": "destination-key"},
    },
    {"name": "lake", "kind": "kafka", "brokers": ["127.0.0.1:9"], "topic": "events"},
]


@dataclass
class Api:
    url: str
    db: str  # the storage URL
    config: Config

    def client(self, token: str | None = ADMIN_TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def store(self, work: Callable[[Store], Awaitable[T]]) -> T:
        """Run `work` on a store of our own over the same database."""

        async def run() -> T:
            store = make_store(StorageConfig(url=self.db))
            await store.open()
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(run())


@pytest.fixture
def api(tmp_path: Path, storage_url: str) -> Iterator[Api]:
    config = parse_config(
        base_config(
            tmp_path / "views.db",
            storage_url,
            destinations=DESTINATIONS,
            authorization={"timezone": "Europe/Stockholm"},
        ),
        env={},
    )
    config = msgspec.structs.replace(
        config, storage=msgspec.structs.replace(config.storage, auto_migrate=True)
    )
    graph = bootstrap(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await graph.open()
        await graph.load_signing_key()
        yield
        await graph.close()

    admin = AdminApi(graph.store, config.admin.named())
    views = ViewsApi(admin, graph.store, config, graph.reruns, graph.operations)
    operations = [*admin.operations(), *views.operations()]
    app = Starlette(routes=admin.routes_of(operations), lifespan=lifespan)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    with in_thread(server) as port:
        yield Api(f"http://127.0.0.1:{port}", storage_url, config)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    document: dict[str, Any] = response.json()
    return document


def event(dedup: str, status: str = "received", body: bytes = b"{}") -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source="easypark-q",
        provider="easypark",
        event_type="parking.completed" if status != "quarantined" else "invalid",
        received_at=datetime.now(UTC),
        dedup_key=dedup,
        raw_body=body,
        body_sha256="00",
        headers={"content-type": "application/json"},
        document={"parkingId": dedup},
        status=status,
    )


def test_every_route_needs_the_admin_token(api: Api) -> None:
    with api.client(token=None) as c:
        for path in ("/api/v1/charging-sessions", "/api/v1/destinations", "/api/v1/export"):
            problem(c.get(path), 401)
        problem(c.post("/api/v1/replay", json={"source": "ampeco"}), 401)


def test_charging_sessions_filter_page_and_show_meter_values(api: Api) -> None:
    for n in range(3):
        seed(
            api.db,
            "charging_sessions",
            session_key=f"s{n}",
            status="ended" if n else "active",
            charger_id="CH-1",
            token="TAG-1",
            started_at=T0 + timedelta(hours=n),
        )
    seed(api.db, "charging_sessions", session_key="other", charger_id="CH-2")
    for minute in (1, 2):
        seed(
            api.db,
            "meter_values",
            session_key="s1",
            at=T0 + timedelta(minutes=minute),
            measurand="Energy.Active.Import.Register",
            value=str(minute * 1000),
            unit="Wh",
        )
    with api.client() as c:
        first = c.get("/api/v1/charging-sessions", params={"charger_id": "CH-1", "limit": 2})
        assert first.status_code == 200
        page = first.json()
        assert [i["session_key"] for i in page["items"]] == ["s2", "s1"]  # newest first
        rest = c.get(
            "/api/v1/charging-sessions",
            params={"charger_id": "CH-1", "limit": 2, "cursor": page["next"]},
        ).json()
        assert [i["session_key"] for i in rest["items"]] == ["s0"] and rest["next"] is None
        ended = c.get("/api/v1/charging-sessions", params={"status": "ended", "token": "TAG-1"})
        assert {i["session_key"] for i in ended.json()["items"]} == {"s1", "s2"}
        ranged = c.get(
            "/api/v1/charging-sessions",
            params={"since": "2025-12-04T12:30:00Z", "until": "2025-12-04T13:30:00Z"},
        )
        assert [i["session_key"] for i in ranged.json()["items"]] == ["s1"]

        s1 = page["items"][1]
        detail = c.get(f"/api/v1/charging-sessions/{s1['id']}").json()
        assert [m["value"] for m in detail["meter_values"]] == ["1000", "2000"]
        assert detail["flags"] == []

        problem(c.get("/api/v1/charging-sessions/nope"), 404)
        assert "since" in problem(c.get("/api/v1/charging-sessions?since=yesterday"), 400)["detail"]
        assert "limit" in problem(c.get("/api/v1/charging-sessions?limit=0"), 400)["detail"]
        problem(c.get("/api/v1/charging-sessions?cursor=%%%"), 400)


def test_sessions_and_parking_filter_on_an_anomaly_flag(api: Api) -> None:
    big = seed(
        api.db,
        "charging_sessions",
        session_key="big",
        flags=["energy_above_max", "session_failed"],
        started_at=T0,
    )
    seed(api.db, "charging_sessions", session_key="parked", flags=["parked_while_charging"])
    seed(api.db, "charging_sessions", session_key="plain", started_at=T0)
    stay = seed(api.db, "parking_transactions", parking_id="p1", flags=["parked_while_charging"])
    seed(api.db, "parking_transactions", parking_id="p2", flags=["legacy_feed"])
    with api.client() as c:
        found = c.get("/api/v1/charging-sessions", params={"flag": "energy_above_max"}).json()
        assert [i["id"] for i in found["items"]] == [big["id"]]
        assert found["items"][0]["flags"] == ["energy_above_max", "session_failed"]
        both = c.get(
            "/api/v1/charging-sessions",
            params={"flag": "energy_above_max", "since": "2025-12-04T11:00:00Z"},
        )
        assert [i["session_key"] for i in both.json()["items"]] == ["big"]
        shown = c.get(f"/api/v1/charging-sessions/{big['id']}").json()
        assert shown["flags"] == ["energy_above_max", "session_failed"]
        parked = c.get("/api/v1/parking-transactions", params={"flag": "parked_while_charging"})
        assert [i["id"] for i in parked.json()["items"]] == [stay["id"]]
        assert c.get(f"/api/v1/parking-transactions/{stay['id']}").json()["flags"] == [
            "parked_while_charging"
        ]
        # Only anomaly flags are accepted: a provider's flag or a typo is a 400 naming it.
        for bad in ("session_failed", "energy"):
            answer = problem(c.get("/api/v1/charging-sessions", params={"flag": bad}), 400)
            assert "flag" in answer["detail"]
        problem(c.get("/api/v1/parking-transactions", params={"flag": "nope"}), 400)


def test_parking_payments_and_charge_points(api: Api) -> None:
    parking = seed(api.db, "parking_transactions", parking_id="p1", license_number="XYZ789")
    seed(api.db, "parking_transactions", parking_id="p2")
    payment = seed(api.db, "payment_objects", object_id="pay-1", state="PROCESSED", final=True)
    seed(api.db, "payment_objects", object_id="pay-2")
    later, earlier = new_id(), new_id()
    for event_id, state, at in ((later, "PROCESSED", 1), (earlier, "PENDING_PAYMENT", 0)):
        seed(
            api.db,
            "payment_states",
            event_id=event_id,
            object_id="pay-1",
            state=state,
            received_at=T0 + timedelta(minutes=at),
        )
    point = seed(api.db, "charge_points", charge_point_id="117", network_status="online")
    seed(api.db, "charge_points", charge_point_id="118", network_status="offline")
    seed(api.db, "evses", evse_id="341", charge_point_id="117", connectors=[{"id": 1}])
    with api.client() as c:
        items = c.get("/api/v1/parking-transactions", params={"license_number": "XYZ789"}).json()
        assert [i["parking_id"] for i in items["items"]] == ["p1"]
        assert items["items"][0]["consistent"] is True
        one = c.get(f"/api/v1/parking-transactions/{parking['id']}").json()
        assert one["price"] == "100.00"
        finals = c.get("/api/v1/payments", params={"state": "PROCESSED"}).json()["items"]
        assert [p["object_id"] for p in finals] == ["pay-1"]
        detail = c.get(f"/api/v1/payments/{payment['id']}").json()
        assert [h["state"] for h in detail["history"]] == ["PENDING_PAYMENT", "PROCESSED"]
        online = c.get("/api/v1/charge-points", params={"network_status": "online"}).json()
        assert [p["charge_point_id"] for p in online["items"]] == ["117"]
        shown = c.get(f"/api/v1/charge-points/{point['id']}").json()
        assert [(e["evse_id"], e["connectors"]) for e in shown["evses"]] == [("341", [{"id": 1}])]
        problem(c.get("/api/v1/payments/nope"), 404)
        problem(c.get("/api/v1/charge-points/nope"), 404)


def test_deliveries_with_attempts_and_destinations(api: Api) -> None:
    async def deliver_once(store: Store) -> str:
        await store.ingest(event("d1"))

        def handler(tx: ViewTx, ev: StoredEvent) -> list[str]:
            return ["erp", "lake"]

        await store.process_pending(handler, 10)
        (job,) = await store.claim_deliveries("t", datetime.now(UTC), 10, 60, ["erp"])
        outcome = DeliveryOutcome(
            state="failed",
            started_at=datetime.now(UTC),
            duration_ms=3,
            status_code=500,
            error="HTTP 500",
            retry_at=datetime.now(UTC) + timedelta(hours=1),
        )
        assert await store.finish_delivery(job, "t", outcome)
        return job.id

    delivery_id = api.store(deliver_once)
    with api.client() as c:
        failed = c.get("/api/v1/deliveries", params={"status": "failed"}).json()["items"]
        assert [d["id"] for d in failed] == [delivery_id]
        assert len(c.get("/api/v1/deliveries", params={"destination": "lake"}).json()["items"]) == 1
        detail = c.get(f"/api/v1/deliveries/{delivery_id}").json()
        assert [(a["attempt"], a["status_code"]) for a in detail["history"]] == [(1, 500)]
        problem(c.get("/api/v1/deliveries/nope"), 404)
        assert "status" in problem(c.get("/api/v1/deliveries?status=lost"), 400)["detail"]

        listed = c.get("/api/v1/destinations").json()["items"]
        assert [d["name"] for d in listed] == ["erp", "lake"]
        erp = listed[0]
        assert erp["url"] == "http://127.0.0.1:9/hook"
        assert erp["signed"] is True and erp["header_names"] == ["X-Api-Key"]
        text = c.get("/api/v1/destinations").text
        for secret in ("secret-code", "pw@", "destination-key", "whsec_"):
            assert secret not in text
        off = c.post("/api/v1/destinations/erp/disable", json={"reason": "maintenance"}).json()
        assert (off["disabled"], off["disabled_reason"]) == (True, "maintenance")
        assert c.get("/api/v1/destinations").json()["items"][0]["disabled"] is True
        on = c.post("/api/v1/destinations/erp/enable").json()
        assert on["disabled"] is False
        problem(c.post("/api/v1/destinations/nope/disable"), 404)


def test_replay_validates_and_queues(api: Api) -> None:
    async def processed(store: Store) -> str:
        ev = event("r1")
        await store.ingest(ev)
        await store.process_pending(lambda tx, e: ["erp"], 10)
        return ev.id

    event_id = api.store(processed)
    with api.client() as c:
        assert "event_ids" in problem(c.post("/api/v1/replay", json={}), 400)["detail"]
        bad = problem(c.post("/api/v1/replay", json={"source": "ampeco", "status": "lost"}), 400)
        assert bad["detail"].startswith("status")
        unknown = problem(c.post("/api/v1/replay", json={"destination": "nowhere"}), 400)
        assert unknown["detail"].startswith("destination")
        assert "since" in problem(c.post("/api/v1/replay", json={"since": "soon"}), 400)["detail"]
        typed = problem(c.post("/api/v1/replay", json={"event_ids": "x"}), 400)
        assert "event_ids" in typed["detail"]
        assert c.post("/api/v1/replay", content=b"{").status_code == 400
        problem(c.post("/api/v1/replay", json={"extra": 1}), 400)

        before = c.get("/api/v1/deliveries", params={"event_id": event_id}).json()["items"]
        selection = {"source": "easypark-q", "status": "pending"}
        rehearsed = c.post("/api/v1/replay", json={**selection, "dry_run": True})
        assert rehearsed.json() == {"queued": 1, "dry_run": True}
        after = c.get("/api/v1/deliveries", params={"event_id": event_id}).json()["items"]
        assert after == before  # a dry run changes nothing
        named_dry = c.post(
            f"/api/v1/events/{event_id}/replay", params={"destination": "lake", "dry_run": "true"}
        )
        assert named_dry.json() == {"queued": 1, "dry_run": True}
        assert c.get("/api/v1/deliveries", params={"destination": "lake"}).json()["items"] == []

        queued = c.post("/api/v1/replay", json={"event_ids": [event_id]})
        assert queued.json() == {"queued": 1, "dry_run": False}
        bulk = c.post("/api/v1/replay", json=selection)
        assert bulk.json() == {"queued": 1, "dry_run": False}
        # A destination added later gets the event when named explicitly.
        named = c.post(f"/api/v1/events/{event_id}/replay", params={"destination": "lake"})
        assert named.json() == {"queued": 1, "dry_run": False}
        problem(c.post("/api/v1/events/nope/replay"), 404)
        problem(c.post(f"/api/v1/events/{event_id}/replay?destination=nowhere"), 400)


def test_reprocess_and_rerun_through_the_api(api: Api) -> None:
    parking = (Path(__file__).parents[1] / "contract/fixtures/easypark/current.json").read_bytes()

    async def held(store: Store) -> tuple[str, str, str]:
        quarantined = event("quarantine:1", status="quarantined", body=parking)
        broken = event("quarantine:2", status="quarantined", body=b'{"parkingId": []}')
        await store.ingest(quarantined)
        await store.ingest(broken)
        rejection = Rejection(
            id=new_id(),
            received_at=datetime.now(UTC),
            source="easypark",
            provider="easypark",
            method="POST",
            path="/hooks/easypark",
            status=401,
            reason="unauthorized",
            detail="wrong password",
            headers={},
            remote=None,
            body_sha256="00",
            body_size=2,
            body=b"{}",
        )
        await store.record_rejection(rejection)
        return quarantined.id, broken.id, rejection.id

    good, bad, rejection_id = api.store(held)
    with api.client() as c:
        done = c.post(f"/api/v1/events/{good}/reprocess").json()
        assert (done["status"], done["event_type"]) == ("queued", "parking.completed")
        problem(c.post(f"/api/v1/events/{good}/reprocess"), 409)
        still = problem(c.post(f"/api/v1/events/{bad}/reprocess"), 422)
        assert still["detail"]
        problem(c.post("/api/v1/events/nope/reprocess"), 404)
        refused = problem(c.post(f"/api/v1/rejections/{rejection_id}/rerun"), 409)
        assert "never stored" in refused["detail"]
        problem(c.post("/api/v1/rejections/nope/rerun"), 404)


def test_export_as_csv_and_json(api: Api) -> None:
    seed(api.db, "parking_transactions", parking_id="p1", ended_at=T0)
    seed(
        api.db,
        "charging_sessions",
        session_key="s1",
        token="TAG-9",
        ended_at=T0,
        cost="12.5",
        currency="SEK",
    )
    with api.client() as c:
        response = c.get("/api/v1/export", params={"month": "2025-12"})
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert 'filename="fleet-costs-2025-12.csv"' in response.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0][0] == "kind" and len(rows) == 3
        totals = c.get("/api/v1/export", params={"month": "2025-12", "totals": "true"})
        assert totals.text.startswith("vehicle,currency,")
        document = c.get("/api/v1/export", params={"month": "2025-12", "format": "json"}).json()
        assert document["timezone"] == "Europe/Stockholm"
        assert {line["kind"] for line in document["lines"]} == {"parking", "charging"}
        assert c.get("/api/v1/export", params={"month": "2025-11"}).text.count("\n") == 1
        assert "month" in problem(c.get("/api/v1/export"), 400)["detail"]
        assert "month" in problem(c.get("/api/v1/export?month=2025-13"), 400)["detail"]
        assert "format" in problem(c.get("/api/v1/export?month=2025-12&format=xml"), 400)["detail"]


def test_export_csv_defuses_formulas_and_survives_out_of_range_amounts(api: Api) -> None:
    seed(
        api.db,
        "parking_transactions",
        parking_id="p1",
        ended_at=T0,
        license_number='=HYPERLINK("http://evil","x")',
        price="1E+400",
    )
    with api.client() as c:
        for params in ({}, {"totals": "true"}, {"format": "json"}):
            response = c.get("/api/v1/export", params={"month": "2025-12", **params})
            assert response.status_code == 200, response.text
        rows = list(csv.DictReader(io.StringIO(c.get("/api/v1/export?month=2025-12").text)))
        assert rows[0]["vehicle"] == '\'=HYPERLINK("http://evil","x")'
        assert rows[0]["total"] == "" and "1E+400" in rows[0]["note"]
        document = c.get("/api/v1/export", params={"month": "2025-12", "format": "json"}).json()
        assert document["lines"][0]["vehicle"] == '=HYPERLINK("http://evil","x")'
