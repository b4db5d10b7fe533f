"""The AMPECO, EasyPark and ZTLment fixtures are the emulators' bodies at fixed moments:
one source for what the contract tests prove and what `hookgate send` sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hookgate.emulate import easypark, fixtures
from hookgate.emulate.ampeco_samples import NAMES

pytestmark = pytest.mark.backends("sqlite", "postgresql")

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_every_fixture_is_the_emulators_body_byte_for_byte() -> None:
    documents = fixtures.documents()
    for provider in ("ampeco", "easypark", "ztlment"):
        on_disk = {p.relative_to(FIXTURES).as_posix() for p in (FIXTURES / provider).glob("*")}
        assert on_disk == {r for r in documents if r.startswith(provider + "/")}
    assert {r for r in documents if r.startswith("ampeco/")} == {
        f"ampeco/{name}.json" for name in NAMES
    }
    stale = [
        relative
        for relative, document in documents.items()
        if (FIXTURES / relative).read_text(encoding="utf-8") != fixtures.render(document)
    ]
    assert stale == [], "run `python -m hookgate.emulate.fixtures` and commit the result"


def test_the_writer_reproduces_the_committed_fixtures(tmp_path: Path) -> None:
    assert fixtures.main([str(tmp_path)]) == 0
    written = sorted(tmp_path.rglob("*.json"))
    assert len(written) == len(fixtures.documents())
    for path in written:
        assert path.read_bytes() == (FIXTURES / path.relative_to(tmp_path)).read_bytes()


def test_the_emulator_sends_the_fixture_shapes_dated_now() -> None:
    """The same builders with the moment of the run instead of the fixture's."""
    now = datetime.now(UTC).replace(microsecond=0)
    sent = easypark.transaction(2_791_368_361, end=now)
    fixture = fixtures.easypark_documents()["current"]
    assert list(sent) == list(fixture)
    assert sent["endDate"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert sent["endDate"] != fixture["endDate"]
    assert now - timedelta(hours=10, minutes=1) <= datetime.fromisoformat(sent["startDate"])
