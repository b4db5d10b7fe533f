"""What differs between SQLite and PostgreSQL, in one object per backend.

The data layer (store/inbox.py, authz.py, outbox.py, reports.py, retention.py) writes each
statement once, with `?` placeholders, and asks the dialect only for what really differs:
placeholders, how instants, JSON and booleans travel, a few function and clause spellings,
row locks and the migration column types. Values always travel as parameters; the
dialect never builds SQL from values.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from hookgate.timeutil import iso, parse_iso

DialectName = Literal["sqlite", "postgresql"]


@functools.lru_cache(maxsize=2048)
def _percent(text: str) -> str:
    return text.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class Dialect:
    """One backend's spelling. Instants are ISO text in SQLite (`timeutil.iso`, which
    sorts as time) and TIMESTAMPTZ in PostgreSQL; JSON is text in both on the way in and
    out (PostgreSQL keeps it as JSON, key order included); booleans are 0/1 in SQLite."""

    name: DialectName
    # Statement spellings.
    octet_length: str
    for_update: str
    skip_locked: str
    # PostgreSQL compares text by the database's collation; key paging wants byte order.
    byte_order: str
    # An INSERT … SELECT of parameters needs JSON parameters typed as JSON.
    json_mark: str
    # PostgreSQL text cannot hold NUL.
    clean_text: bool
    # An inbox insert first looks for the key among committed rows, without waiting:
    # ON CONFLICT alone would wait for any transaction holding the stored row (another
    # instance's processing batch) before it can tell a duplicate. SQLite has one writer.
    probe_before_insert: bool
    # `a IS NOT b` for values, not only NULL (SQLite before 3.39 lacks IS DISTINCT FROM).
    distinct_from: str
    # Sums decimal text exactly in SQL (CAST AS NUMERIC); SQLite's would be a float.
    exact_numeric: bool
    # Column types of the migrations (store/migrations/*.sql placeholders).
    types: Mapping[str, str] = field(default_factory=dict)

    def sql(self, text: str) -> str:
        """`text` (written with `?`) in this backend's placeholder style."""
        return text if self.name == "sqlite" else _percent(text)

    def instant(self, value: datetime | None) -> Any:
        """A datetime as a parameter of an instant column."""
        if value is None:
            return None
        return iso(value) if self.name == "sqlite" else value

    def read_instant(self, value: Any) -> datetime:
        """An instant column's value as an aware UTC datetime."""
        return parse_iso(value) if isinstance(value, str) else value.astimezone(UTC)

    def flag(self, value: bool) -> Any:
        """A boolean as a parameter."""
        return int(value) if self.name == "sqlite" else bool(value)

    def text(self, value: str | None) -> str | None:
        """Text a provider sent, storable as it is (NUL becomes U+FFFD in PostgreSQL)."""
        if self.clean_text and value is not None and "\x00" in value:
            return value.replace("\x00", "\ufffd")
        return value

    def plain(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A row as callers see it: instants as ISO text, the form both backends return."""
        if self.name == "sqlite":
            return dict(row)
        return {k: iso(v) if isinstance(v, datetime) else v for k, v in row.items()}

    def array_has(self, column: str) -> str:
        """`column` (a JSON array of text) holds the `?` parameter."""
        if self.name == "sqlite":
            return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = ?)"
        return f"EXISTS (SELECT 1 FROM json_array_elements_text({column}) AS e(v) WHERE e.v = ?)"

    def any_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values` (at most a few hundred: callers chunk)."""
        if self.name == "sqlite":
            return f"{column} IN ({','.join('?' * len(values))})", list(values)
        return f"{column} = ANY(?)", [list(values)]


SQLITE = Dialect(
    name="sqlite",
    octet_length="length",
    for_update="",
    skip_locked="",
    byte_order="",
    json_mark="?",
    clean_text=False,
    probe_before_insert=False,
    distinct_from="IS NOT",
    exact_numeric=False,
    types={
        "blob": "BLOB",
        "json": "TEXT",
        "ts": "TEXT",
        "bool": "INTEGER",
        "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
    },
)

POSTGRESQL = Dialect(
    name="postgresql",
    octet_length="octet_length",
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    byte_order=' COLLATE "C"',
    json_mark="?::json",
    clean_text=True,
    probe_before_insert=True,
    distinct_from="IS DISTINCT FROM",
    exact_numeric=True,
    types={
        "blob": "BYTEA",
        # JSON, not JSONB: the text is kept as written (key order included), so every
        # backend returns identical documents.
        "json": "JSON",
        "ts": "TIMESTAMPTZ",
        "bool": "BOOLEAN",
        "serial_pk": "BIGSERIAL PRIMARY KEY",
    },
)

DIALECTS: dict[str, Dialect] = {"sqlite": SQLITE, "postgresql": POSTGRESQL}


def dialect_of(name: DialectName | Dialect) -> Dialect:
    """The dialect object for a name (a Dialect is returned as it is)."""
    return name if isinstance(name, Dialect) else DIALECTS[name]
