"""The AMPECO fixtures are the emulator's bodies at `FIXTURE_AT`: one source for both."""

from __future__ import annotations

from pathlib import Path

import pytest

from hookgate.emulate import fixtures
from hookgate.emulate.ampeco_samples import NAMES

pytestmark = pytest.mark.backends("sqlite", "postgresql")

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def test_every_ampeco_fixture_is_the_emulators_body_byte_for_byte() -> None:
    documents = fixtures.documents()
    assert set(documents) == {f"ampeco/{name}.json" for name in NAMES}
    stale = [
        relative
        for relative, document in documents.items()
        if (FIXTURES / relative).read_text(encoding="utf-8") != fixtures.render(document)
    ]
    assert stale == [], "run `python -m hookgate.emulate.fixtures` and commit the result"


def test_the_writer_reproduces_the_committed_fixtures(tmp_path: Path) -> None:
    assert fixtures.main([str(tmp_path)]) == 0
    for path in (tmp_path / "ampeco").glob("*.json"):
        assert path.read_bytes() == (FIXTURES / "ampeco" / path.name).read_bytes()
