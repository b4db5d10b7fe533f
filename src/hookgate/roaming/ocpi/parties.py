"""The OCPI credentials module, eMSP side: the registration tokens hookgate issues, the
handshake that turns one into the tokens B and C, and who a presented token belongs to.

The spec's handshake (OCPI 2.2.1, chapter 7): hookgate gives a CPO token A out of band
(`hookgate ocpi issue`). The CPO calls hookgate's versions endpoint with it, then POSTs
its own credentials (token B and its versions URL). hookgate fetches the CPO's versions
and version details with token B, keeps them, and answers with its credentials: token C,
which the CPO uses from then on. Token A is used up by that call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import msgspec

from hookgate.ids import new_id
from hookgate.roaming.ocpi.models import VERSION, Credentials, VersionDetails
from hookgate.store import roaming as sql
from hookgate.store.base import Store
from hookgate.timeutil import utcnow


def digest(token: str) -> str:
    """What the store keeps of tokens A and C."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A credentials token: 43 URL-safe characters (the spec allows up to 64)."""
    return secrets.token_urlsafe(32)


def presented_token(header: str | None) -> str | None:
    """The token of an `Authorization: Token <base64(token)>` header (OCPI 2.2.1 encodes
    it in Base64), or None when the header is missing or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "token" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return decoded or None


def authorization_header(token: str) -> str:
    """The header value hookgate sends a CPO (token B)."""
    return "Token " + base64.b64encode(token.encode()).decode()


@dataclass(frozen=True, slots=True)
class Caller:
    """The party behind a request and which of its tokens it used ("a" or "c")."""

    party: sql.Party
    token: str
    kind: str


class HandshakeFailed(Exception):
    """The CPO's versions could not be used: `status_code` is the OCPI 3xxx code."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class Parties:
    """Issues, resolves, registers and closes OCPI parties over the store."""

    def __init__(
        self,
        store: Store,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.timeout = timeout
        self.transport = transport
        self.clock = clock

    async def issue(self, name: str) -> tuple[sql.Party, str]:
        """A new party and its token A (shown once: only its digest is kept)."""
        token, party_id = new_token(), new_id()
        now = self.clock()
        await self.store.sql_write(
            lambda conn: sql.issue_party(conn, party_id, name, digest(token), now)
        )
        party = await self.get(party_id)
        assert party is not None
        return party, token

    async def get(self, party_id: str) -> sql.Party | None:
        return await self.store.sql_read(lambda conn: sql.get_party(conn, party_id))

    async def all(self) -> list[sql.Party]:
        return await self.store.sql_read(sql.list_parties)

    async def revoke(self, party_id: str) -> bool:
        """Stop every token of a party working (an operator's decision)."""
        now = self.clock()
        return await self.store.sql_write(
            lambda conn: sql.close_party(conn, party_id, "revoked", now)
        )

    async def unregister(self, party_id: str) -> bool:
        """The CPO's DELETE of its credentials."""
        now = self.clock()
        return await self.store.sql_write(
            lambda conn: sql.close_party(conn, party_id, "unregistered", now)
        )

    async def caller(self, header: str | None) -> Caller | None:
        """Who presents this Authorization header: a registered party's token C, or an
        issued party's unused token A."""
        token = presented_token(header)
        if token is None:
            return None
        hashed = digest(token)
        for kind in ("c", "a"):

            def find(conn: Any, kind: str = kind) -> sql.Party | None:
                return sql.party_by_token(conn, kind, hashed)

            party = await self.store.sql_read(find)
            if party is not None:
                return Caller(party, token, kind)
        return None

    async def register(self, caller: Caller, theirs: Credentials) -> str:
        """The handshake's second half: fetch the CPO's 2.2.1 endpoints with its token B,
        store them, and return the new token C. Raises HandshakeFailed (3001 or 3002) when
        the CPO's versions cannot be used, and LookupError when the token presented was
        used up meanwhile."""
        endpoints = await self._endpoints(theirs.url, theirs.token)
        token_c = new_token()
        now = self.clock()
        expect = "issued" if caller.kind == "a" else "registered"
        roles = [msgspec.to_builtins(role) for role in theirs.roles]
        done = await self.store.sql_write(
            lambda conn: sql.register_party(
                conn,
                caller.party.id,
                expect=expect,
                presented_sha256=digest(caller.token),
                token_b=theirs.token,
                token_c_sha256=digest(token_c),
                versions_url=theirs.url,
                version=VERSION,
                endpoints=endpoints,
                roles=roles,
                now=now,
            )
        )
        if not done:
            raise LookupError("the token presented is no longer valid")
        return token_c

    async def _endpoints(self, versions_url: str, token_b: str) -> list[dict[str, Any]]:
        headers = {"Authorization": authorization_header(token_b)}
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, transport=self.transport, headers=headers
            ) as client:
                versions = _data(await client.get(versions_url), versions_url)
                if not isinstance(versions, list):
                    raise HandshakeFailed(3001, f"{versions_url} answered no list of versions")
                url = next(
                    (
                        v.get("url")
                        for v in versions
                        if isinstance(v, dict) and v.get("version") == VERSION
                    ),
                    None,
                )
                if not isinstance(url, str):
                    offered = ", ".join(
                        str(v.get("version")) for v in versions if isinstance(v, dict)
                    )
                    raise HandshakeFailed(
                        3002, f"no OCPI {VERSION} among the versions offered ({offered or 'none'})"
                    )
                details = msgspec.convert(
                    _data(await client.get(url), url), VersionDetails, strict=False
                )
        except httpx.HTTPError as exc:
            raise HandshakeFailed(3001, f"{versions_url}: {exc}") from None
        except msgspec.ValidationError as exc:
            raise HandshakeFailed(
                3001, f"the version details are not OCPI {VERSION}: {exc}"
            ) from None
        return [msgspec.to_builtins(e) for e in details.endpoints]


def _data(response: httpx.Response, url: str) -> Any:
    """The `data` of an OCPI response that succeeded, else HandshakeFailed(3001)."""
    if response.status_code != 200:
        raise HandshakeFailed(3001, f"{url} answered HTTP {response.status_code}")
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        raise HandshakeFailed(3001, f"{url} answered no JSON") from None
    if not isinstance(body, dict) or body.get("status_code") != 1000:
        code = body.get("status_code") if isinstance(body, dict) else None
        raise HandshakeFailed(3001, f"{url} answered OCPI status {code}")
    return body.get("data")
