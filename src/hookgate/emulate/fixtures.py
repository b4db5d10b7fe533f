"""The contract test fixtures of AMPECO are the emulator's own bodies, dated `FIXTURE_AT`.

    python -m hookgate.emulate.fixtures [tests/contract/fixtures]

writes `ampeco/<notification>.json` from `ampeco_samples.sample(name, 0, FIXTURE_AT)`;
`tests/contract/test_emulator_fixtures.py` fails when a fixture and the emulator differ,
so the bodies the contract tests prove are the bodies `hookgate send ampeco` sends (then
dated around now instead).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hookgate.emulate.ampeco_samples import FIXTURE_AT, NAMES, sample

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "tests" / "contract" / "fixtures"


def documents() -> dict[str, Any]:
    """Relative fixture path -> its document."""
    return {f"ampeco/{name}.json": sample(name, 0, FIXTURE_AT) for name in NAMES}


def render(document: Any) -> str:
    """A fixture file's text: two-space indented UTF-8 JSON and a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write every fixture under the directory given (default: the repository's)."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else DEFAULT_DIR
    for relative, document in documents().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document), encoding="utf-8")
    print(f"wrote {len(documents())} fixtures under {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
