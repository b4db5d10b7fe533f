"""One migration history for every backend.

Each `NNNN_name.sql` file is applied once, in order, inside a transaction. Column types
that differ between backends are written as placeholders (`{ts}`, `{json}`, ...) and
filled from the dialect object (store/dialect.py). What has
no common form (SQLite's FTS5 tables, PostgreSQL's tsvector and GIN indexes) goes into
`NNNN_name.<dialect>.sql` beside it: its statements follow the common ones of the same
version, and a version may have a dialect file only.
"""

from __future__ import annotations

from importlib import resources

from hookgate.store.dialect import DIALECTS, Dialect, DialectName, dialect_of


def migrations(dialect: DialectName | Dialect) -> list[tuple[int, str, list[str]]]:
    """(version, name, statements) for every migration, oldest first."""
    d = dialect_of(dialect)
    names: dict[int, str] = {}
    found: dict[int, list[tuple[bool, list[str]]]] = {}
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        stem = entry.name[:-4]
        base, _, only = stem.partition(".")
        if only and only not in DIALECTS:
            raise ValueError(f"migration {entry.name}: unknown dialect {only!r}")
        if only and only != d.name:
            continue
        version = int(base.split("_", 1)[0])
        sql = entry.read_text(encoding="utf-8").format(**d.types)
        lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
        statements = [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
        names[version] = base
        found.setdefault(version, []).append((bool(only), statements))
    return [
        (version, names[version], [s for _, part in sorted(found[version]) for s in part])
        for version in sorted(found)
    ]
