"""The docs say what the code does: every configuration key is documented where the reader
looks for it, every rejection reason named is one the gateway gives, links resolve, and
the figures quoted agree with the benchmark results they cite."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hookgate.cli import main
from hookgate.config import Config, LoggingConfig
from hookgate.domain import rules as model

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Tables whose keys are documented with the feature rather than in configuration.md.
ELSEWHERE: dict[type, str] = {
    model.Group: "authorization.md",
    model.ChargerRule: "authorization.md",
    model.Token: "authorization.md",
    model.Budget: "authorization.md",
}


def _structs_in(annotation: Any) -> list[type[msgspec.Struct]]:
    """The Struct types a field's annotation refers to (through lists, unions, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return [annotation]
    return [found for arg in typing.get_args(annotation) for found in _structs_in(arg)]


def _keys(struct: type[msgspec.Struct], into: dict[str, set[str]], where: str) -> None:
    """Every key a TOML table of type `struct` accepts, by the document that must name it;
    nested tables count for the same document unless listed in ELSEWHERE."""
    names = into.setdefault(where, set())
    tag = struct.__struct_config__.tag_field
    if tag:
        names.add(tag)
    for field in msgspec.structs.fields(struct):
        names.add(field.encode_name)
        for nested in _structs_in(field.type):
            _keys(nested, into, ELSEWHERE.get(nested, where))


def _sections(text: str) -> dict[str, str]:
    """`## heading` → the text up to the next `## ` heading (subsections included)."""
    parts = re.split(r"^## ", text, flags=re.M)
    return {part.split("\n", 1)[0].strip(): part for part in parts[1:]}


def _schema() -> dict[str, dict[str, set[str]]]:
    """Top-level table → {document or section: keys}."""
    tables: dict[str, dict[str, set[str]]] = {}
    for field in msgspec.structs.fields(Config):
        (struct, *variants) = _structs_in(field.type)
        is_array = typing.get_origin(field.type) is list
        heading = f"`[[{field.encode_name}]]`" if is_array else f"`[{field.encode_name}]`"
        found: dict[str, set[str]] = {}
        for each in (struct, *variants):
            _keys(each, found, heading)
        tables[field.encode_name] = found
    return tables


def test_every_config_key_is_in_configuration_md() -> None:
    sections = _sections((DOCS / "configuration.md").read_text(encoding="utf-8"))
    missing = []
    tables = _schema()
    assert {"server", "storage", "logging", "sources", "destinations"} <= tables.keys()
    for table, by_place in tables.items():
        for place, keys in by_place.items():
            if place.endswith(".md"):
                text = (DOCS / place).read_text(encoding="utf-8")
            else:
                assert place in sections, f"configuration.md has no section {place} for {table}"
                text = sections[place]
            missing += [f"{table}: {key} (in {place})" for key in keys if f"`{key}`" not in text]
    assert not missing, "undocumented configuration keys:\n" + "\n".join(sorted(missing))


def test_the_key_check_sees_keys_added_later() -> None:
    class Extra(LoggingConfig, kw_only=True):
        brand_new_key: bool = False

    found: dict[str, set[str]] = {}
    _keys(Extra, found, "`[logging]`")
    assert "brand_new_key" in found["`[logging]`"]
    section = _sections((DOCS / "configuration.md").read_text(encoding="utf-8"))["`[logging]`"]
    assert "`brand_new_key`" not in section


def _reject_codes() -> set[str]:
    """Every reason the code refuses with: `Reject(status, "code", ...)` literals, and the
    token endpoint's RFC 6749 errors recorded as `oauth-<error>`."""
    codes: set[str] = set()
    for path in (ROOT / "src" / "hookgate").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        codes |= set(re.findall(r'Reject\(\s*\d{3},\s*"([a-z-]+)"', text))
        if path.name == "oauth.py":
            codes |= {f"oauth-{e}" for e in re.findall(r'_error\(\s*\d{3},\s*"([a-z_]+)"', text)}
    return codes


