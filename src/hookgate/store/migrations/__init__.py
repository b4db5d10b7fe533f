"""One migration history for every backend.

Each `NNNN_name.sql` file is applied once, in order, inside a transaction. Column types
that differ between backends are written as placeholders and filled per dialect. What has
no common form (SQLite's FTS5 tables, PostgreSQL's tsvector and GIN indexes) goes into
`NNNN_name.<dialect>.sql` beside it: its statements follow the common ones of the same
version, and a version may have a dialect file only.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {
        "blob": "BLOB",
        "json": "TEXT",
        "ts": "TEXT",
        "bool": "INTEGER",
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
    "postgresql": {
        "blob": "BYTEA",
        # JSON, not JSONB: the text is kept as written (key order included), so every
        # backend returns identical documents; nothing queries inside them.
        "json": "JSON",
        "ts": "TIMESTAMPTZ",
        "bool": "BOOLEAN",
        "serial_pk": "BIGSERIAL PRIMARY KEY",
    },
}


def migrations(dialect: Dialect) -> list[tuple[int, str, list[str]]]:
    """(version, name, statements) for every migration, oldest first."""
    names: dict[int, str] = {}
    found: dict[int, list[tuple[bool, list[str]]]] = {}
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        stem = entry.name[:-4]
        base, _, only = stem.partition(".")
        if only and only not in _TYPES:
            raise ValueError(f"migration {entry.name}: unknown dialect {only!r}")
        if only and only != dialect:
            continue
        version = int(base.split("_", 1)[0])
        sql = entry.read_text(encoding="utf-8").format(**_TYPES[dialect])
        lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
        statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
        names[version] = base
        found.setdefault(version, []).append((bool(only), statements))
    return [
        (version, names[version], [s for _, part in sorted(found[version]) for s in part])
        for version in sorted(found)
    ]
