"""AMPECO contract: the typed catalogue against AMPECO's field listing, fixtures and samples."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.emulate.ampeco_samples import NAMES, sample, session_sequence
from hookgate.providers.ampeco_catalog import (
    DEPRECATED,
    EVENTS,
    CdrReceived,
    SessionMeterValuesNotification,
    SessionStartStopNotificationV2,
    SessionUpdateNotification,
    occurred_at,
    subject,
)

pytestmark = pytest.mark.backends("sqlite", "postgresql")

LISTING = Path(__file__).resolve().parents[3] / "shared/contracts/ampeco-callbacks.txt"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ampeco"

_FIELD = re.compile(
    r"^(?P<indent> *)(?P<name>[A-Za-z_]\w*)(?P<star>\*?): "
    r"(?P<type>integer|number|string|boolean|object|array|\?)(?P<rest>.*)$"
)


@dataclass
class Listed:
    """One notification type as AMPECO's listing describes it (top level only)."""

    deprecated: bool = False
    lines: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)
    nullable_required: set[str] = field(default_factory=set)


@functools.cache
def _parse_listing() -> dict[str, Listed]:
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in LISTING.read_text(encoding="utf-8").splitlines():
        if line.startswith("========== "):
            current = blocks.setdefault(line.split()[1], [])
        elif current is not None:
            current.append(line)
    listed: dict[str, Listed] = {}
    for name, lines in blocks.items():
        entry = Listed(deprecated="DEPRECATED" in lines, lines=lines)
        matches = [m for m in map(_FIELD.match, lines) if m]
        top = min(len(m["indent"]) for m in matches)
        for m in matches:
            if len(m["indent"]) != top:
                continue
            entry.fields.add(m["name"])
            if m["star"]:
                entry.required.add(m["name"])
                if re.search(r"\bnullable\b", m["rest"].split("desc=")[0]):
                    entry.nullable_required.add(m["name"])
        listed[name] = entry
    return listed


def listing() -> dict[str, Listed]:
    if not LISTING.is_file():
        pytest.skip(f"AMPECO field listing not found at {LISTING}")
    return _parse_listing()


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return body


def decode(body: dict[str, Any], name: str) -> msgspec.Struct:
    return msgspec.json.decode(json.dumps(body).encode(), type=EVENTS[name])


def required_fields(name: str) -> list[str]:
    return [f.name for f in msgspec.structs.fields(EVENTS[name]) if f.required]


def integer_id_fields() -> list[tuple[str, str]]:
    pairs = []
    for name, cls in EVENTS.items():
        for f in msgspec.structs.fields(cls):
            is_int = f.type is int or f.type == (int | None)
            if is_int and (f.name == "id" or f.name.endswith("Id")):
                pairs.append((name, f.name))
    return pairs


# --------------------------------------------------------------------------- listing


def test_catalogue_covers_every_listed_notification_in_order() -> None:
    assert list(listing()) == list(EVENTS)
    assert list(NAMES) == list(EVENTS)
    assert len(EVENTS) == 39


def test_deprecated_names_match_the_listing() -> None:
    assert {n for n, entry in listing().items() if entry.deprecated} == DEPRECATED


@pytest.mark.parametrize("name", list(EVENTS))
def test_struct_fields_and_required_set_follow_the_listing(name: str) -> None:
    entry = listing()[name]
    fields = {f.name for f in msgspec.structs.fields(EVENTS[name])}
    assert entry.fields <= fields, f"{name} lacks {sorted(entry.fields - fields)}"
    assert set(required_fields(name)) == entry.required | {"notification"}


@pytest.mark.parametrize("name", list(EVENTS))
def test_required_nullable_fields_accept_null_and_others_do_not(name: str) -> None:
    nullable = listing()[name].nullable_required
    for key in required_fields(name):
        body = fixture(name) | {key: None}
        if key in nullable:
            decode(body, name)
        else:
            with pytest.raises(msgspec.ValidationError):
                decode(body, name)


def _children(lines: list[str], parent: str) -> tuple[set[str], set[str]]:
    """Names and starred names of the direct children of a top-level object field."""
    names: set[str] = set()
    starred: set[str] = set()
    inside = False
    for m in filter(None, map(_FIELD.match, lines)):
        depth = len(m["indent"])
        if depth == 0:
            inside = m["name"] == parent
        elif inside and depth == 2:
            names.add(m["name"])
            if m["star"]:
                starred.add(m["name"])
    return names, starred


