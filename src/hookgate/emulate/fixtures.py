"""The contract test fixtures are the emulators' own bodies, at fixed moments.

    python -m hookgate.emulate.fixtures [tests/contract/fixtures]

writes `ampeco/<notification>.json` from `ampeco_samples.sample(name, 0, FIXTURE_AT)`,
`easypark/*.json` from `easypark.transaction` (the contract's examples pinned) and
`ztlment/*.json` from `ztlment.notification`;
`tests/contract/test_emulator_fixtures.py` fails when a fixture and the emulator differ,
so the bodies the contract tests prove are the bodies `hookgate send` sends (then dated
around now instead). Zaptec's fixtures are hand-written: they test key aliases and casing
that Zaptec's own bodies do not mix.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hookgate.emulate.ampeco_samples import FIXTURE_AT, NAMES, sample
from hookgate.emulate.easypark import transaction
from hookgate.emulate.ztlment import notification
from hookgate.providers.ztlment import STATES

DEFAULT_DIR = Path(__file__).resolve().parents[3] / "tests" / "contract" / "fixtures"


def easypark_documents() -> dict[str, Any]:
    """The contract's three EasyPark examples, built by the emulator's `transaction`."""
    current = transaction(
        2_791_368_361,
        start=datetime(2025, 12, 4, 12, 2, 37, tzinfo=UTC),
        end=datetime(2025, 12, 4, 13, 12, tzinfo=UTC),
        price=Decimal("22.45"),
        plate="ABC123",
        area=0,
    )
    legacy = transaction(
        2_790_114_207,
        start=datetime(2025, 12, 3, 8, 15, tzinfo=UTC),
        end=datetime(2025, 12, 3, 10, 47, 12, tzinfo=UTC),
        price=Decimal("118.75"),
        plate="KLM45P",
        area=1,
        legacy=True,
        offset_hours=1,
    )
    # Amounts that do not add up (net 19.96 of 22.45 at 25 % VAT): flagged, not refused.
    inconsistent = transaction(
        2_791_402_215,
        start=datetime(2025, 12, 4, 15, 30, tzinfo=UTC),
        end=datetime(2025, 12, 4, 16, 5, 41, tzinfo=UTC),
        price=Decimal("22.45"),
        plate="XYZ789",
        area=0,
    ) | {"priceExclusiveVatAmount": 19.96}
    return {"current": current, "legacy": legacy, "inconsistent": inconsistent}


def ztlment_documents() -> dict[str, Any]:
    """Every documented state of one payment object, an approval, and an unknown state."""
    out: dict[str, Any] = {
        state: notification(48_213, "PAYMENT_OBJECT", state) for state in sorted(STATES)
    }
    out["approval_object"] = notification(9_120, "APPROVAL_OBJECT", "PENDING_APPROVAL")
    out["unknown_state"] = notification(48_214, "PAYMENT_OBJECT", "PENDING_FX_SETTLEMENT")
    return out


def documents() -> dict[str, Any]:
    """Relative fixture path -> its document."""
    out: dict[str, Any] = {f"ampeco/{name}.json": sample(name, 0, FIXTURE_AT) for name in NAMES}
    out |= {f"easypark/{name}.json": doc for name, doc in easypark_documents().items()}
    out |= {f"ztlment/{name}.json": doc for name, doc in ztlment_documents().items()}
    return out


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
