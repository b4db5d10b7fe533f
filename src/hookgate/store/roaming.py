"""SQL of roaming (OCPI parties and their credentials, the token list CPOs page through,
the token changes a differential OCPP local list carries), written once for SQLite and
PostgreSQL over a DB-API connection.

The backends only run these functions through `Store.sql_read(fn)` and
`Store.sql_write(fn)` (see store/alerting.py for the same arrangement): nothing here is on
the ingest path, and the dialect object supplies the few spellings that differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from hookgate.store.dialect import POSTGRESQL, SQLITE, Dialect

_PARTY_COLUMNS = (
    "id, name, status, token_b, versions_url, version, endpoints, roles, created_at, updated_at"
)
_INSTANTS = ("created_at", "updated_at")


class Party(msgspec.Struct, kw_only=True):
    """A CPO hookgate issued a registration token to, as stored (no token digests)."""

    id: str
    name: str
    # issued (token A outstanding), registered, unregistered (the CPO deleted its
    # credentials) or revoked (by an operator).
    status: str
    token_b: str | None
    versions_url: str | None
    version: str | None
    endpoints: list[dict[str, Any]] | None
    roles: list[dict[str, Any]] | None
    created_at: datetime
    updated_at: datetime


class TokenRow(msgspec.Struct, kw_only=True):
    """One token of the OCPI token list: its stored document and last change."""

    uid: str
    doc: bytes
    updated_at: datetime


def _dialect(conn: Any) -> Dialect:
    return SQLITE if type(conn).__module__.startswith("sqlite3") else POSTGRESQL


def _rows(conn: Any, text: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cursor = conn.cursor()
    cursor.execute(_dialect(conn).sql(text), tuple(params))
    rows = cursor.fetchall()
    if not rows:
        return []
    if isinstance(rows[0], Mapping):
        return [dict(row) for row in rows]
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _execute(conn: Any, text: str, params: Sequence[Any] = ()) -> int:
    cursor = conn.cursor()
    cursor.execute(_dialect(conn).sql(text), tuple(params))
    return int(cursor.rowcount)


@contextlib.contextmanager
def _transaction(conn: Any) -> Iterator[None]:
    """PostgreSQL's connections here are autocommit; SQLite's writer batch is already a
    transaction."""
    if _dialect(conn).name == "sqlite":
        yield
        return
    with conn.transaction():
        yield


def _json(value: Any) -> Any:
    if value is None or isinstance(value, list | dict):
        return value
    return msgspec.json.decode(value)


def _party(conn: Any, row: dict[str, Any]) -> Party:
    d = _dialect(conn)
    return Party(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        token_b=row["token_b"],
        versions_url=row["versions_url"],
        version=row["version"],
        endpoints=_json(row["endpoints"]),
        roles=_json(row["roles"]),
        created_at=d.read_instant(row["created_at"]),
        updated_at=d.read_instant(row["updated_at"]),
    )


# -- parties -----------------------------------------------------------------------------


def issue_party(conn: Any, party_id: str, name: str, token_a_sha256: str, now: datetime) -> None:
    """A new party holding an unused registration token A."""
    d = _dialect(conn)
    with _transaction(conn):
        _execute(
            conn,
            "INSERT INTO ocpi_parties (id, name, status, token_a_sha256, created_at, updated_at) "
            "VALUES (?, ?, 'issued', ?, ?, ?)",
            (party_id, name, token_a_sha256, d.instant(now), d.instant(now)),
        )


def party_by_token(conn: Any, which: str, digest: str) -> Party | None:
    """The party whose token A (`which` = "a") or C ("c") has this digest."""
    column = {"a": "token_a_sha256", "c": "token_c_sha256"}[which]
    rows = _rows(conn, f"SELECT {_PARTY_COLUMNS} FROM ocpi_parties WHERE {column} = ?", (digest,))
    return _party(conn, rows[0]) if rows else None


def get_party(conn: Any, party_id: str) -> Party | None:
    rows = _rows(conn, f"SELECT {_PARTY_COLUMNS} FROM ocpi_parties WHERE id = ?", (party_id,))
    return _party(conn, rows[0]) if rows else None


def list_parties(conn: Any) -> list[Party]:
    rows = _rows(conn, f"SELECT {_PARTY_COLUMNS} FROM ocpi_parties ORDER BY created_at, id")
    return [_party(conn, row) for row in rows]


def register_party(
    conn: Any,
    party_id: str,
    *,
    expect: str,
    presented_sha256: str,
    token_b: str,
    token_c_sha256: str,
    versions_url: str,
    version: str,
    endpoints: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    now: datetime,
) -> bool:
    """Register (`expect` = "issued", with token A) or update (`expect` = "registered",
    with token C) a party: token A is used up, the new token C replaces the old one.
    False when the token presented is no longer the party's (a concurrent call won)."""
    d = _dialect(conn)
    column = "token_a_sha256" if expect == "issued" else "token_c_sha256"
    with _transaction(conn):
        changed = _execute(
            conn,
            "UPDATE ocpi_parties SET status = 'registered', token_a_sha256 = NULL, "
            "token_c_sha256 = ?, token_b = ?, versions_url = ?, version = ?, endpoints = "
            f"{d.json_mark}, roles = {d.json_mark}, updated_at = ? "
            f"WHERE id = ? AND status = ? AND {column} = ?",
            (
                token_c_sha256,
                token_b,
                versions_url,
                version,
                msgspec.json.encode(endpoints).decode(),
                msgspec.json.encode(roles).decode(),
                d.instant(now),
                party_id,
                expect,
                presented_sha256,
            ),
        )
    return changed == 1