@pytest.mark.parametrize(
    ("name", "parent"),
    [
        ("SessionUpdateNotification", "session"),
        ("TariffChangedNotification", "tariff"),
        ("LocationChangedNotification", "location"),
        ("UserChangedNotification", "user"),
        ("chargingProfile.applied", "chargingProfile"),
        ("BootNotification", "bootNotification"),
    ],
)
def test_nested_models_follow_the_listing(name: str, parent: str) -> None:
    names, starred = _children(listing()[name].lines, parent)
    assert names, f"no children of {parent} in the listing"
    (info,) = [f for f in msgspec.structs.fields(EVENTS[name]) if f.name == parent]
    candidates = getattr(info.type, "__args__", (info.type,))
    (model,) = [t for t in candidates if isinstance(t, type) and issubclass(t, msgspec.Struct)]
    fields = msgspec.structs.fields(model)
    assert names <= {f.name for f in fields}
    assert {f.name for f in fields if f.required} == starred


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("name", list(EVENTS))
def test_every_notification_has_a_fixture_that_decodes(name: str) -> None:
    assert (FIXTURES / f"{name}.json").is_file()
    body = fixture(name)
    assert body["notification"] == name
    event = decode(body, name)
    assert type(event) is EVENTS[name]


def test_no_stray_fixture_files() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EVENTS)


@pytest.mark.parametrize("name", list(EVENTS))
def test_missing_any_required_field_is_rejected(name: str) -> None:
    for key in required_fields(name):
        body = fixture(name)
        assert key in body, f"fixture {name} lacks required {key}"
        del body[key]
        with pytest.raises(msgspec.ValidationError, match=key):
            decode(body, name)


@pytest.mark.parametrize(("name", "key"), integer_id_fields())
def test_wrong_type_for_an_integer_id_is_rejected(name: str, key: str) -> None:
    body = fixture(name) | {key: "17"}
    with pytest.raises(msgspec.ValidationError, match=key):
        decode(body, name)


def test_string_ids_stay_strings() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(fixture("cdr.received") | {"id": 184210}, "cdr.received")
    body = fixture("SessionUpdateNotification")
    body["session"]["id"] = 184210
    with pytest.raises(msgspec.ValidationError, match=r"session\.id"):
        decode(body, "SessionUpdateNotification")


def test_unknown_fields_and_new_enum_values_are_accepted() -> None:
    body = fixture("SessionUpdateNotification")
    body["futureTopLevel"] = {"x": 1}
    body["session"]["status"] = "suspended-by-grid-operator"
    body["session"]["futureNested"] = [1, 2]
    event = decode(body, "SessionUpdateNotification")
    assert isinstance(event, SessionUpdateNotification)
    assert event.session.status == "suspended-by-grid-operator"


@pytest.mark.parametrize("name", list(EVENTS))
def test_struct_options(name: str) -> None:
    cls = EVENTS[name]
    config = cls.__struct_config__
    assert config.omit_defaults is True
    assert config.forbid_unknown_fields is False
    with pytest.raises(TypeError):
        cls(name)  # keyword-only


# --------------------------------------------------------------------------- samples


@pytest.mark.parametrize("name", list(EVENTS))
def test_sample_decodes_is_deterministic_and_varies_with_seq(name: str) -> None:
    for seq in (0, 1, 7, 1000):
        body = sample(name, seq)
        assert body["notification"] == name
        msgspec.json.decode(msgspec.json.encode(body), type=EVENTS[name])
    assert sample(name, 3) == sample(name, 3)
    assert sample(name, 3) != sample(name, 4)


def test_sample_of_unknown_notification_raises_key_error() -> None:
    with pytest.raises(KeyError, match=re.escape("session.started")):
        sample("session.started")


def test_sample_times_are_utc_iso8601() -> None:
    body = sample("NetworkStatusNotification", 5)
    assert body["timestamp"] == "2025-12-04T12:00:00Z"  # FIXTURE_AT
    later = datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert sample("NetworkStatusNotification", 5, later)["timestamp"] == "2026-03-01T09:00:00Z"


