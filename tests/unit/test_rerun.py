"""Re-running quarantined events and rejected calls after a configuration fix."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.authorization.service import AuthorizationService
from hookgate.config import Config, parse_config
from hookgate.domain.errors import Conflict, NotFound, Unprocessable
from hookgate.domain.events import InboundEvent, Rejection
from hookgate.domain.queries import EventFilter
from hookgate.ids import new_id
from hookgate.ingress.pipeline import Pipeline
from hookgate.metrics import Metrics
from hookgate.oauth import TokenIssuer
from hookgate.providers import build_providers
from hookgate.providers.base import Provider, body_hash, read_replay_copy
from hookgate.services.rerun import RerunResult, Reruns
from hookgate.store.sqlite import SqliteStore
from support.gateway import AMPECO_NEW, base_config

FIXTURES = Path(__file__).parents[1] / "contract" / "fixtures"
PARKING = (FIXTURES / "easypark" / "current.json").read_bytes()
SESSION_STOP = json.dumps(
    json.loads((FIXTURES / "ampeco" / "SessionStartStopNotification.json").read_bytes())
).encode()
NEW_SECRET = "ampeco-rotated-secret"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(str(tmp_path / "rerun.db"), auto_migrate=True)
    await db.open()
    yield db
    await db.close()


def config_of(tmp_path: Path, ampeco_secrets: list[str]) -> Config:
    data = base_config(tmp_path / "rerun.db")
    for source in data["sources"]:
        if source["name"] == "ampeco":
            source["secrets"] = ampeco_secrets
    return parse_config(data, env={})


def reruns(store: SqliteStore, config: Config, providers: dict[str, Provider[Any]]) -> Reruns:
    """The re-run service over the ingest pipeline, as the bootstrap wires it."""
    engine = AuthorizationService(store, config.authorization)
    return Reruns(store, config, providers, Pipeline(config, store, engine, Metrics()))


async def reprocess_event(
    store: SqliteStore, config: Config, providers: dict[str, Provider[Any]], event_id: str
) -> RerunResult:
    return await reruns(store, config, providers).reprocess(event_id)


async def rerun_rejection(
    store: SqliteStore, config: Config, providers: dict[str, Provider[Any]], rejection_id: str
) -> RerunResult:
    return await reruns(store, config, providers).rerun(rejection_id)


@pytest.fixture
def providers() -> dict[str, Provider[Any]]:
    return build_providers(TokenIssuer(os.urandom(32)))


def quarantined(body: bytes, source: str = "easypark-q") -> InboundEvent:
    return InboundEvent(
        id=new_id(),
        source=source,
        provider="easypark",
        event_type="invalid",
        received_at=datetime.now(UTC),
        dedup_key="quarantine:" + body_hash(body),
        raw_body=body,
        body_sha256=body_hash(body),
        headers={"content-type": "application/json", "authorization": "Basic ***"},
        document={"error": "an older parser refused it"},
        status="quarantined",
        flags=["schema_invalid"],
    )


async def test_a_quarantined_event_valid_now_is_queued_for_processing(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    event = quarantined(PARKING)
    await store.ingest(event)
    result = await reprocess_event(store, config, providers, event.id)
    assert (result.status, result.event_id, result.event_type) == (
        "queued",
        event.id,
        "parking.completed",
    )
    stored = await store.get_event(event.id)
    assert stored is not None
    assert (stored.status, stored.dedup_key) == ("received", "parking:2791368361")
    assert stored.subject == "parking/2791368361"
    assert stored.document["licenseNumber"] == "ABC123"

    with pytest.raises(Conflict) as again:
        await reprocess_event(store, config, providers, event.id)
    assert again.value.code == "not-quarantined"
    with pytest.raises(NotFound) as missing:
        await reprocess_event(store, config, providers, "nope")
    assert missing.value.detail == "no event with id nope"


async def test_a_quarantined_duplicate_names_the_event_it_duplicates(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    first = quarantined(PARKING)
    second = quarantined(PARKING + b" ")
    await store.ingest(first)
    await store.ingest(second)
    assert (await reprocess_event(store, config, providers, first.id)).status == "queued"
    result = await reprocess_event(store, config, providers, second.id)
    assert (result.status, result.duplicate_of) == ("duplicate", first.id)
    assert result.detail.startswith(f"duplicate of event {first.id}")
    stored = await store.get_event(second.id)
    assert stored is not None and stored.status == "quarantined"


async def test_a_still_invalid_event_answers_422_with_the_parser_message(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    event = quarantined(b'{"parkingId": "not a number"}')
    await store.ingest(event)
    with pytest.raises(Unprocessable) as err:
        await reprocess_event(store, config, providers, event.id)
    assert err.value.code == "still-invalid"
    assert "parkingId" in err.value.detail or "Expected" in err.value.detail


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "authorization": "Bearer must-never-be-kept",
        "user-agent": "ampeco",
    }


async def reject(
    store: SqliteStore,
    config: Config,
    providers: dict[str, Provider[Any]],
    source_name: str,
    headers: dict[str, str],
    body: bytes,
    reason: str = "unauthorized",
) -> str:
    source = config.source(source_name)
    assert source is not None
    provider = providers[source.provider]
    rejection = Rejection(
        id=new_id(),
        received_at=datetime.now(UTC),
        source=source_name,
        provider=source.provider,
        method="POST",
        path=f"/hooks/{source_name}",
        status=401,
        reason=reason,
        detail="the X-Signature signature does not match the body",
        headers={},
        remote="127.0.0.1",
        body_sha256=body_hash(body),
        body_size=len(body),
        body=body[:16],
        replay=provider.replay_copy(source, headers, body),
    )
    await store.record_rejection(rejection)
    return rejection.id


async def test_the_replay_copy_keeps_only_signature_headers(
    tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    ampeco, easypark = config.source("ampeco"), config.source("easypark-key")
    assert ampeco is not None and easypark is not None
    raw = providers["ampeco"].replay_copy(ampeco, signed_headers(b"{}", "x"), b"{}")
    assert raw is not None
    copy = read_replay_copy(raw)
    assert set(copy.headers) == {"content-type", "x-signature"}
    assert copy.body == b"{}"
    assert b"must-never-be-kept" not in raw
    unsigned = {"content-type": "application/json"}
    assert providers["ampeco"].replay_copy(ampeco, unsigned, b"{}") is None
    headers = {"x-partner-key": "secret-key", "content-type": "application/json"}
    assert providers["easypark"].replay_copy(easypark, headers, b"{}") is None


async def test_a_rejected_call_passes_after_the_secret_is_configured(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    before = config_of(tmp_path, [AMPECO_NEW])
    rejection_id = await reject(
        store, before, providers, "ampeco", signed_headers(SESSION_STOP, NEW_SECRET), SESSION_STOP
    )
    with pytest.raises(Unprocessable) as still:
        await rerun_rejection(store, before, providers, rejection_id)
    assert still.value.code == "still-invalid"
    assert "signature does not match" in still.value.detail

    after = config_of(tmp_path, [AMPECO_NEW, NEW_SECRET])
    result = await rerun_rejection(store, after, providers, rejection_id)
    assert (result.status, result.event_type) == ("stored", "SessionStartStopNotification")
    event = await store.get_event(result.event_id)
    assert event is not None
    assert event.raw_body == SESSION_STOP
    assert event.status == "received"
    assert "authorization" not in event.headers
    rejection = await store.get_rejection(rejection_id)
    assert rejection is not None and rejection.rerun_event_id == result.event_id

    with pytest.raises(Conflict) as twice:
        await rerun_rejection(store, after, providers, rejection_id)
    assert twice.value.code == "already-rerun"

    # The same call refused again and re-run: the inbox already holds it.
    again = await reject(
        store, before, providers, "ampeco", signed_headers(SESSION_STOP, NEW_SECRET), SESSION_STOP
    )
    duplicate = await rerun_rejection(store, after, providers, again)
    assert (duplicate.status, duplicate.duplicate_of) == ("duplicate", result.event_id)
    page = await store.list_events(EventFilter(source="ampeco"), None, 10)
    assert len(page.items) == 1


async def test_a_rejection_without_a_replay_copy_says_why(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    headers = {"authorization": "Basic eDp5", "content-type": "application/json"}
    rejection_id = await reject(store, config, providers, "easypark", headers, PARKING)
    with pytest.raises(Conflict) as err:
        await rerun_rejection(store, config, providers, rejection_id)
    assert err.value.code == "no-replay-copy"
    assert "never stored" in err.value.detail and "EasyPark" in err.value.detail
    with pytest.raises(NotFound) as missing:
        await rerun_rejection(store, config, providers, "nope")
    assert missing.value.detail == "no rejection with id nope"


async def test_rejection_listing_shows_the_rerun_but_not_the_copy(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    rejection_id = await reject(
        store, config, providers, "ampeco", signed_headers(SESSION_STOP, AMPECO_NEW), SESSION_STOP
    )
    result = await rerun_rejection(store, config, providers, rejection_id)
    page = await store.list_rejections("ampeco", None, 10)
    (item,) = page.items
    assert item.rerun_event_id == result.event_id
    assert not hasattr(item, "replay")
    assert msgspec.json.encode(item.headers) == b"{}"


async def test_a_zaptec_rejection_without_a_copy_speaks_of_zaptec(
    store: SqliteStore, tmp_path: Path, providers: dict[str, Provider[Any]]
) -> None:
    config = config_of(tmp_path, [AMPECO_NEW])
    headers = {"authorization": "Bearer nope", "content-type": "application/json"}
    body = b'{"ChargerId": "c1", "TokenId": "t1"}'
    rejection_id = await reject(store, config, providers, "zaptec", headers, body)
    with pytest.raises(Conflict) as err:
        await rerun_rejection(store, config, providers, rejection_id)
    assert "Zaptec does not send a session start or end again" in err.value.detail
    assert "EasyPark" not in err.value.detail