def close_party(conn: Any, party_id: str, status: str, now: datetime) -> bool:
    """Unregister (the CPO's DELETE) or revoke (an operator) a party: every token it
    held stops working. False when there was no such party still open."""
    d = _dialect(conn)
    with _transaction(conn):
        changed = _execute(
            conn,
            "UPDATE ocpi_parties SET status = ?, token_a_sha256 = NULL, token_c_sha256 = NULL, "
            "token_b = NULL, updated_at = ? WHERE id = ? AND status IN ('issued', 'registered')",
            (status, d.instant(now), party_id),
        )
    return changed == 1


# -- tokens ------------------------------------------------------------------------------


def token_page(
    conn: Any,
    date_from: datetime | None,
    date_to: datetime | None,
    offset: int,
    limit: int,
) -> tuple[int, list[TokenRow]]:
    """The tokens changed in [date_from, date_to), oldest change first, and how many
    there are in all (for X-Total-Count)."""
    d = _dialect(conn)
    where, params = ["kind = 'token'"], []
    if date_from is not None:
        where.append("updated_at >= ?")
        params.append(d.instant(date_from))
    if date_to is not None:
        where.append("updated_at < ?")
        params.append(d.instant(date_to))
    clause = " AND ".join(where)
    total = _rows(conn, f"SELECT count(*) AS n FROM auth_entities WHERE {clause}", params)
    rows = _rows(
        conn,
        f"SELECT key, doc, updated_at FROM auth_entities WHERE {clause} "
        f"ORDER BY updated_at, key{d.byte_order} LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )
    return int(total[0]["n"]), [
        TokenRow(
            uid=row["key"],
            doc=row["doc"].encode() if isinstance(row["doc"], str) else bytes(row["doc"]),
            updated_at=d.read_instant(row["updated_at"]),
        )
        for row in rows
    ]


def token_changes(conn: Any, since: int) -> tuple[int, set[str], set[str]]:
    """The change log's last sequence number, and the tokens and groups changed after
    `since` (what a differential OCPP local list must carry)."""
    last = _rows(conn, "SELECT max(seq) AS seq FROM auth_changes")[0]["seq"] or 0
    rows = _rows(
        conn,
        "SELECT DISTINCT kind, key FROM auth_changes WHERE seq > ? AND kind IN ('token', 'group')",
        (since,),
    )
    tokens = {r["key"] for r in rows if r["kind"] == "token"}
    groups = {r["key"] for r in rows if r["kind"] == "group"}
    return int(last), tokens, groups


def token_updated(conn: Any, uid: str) -> datetime | None:
    """When a token last changed (its OCPI `last_updated`), or None if it is not stored."""
    rows = _rows(
        conn, "SELECT updated_at FROM auth_entities WHERE kind = 'token' AND key = ?", (uid,)
    )
    return _dialect(conn).read_instant(rows[0]["updated_at"]) if rows else None


# -- what a CPO pushed -------------------------------------------------------------------


def latest_document(conn: Any, source: str, prefix: str) -> Any | None:
    """The document of the newest event of `source` whose dedup key starts with `prefix`
    (the last version of a Session the CPO pushed), or None."""
    rows = _rows(
        conn,
        "SELECT document FROM inbox WHERE source = ? AND substr(dedup_key, 1, ?) = ? "
        "ORDER BY id DESC LIMIT 1",
        (source, len(prefix), prefix),
    )
    return _json(rows[0]["document"]) if rows else None


def document_by_key(conn: Any, source: str, dedup_key: str) -> Any | None:
    """The document of the event of `source` with this dedup key (a CDR), or None."""
    rows = _rows(
        conn,
        "SELECT document FROM inbox WHERE source = ? AND dedup_key = ?",
        (source, dedup_key),
    )
    return _json(rows[0]["document"]) if rows else None