# --------------------------------------------------------------------------- subject / time


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("session.start.stop.notification", "session/184210"),
        ("SessionStartStopNotification", "session/184210"),
        ("SessionMeterValuesNotification", "session/184210"),
        ("SessionUpdateNotification", "session/184210"),
        ("chargingProfile.applied", "session/184210"),
        ("NetworkStatusNotification", "charge-point/117"),
        ("HardwareStatusNotification", "charge-point/117"),
        ("BootNotification", "charge-point/117"),
        ("evse.changed", "evse/341"),
        ("cdr.received", "cdr/DE-AMP-0000184210"),
        ("transaction.changed", "transaction/448200"),
        ("UserChangedNotification", "user/5321"),
        ("TariffChangedNotification", "tariff/310"),
        ("authorization.changed", "authorization/912004"),
        ("idTag.changed", "id-tag/1880"),
        ("LocationChangedNotification", "location/23"),
    ],
)
def test_subject_names_the_primary_entity(name: str, expected: str) -> None:
    assert subject(decode(fixture(name), name)) == expected


def test_subject_prefers_session_over_charge_point() -> None:
    body = fixture("chargingProfile.applied")
    assert subject(decode(body, "chargingProfile.applied")) == "session/184210"
    body["sessionId"] = None
    assert subject(decode(body, "chargingProfile.applied")) == "charge-point/117"


@pytest.mark.parametrize("name", list(EVENTS))
def test_every_fixture_has_a_subject(name: str) -> None:
    assert re.fullmatch(r"[a-z-]+/\S+", subject(decode(fixture(name), name)) or "")


def test_occurred_at_uses_the_event_time() -> None:
    assert occurred_at(decode(fixture("cdr.received"), "cdr.received")) == "2025-12-04T13:01:00Z"
    assert (
        occurred_at(decode(fixture("chargingProfile.applied"), "chargingProfile.applied"))
        == "2025-12-04T12:00:03Z"
    )
    update = decode(fixture("SessionUpdateNotification"), "SessionUpdateNotification")
    assert occurred_at(update) == "2025-12-04T13:00:00Z"
    meters = decode(fixture("SessionMeterValuesNotification"), "SessionMeterValuesNotification")
    assert occurred_at(meters) == "2025-12-04T12:30:00Z"
    data = decode(fixture("chargePoint.dataTransferReceived"), "chargePoint.dataTransferReceived")
    assert occurred_at(data) is None


# --------------------------------------------------------------------------- lifecycle


def test_session_sequence_is_a_consistent_lifecycle() -> None:
    bodies = session_sequence(5001, 17, 5, "04AABBCCDDEEFF", seq=2)
    events = [decode(b, b["notification"]) for b in bodies]
    assert [b["notification"] for b in bodies] == [
        "session.start.stop.notification",
        "SessionMeterValuesNotification",
        "SessionMeterValuesNotification",
        "SessionMeterValuesNotification",
        "SessionUpdateNotification",
        "SessionUpdateNotification",
        "session.start.stop.notification",
        "cdr.received",
    ]
    start, stop = events[0], events[-2]
    assert isinstance(start, SessionStartStopNotificationV2)
    assert isinstance(stop, SessionStartStopNotificationV2)
    assert (start.action, stop.action) == ("start", "stop")
    assert start.idTag == stop.idTag == "04AABBCCDDEEFF"
    assert stop.energyConsumed == stop.meterStop - stop.meterStart > 0
    assert stop.meterStart == start.meterStart

    registers = [
        mv.value
        for e in events
        if isinstance(e, SessionMeterValuesNotification)
        for mv in e.meterValues or ()
        if mv.measurand == "Energy Active Import Register"
    ]
    assert len(registers) == 3
    assert start.meterStart < registers[0] < registers[1] < registers[2] < stop.meterStop

    updates = [e for e in events if isinstance(e, SessionUpdateNotification)]
    assert [u.session.status for u in updates] == ["active", "finished"]
    assert updates[-1].session.energy == stop.energyConsumed
    assert all(u.session.id == "5001" for u in updates)
    assert {subject(e) for e in events[:-1]} == {"session/5001"}
    assert isinstance(events[-1], CdrReceived)

    times = [occurred_at(e) for e in events]
    assert all(times)
    assert times == sorted(t or "" for t in times)


def test_session_sequence_is_deterministic() -> None:
    assert session_sequence(1, 2, 3, "T", 4) == session_sequence(1, 2, 3, "T", 4)
    assert session_sequence(1, 2, 3, "T", 4) != session_sequence(1, 2, 3, "T", 5)
