"""Emulated events are dated around now (or `--at`), with realistic durations and energy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from hookgate.emulate import ampeco, easypark, zaptec
from hookgate.emulate.ampeco_samples import PROFILES, session_sequence
from hookgate.providers.ampeco_catalog import EVENTS, occurred_at
from hookgate.timeutil import parse_iso

AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _times(bodies: list[dict[str, object]]) -> list[datetime]:
    out = []
    for body in bodies:
        event = msgspec.convert(body, EVENTS[str(body["notification"])])
        text = occurred_at(event)
        if text:
            out.append(parse_iso(text))
    return out


@pytest.mark.parametrize("seq_start", [0, 123_456, 999_999_999])
def test_all_types_are_dated_within_hours_before_at(seq_start: int) -> None:
    # Before: the times followed the (random) sequence number, in 2110 or 3876.
    bodies = ampeco.bodies("all", 3, seq_start, AT)
    times = _times(bodies)
    assert len(times) > 3 * 30
    assert all(AT - timedelta(hours=9) <= t <= AT for t in times), (min(times), max(times))


def test_without_at_the_events_happen_now() -> None:
    before = datetime.now(UTC)
    times = _times(ampeco.bodies(None, 2, 987_654_321))
    after = datetime.now(UTC)
    assert all(before - timedelta(hours=9) <= t <= after for t in times)
    assert max(times) >= before - timedelta(minutes=10)  # the CDR of the first session


@pytest.mark.parametrize("seq", range(len(PROFILES) * 2))
def test_sessions_last_20_minutes_to_8_hours_with_consistent_meters(seq: int) -> None:
    bodies = session_sequence(100_000 + seq * 31, 12, 1, "TAG", seq, start=AT)
    start, stop = bodies[0], bodies[-2]
    begun = parse_iso(str(start["startedAtTimestamp"]))
    ended = parse_iso(str(stop["stoppedAtTimestamp"]))
    assert begun == AT
    assert timedelta(minutes=20) <= ended - begun <= timedelta(hours=8)
    wh = stop["energyConsumed"]
    assert isinstance(wh, int) and 2_000 <= wh <= 80_000
    assert stop["meterStop"] == start["meterStart"] + wh  # type: ignore[operator]
    update = bodies[-3]["session"]
    assert update["energy"] == wh  # type: ignore[index]


def test_the_profiles_span_short_and_long_small_and_large() -> None:
    minutes = [p.charge_minutes + 5 for p in PROFILES]
    energy = [p.energy_wh for p in PROFILES]
    assert min(minutes) == 20 and max(minutes) <= 8 * 60
    assert min(energy) < 5_000 and max(energy) > 70_000


@pytest.mark.parametrize("parking_id", [1, 2_791_368_361, 8_999_999_999])
def test_parkings_end_at_the_given_time_and_last_15_minutes_to_10_hours(parking_id: int) -> None:
    document = easypark.transaction(parking_id, end=AT)
    start, end = parse_iso(document["startDate"]), parse_iso(document["endDate"])
    assert end == AT
    assert timedelta(minutes=15) <= end - start <= timedelta(hours=10, minutes=1)
    assert document["price"] >= 5


def test_zaptec_plug_ins_last_20_minutes_to_8_hours_with_up_to_80_kwh() -> None:
    rng = random.Random(7)
    for _ in range(200):
        plugged, kwh = zaptec.charge(rng)
        assert timedelta(minutes=20) <= plugged <= timedelta(hours=8)
        assert 2.0 <= kwh <= 80.0
