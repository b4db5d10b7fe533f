"""Console sign-in: an admin token once, then a signed session cookie.

The cookie carries the token's name, a random nonce, when the session began and when it
was last used, signed with a key derived from that admin token. Nothing about a live
session is kept on the server, so every instance behind a load balancer accepts it, and
removing or rotating the token in the configuration ends its sessions everywhere.
Sign-out revokes the nonce in this process, and the console records it in the database
(`console_revocations`) so that every instance refuses the cookie. A session ends after
`idle` without a request, and after `lifetime` in any case (`[console] idle_minutes` and
`lifetime_hours`); each answer slides the idle deadline forward.

The CSRF token is derived from the same key and nonce: a page embeds it in every form, and
a change without it (or with another session's) is refused with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from hookgate.config import AdminToken, ConsoleConfig

COOKIE = "hookgate_console"
# The defaults of `[console] idle_minutes` and `lifetime_hours`.
IDLE_SECONDS = ConsoleConfig().idle_seconds
LIFETIME_SECONDS = ConsoleConfig().lifetime_seconds
# A cookie is re-signed (its idle deadline moved) at most this often.
SLIDE_SECONDS = 60


class _Claims(msgspec.Struct, array_like=True):
    name: str
    nonce: str
    began: int
    seen: int


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in operator."""

    actor: AdminToken
    nonce: str
    began: int
    seen: int
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.actor.scope == "write"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks session cookies for the configured admin tokens."""

    def __init__(
        self,
        tokens: Sequence[AdminToken],
        *,
        idle: int = IDLE_SECONDS,
        lifetime: int = LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tokens = [t for t in tokens if t.token]
        self.idle = idle
        self.lifetime = lifetime
        self.clock = clock
        self._revoked: dict[str, int] = {}  # nonce -> when it would have ended anyway

    @property
    def configured(self) -> bool:
        return bool(self._tokens)

    def match(self, given: str) -> AdminToken | None:
        """The configured token equal to `given`, compared against every one in constant
        time."""
        raw = given.encode("utf-8")
        found: AdminToken | None = None
        for candidate in self._tokens:
            if hmac.compare_digest(raw, candidate.token.encode("utf-8")) and found is None:
                found = candidate
        return found

    @staticmethod
    def _key(actor: AdminToken) -> bytes:
        return hashlib.sha256(b"hookgate-console\x00" + actor.token.encode("utf-8")).digest()

    def _sign(self, actor: AdminToken, payload: bytes) -> str:
        return _b64(hmac.new(self._key(actor), payload, hashlib.sha256).digest())

    def _csrf(self, actor: AdminToken, nonce: str) -> str:
        return self._sign(actor, b"csrf\x00" + nonce.encode())

    def _session(self, actor: AdminToken, claims: _Claims) -> Session:
        return Session(
            actor, claims.nonce, claims.began, claims.seen, self._csrf(actor, claims.nonce)
        )

    def begin(self, actor: AdminToken) -> tuple[Session, str]:
        """A new session for `actor` and its cookie value."""
        now = int(self.clock())
        claims = _Claims(actor.name, secrets.token_urlsafe(18), now, now)
        return self._session(actor, claims), self.cookie(actor, claims)

    def cookie(self, actor: AdminToken, claims: _Claims) -> str:
        payload = msgspec.json.encode(claims)
        return f"{_b64(payload)}.{self._sign(actor, payload)}"

    def check(self, value: str | None) -> Session | None:
        """The session a cookie stands for, or None when it is missing, forged, signed by
        a token no longer configured, revoked, idle too long or too old."""
        if not value or "." not in value:
            return None
        body, _, signature = value.partition(".")
        try:
            payload = _unb64(body)
            claims = msgspec.json.decode(payload, type=_Claims)
        except (ValueError, msgspec.DecodeError):
            return None
        actor = next((t for t in self._tokens if t.name == claims.name), None)
        if actor is None or not hmac.compare_digest(signature, self._sign(actor, payload)):
            return None
        now = int(self.clock())
        if claims.nonce in self._revoked:
            return None
        if now - claims.seen > self.idle or now - claims.began > self.lifetime:
            return None
        return self._session(actor, claims)

    def refreshed(self, session: Session) -> str | None:
        """A new cookie value with the idle deadline moved forward, when it is due."""
        now = int(self.clock())
        if now - session.seen < SLIDE_SECONDS:
            return None
        claims = _Claims(session.actor.name, session.nonce, session.began, now)
        return self.cookie(session.actor, claims)

    def end(self, session: Session) -> int:
        """Revoke a session in this process (the browser's cookie is cleared as well, and
        the console records the sign-out for every instance); when it would have ended
        anyway, in seconds since the epoch."""
        now = int(self.clock())
        self._revoked = {n: t for n, t in self._revoked.items() if t > now}
        until = session.began + self.lifetime
        self._revoked[session.nonce] = until
        return until

    @staticmethod
    def csrf_ok(session: Session, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