def test_operations_names_only_real_rejection_reasons_and_all_of_them() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    codes = _reject_codes()
    assert {"unauthorized", "schema-violation", "oauth-invalid_grant"} <= codes
    named = set(re.findall(r'reason="([^"]+)"', text))
    assert named, "operations.md names no reason label"
    assert named <= codes, f"not reasons the gateway gives: {sorted(named - codes)}"
    table = text[text.index("### Rejection reasons") : text.index("## Logs")]
    listed = set(re.findall(r"^\| `([a-z_-]+)`", table, flags=re.M))
    assert listed == codes, (sorted(codes - listed), sorted(listed - codes))


def test_operations_states_the_log_format_the_files_use() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    from hookgate.cli.server import STARTER

    assert 'format = "console"' in STARTER and LoggingConfig().format == "json"
    logs = _sections(text)["Logs"]
    assert 'format = "console"' in logs and "`json` by default" in logs
    for event in (
        "webhook accepted",
        "request rejected",
        "rejection_id",
        "delivery_dead",
        "circuit_breaker_opened",
        "circuit_breaker_closed",
    ):
        assert event in logs, event


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize(
    "page", sorted([*DOCS.glob("*.md"), *DOCS.glob("adr/*.md"), ROOT / "README.md"])
)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = [
        target
        for target in LINK.findall(text)
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken, f"{page.name}: {broken}"


def test_providers_md_cites_only_what_the_repository_holds() -> None:
    text = (DOCS / "providers.md").read_text(encoding="utf-8")
    assert "contract file" not in text
    assert "tests/contract/fixtures" in text


def _bench_sqlite() -> tuple[dict[str, int], dict[str, float]]:
    """hookgate-sqlite's saturation req/s and p99 at 1000/s per scenario, from the results."""
    text = (ROOT / "bench" / "results" / "ingest.md").read_text(encoding="utf-8")
    saturation: dict[str, int] = {}
    p99: dict[str, float] = {}
    for scenario in ("ampeco", "easypark", "ztlment", "mix", "zaptec"):
        part = text[text.index(f"### {scenario}\n") :]
        row = next(line for line in part.splitlines() if line.startswith("| hookgate-sqlite |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        saturation[scenario] = int(cells[1])
        p99[scenario] = float(cells[3].split("/")[1])
    return saturation, p99


def test_deployment_figures_are_the_benchmarks() -> None:
    text = (DOCS / "deployment.md").read_text(encoding="utf-8")
    sizing = _sections(text)["Sizing from the benchmarks"]
    saturation, p99 = _bench_sqlite()
    assert f"{saturation['zaptec']:,}" in sizing and f"{saturation['ztlment']:,}" in sizing
    others = [p99[s] for s in ("ampeco", "easypark", "ztlment", "mix")]
    assert f"{min(others)}\u2013{max(others)} ms" in sizing  # an en dash, as in the text
    assert f"{p99['zaptec']} ms" in sizing
    assert "bench/results/ingest.md" in sizing
    stored = json.loads((ROOT / "bench" / "results" / "ingest.json").read_text(encoding="utf-8"))
    assert stored, "the cited results exist"


def test_architecture_has_no_rule_engine_still_to_come() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    (row,) = [line for line in text.splitlines() if line.startswith("| `authorization/`")]
    assert "later" not in row and "engine" in row


def test_readme_admin_token_and_demo_outcomes() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "TOKEN=$(.venv/bin/hookgate admin-token)" in text
    assert "NO_CREDIT" in text.split("## Demo")[1].split("The admin API")[0]


def test_every_command_in_the_readme_table_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Commands") : text.index("## Configuration")]
    named = set(re.findall(r"^\| `hookgate ([a-z-]+)", table, flags=re.M))
    assert {"init", "serve", "admin-token"} <= named
    assert named <= set(main.commands), sorted(named - set(main.commands))
