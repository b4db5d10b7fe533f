"""The RFC 6749 token endpoint Zaptec calls before its hook calls.

Tokens are self-contained and signed (HMAC-SHA256) with a key derived from a secret
stored once in the database and from the source's current credentials. So any instance
sharing the database accepts them, they are bound to their source, and they stop
working as soon as that source's username or password changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, parse_qsl

import msgspec

from hookgate.config import ZaptecSource
from hookgate.verify import any_equal, parse_basic

_PREFIX = "hg1"
# A token form carries a handful of short fields: larger ones are refused before parsing
# (413 by the ingress beyond FORM_MAX_BYTES, 400 invalid_request beyond FORM_MAX_FIELDS).
FORM_MAX_BYTES = 4096
FORM_MAX_FIELDS = 32


class _Claims(msgspec.Struct):
    src: str
    iat: int
    exp: int
    jti: str


@dataclass
class TokenAnswer:
    """What the token endpoint answers: RFC 6749 JSON, never problem+json."""

    status: int
    body: dict[str, object]
    headers: dict[str, str] = field(default_factory=dict)
    failure: str | None = None
    # Why it failed, for the operator only (the log and the rejection record).
    note: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Issues and checks bearer tokens for Zaptec sources."""

    def __init__(self, server_key: bytes | None = None, clock: object = time) -> None:
        self._server_key = server_key
        self._clock = clock

    def use_key(self, server_key: bytes) -> None:
        """Sign with this key: the one kept in the store, read once storage is open, so
        that every instance and every restart accept each other's tokens."""
        self._server_key = server_key

    def _now(self) -> int:
        return int(self._clock.time())  # type: ignore[attr-defined]

    def _key(self, source: ZaptecSource) -> bytes:
        if self._server_key is None:
            raise RuntimeError("the token-signing key is not loaded (storage is not open yet)")
        fingerprint = hashlib.sha256(f"{source.username}\0{source.password}".encode()).digest()
        return hmac.new(
            self._server_key, b"oauth\0" + source.name.encode() + b"\0" + fingerprint, "sha256"
        ).digest()

    def issue(self, source: ZaptecSource) -> tuple[str, int]:
        """A new token and its lifetime in seconds."""
        now = self._now()
        claims = _Claims(source.name, now, now + source.token_ttl_seconds, _b64(os.urandom(9)))
        payload = _b64(msgspec.json.encode(claims))
        signing_input = f"{_PREFIX}.{payload}".encode()
        signature = _b64(hmac.new(self._key(source), signing_input, "sha256").digest())
        return f"{_PREFIX}.{payload}.{signature}", source.token_ttl_seconds

    def check(self, source: ZaptecSource, token: str) -> str | None:
        """None when the token is valid for `source`, else why not."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            return "the access token is malformed"
        try:
            given = _unb64(parts[2])
            claims = msgspec.json.decode(_unb64(parts[1]), type=_Claims)
        except (binascii.Error, ValueError, msgspec.DecodeError):
            return "the access token is malformed"
        expected = hmac.new(self._key(source), f"{parts[0]}.{parts[1]}".encode(), "sha256").digest()
        if not hmac.compare_digest(expected, given):
            return "the access token was not issued for this source or its credentials changed"
        if claims.src != source.name:
            return "the access token was issued for another source"
        if claims.exp <= self._now():
            return "the access token expired"
        return None

    def answer(
        self, source: ZaptecSource, content_type: str, body: bytes, auth: str | None
    ) -> TokenAnswer:
        """Run the token endpoint for one request. A source without credentials fails
        every request as a wrong credential would: the caller is not told that the
        source is misconfigured, the operator is (`note`)."""
        result = self._answer(source, content_type, body, auth)
        if result.failure is not None and not source.credentials():
            result.note = f"source {source.name!r} has no credentials configured"
        return result

    def _answer(
        self, source: ZaptecSource, content_type: str, body: bytes, auth: str | None
    ) -> TokenAnswer:
        if content_type.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
            return _error(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        if len(body) > FORM_MAX_BYTES:
            return _error(400, "invalid_request", f"the form exceeds {FORM_MAX_BYTES} bytes")
        try:
            form = parse_qs(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=FORM_MAX_FIELDS,
            )
        except UnicodeDecodeError:
            return _error(400, "invalid_request", "the body is not UTF-8")
        except ValueError:
            return _error(
                400, "invalid_request", f"the form has more than {FORM_MAX_FIELDS} fields"
            )
        values = {k: v[0] for k, v in form.items()}
        if any(len(v) > 1 for v in form.values()):
            return _error(400, "invalid_request", "a parameter is repeated")
        grant = values.get("grant_type")
        if not grant:
            return _error(400, "invalid_request", "grant_type is required")
        if grant == "password":
            username, password = values.get("username"), values.get("password")
            if username is None or password is None:
                return _error(400, "invalid_request", "username and password are required")
            if not (
                any_equal(username, [source.username]) & any_equal(password, [source.password])
            ):
                return _error(400, "invalid_grant", "the username or password is wrong")
        elif grant == "client_credentials":
            basic = parse_basic(auth)
            client_id, secret = (
                basic if basic else (values.get("client_id"), values.get("client_secret"))
            )
            if client_id is None or secret is None:
                return _error(
                    401,
                    "invalid_client",
                    "client authentication is required",
                    {"WWW-Authenticate": 'Basic realm="hookgate"'},
                )
            if not (any_equal(client_id, [source.username]) & any_equal(secret, [source.password])):
                return _error(
                    401,
                    "invalid_client",
                    "the client credentials are wrong",
                    {"WWW-Authenticate": 'Basic realm="hookgate"'},
                )
        else:
            # The value is not echoed: a form with `;` separators puts the rest of the
            # form, password included, into it.
            return _error(
                400,
                "unsupported_grant_type",
                "grant_type must be password or client_credentials",
            )
        token, ttl = self.issue(source)
        return TokenAnswer(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl},
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )


def _error(
    status: int, code: str, description: str, headers: dict[str, str] | None = None
) -> TokenAnswer:
    return TokenAnswer(
        status,
        {"error": code, "error_description": description},
        {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
        failure=code,
    )


# Form keys of RFC 6749 token requests; any other key may be a credential typed in the
# wrong place and is not kept, not even its name.
_KNOWN_KEYS = frozenset(
    {
        "grant_type",
        "username",
        "password",
        "client_id",
        "client_secret",
        "scope",
        "refresh_token",
        "code",
        "redirect_uri",
        "code_verifier",
        "audience",
        "resource",
    }
)
# Keys whose values are identifiers, shown when they look like one; every other value is
# replaced.
_SHOWN_KEYS = frozenset({"grant_type", "username", "client_id", "scope"})
_PLAIN = re.compile(r"[A-Za-z0-9_.:@+/ -]{0,128}")


def redact_form(body: bytes) -> bytes | None:
    """The token form as the rejection log may keep it: known keys only (any case), and
    only identifiers' values (grant type, username, client id, scope) when they are plain
    words; every other value is `***` and every unknown key `(unknown)=***`. None when the
    body is not a form this can say that of with certainty (not UTF-8, a pair without
    `=`, too many fields): then nothing of it is kept but its hash and size."""
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            max_num_fields=FORM_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return None
    parts = []
    for key, value in pairs:
        name = key.lower()
        if name not in _KNOWN_KEYS:
            parts.append("(unknown)=***")
        elif name in _SHOWN_KEYS and _PLAIN.fullmatch(value):
            parts.append(f"{key}={value}")
        else:
            parts.append(f"{key}=***")
    return "&".join(parts).encode()
