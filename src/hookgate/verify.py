"""Credential checks over raw bytes: HMAC signatures, HTTP Basic, API keys.

Every comparison is constant time, and every check takes a list of accepted secrets so
that a secret can be rotated without downtime (old and new both valid for a while).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

Algorithm = Literal["sha256", "sha512"]
_SIZES = {"sha256": 32, "sha512": 64}


def decode_signature(value: str, algorithm: Algorithm) -> bytes | None:
    """The digest bytes of a hex (any case) or base64 signature, with optional `alg=` prefix."""
    text = value.strip()
    prefix = algorithm + "="
    if text[: len(prefix)].lower() == prefix:
        text = text[len(prefix) :]
    size = _SIZES[algorithm]
    if len(text) == size * 2:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def hmac_matches(body: bytes, signature: str, secrets: Iterable[str], algorithm: Algorithm) -> bool:
    """True when `signature` is HMAC(secret, body) for any of `secrets`."""
    expected = decode_signature(signature, algorithm)
    if expected is None:
        return False
    digest = getattr(hashlib, algorithm)
    matched = False
    for secret in secrets:
        mac = hmac.new(secret.encode("utf-8"), body, digest).digest()
        matched |= hmac.compare_digest(mac, expected)
    return matched


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(username, password) from `Basic base64(user:pass)`; the password may hold ':'."""
    if not header:
        return None
    scheme, _, param = header.strip().partition(" ")
    if scheme.lower() != "basic" or not param:
        return None
    try:
        decoded = base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def basic_matches(header: str | None, username: str, passwords: Iterable[str]) -> bool:
    """True when the Basic credentials name `username` with one of `passwords`."""
    pair = parse_basic(header)
    if pair is None:
        return False
    user_ok = hmac.compare_digest(pair[0].encode(), username.encode())
    pass_ok = any_equal(pair[1], passwords)
    return user_ok and pass_ok


def any_equal(given: str, accepted: Iterable[str]) -> bool:
    """Constant-time membership: compares against every accepted value."""
    raw = given.encode("utf-8")
    matched = False
    for candidate in accepted:
        if candidate:
            matched |= hmac.compare_digest(raw, candidate.encode("utf-8"))
    return matched


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_SIGNATURE_HEADERS = frozenset({"x-signature", "x-payload-signature", "webhook-signature"})


def mask_headers(
    headers: Mapping[str, str], keep: frozenset[str], secret_names: frozenset[str] = frozenset()
) -> dict[str, str]:
    """The selected headers, with credentials replaced by a short, non-reversible marker."""
    out = {}
    for name, value in headers.items():
        if name not in keep and name not in secret_names:
            continue
        if name in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            out[name] = f"{scheme} ***".strip()
        elif name in secret_names:
            out[name] = "***"
        elif name in _SIGNATURE_HEADERS:
            out[name] = value[:8] + "..." if len(value) > 8 else "***"
        else:
            out[name] = value[:512]
    return out


# Keys whose values may be credentials (a password, secret, API key, token, RFID code).
_CREDENTIAL_KEY = re.compile(r"pass|pwd|secret|token|auth|key|credential|signature", re.I)


def redact_json(body: bytes) -> bytes | None:
    """`body` re-encoded with the value of every credential-like key (at any depth)
    replaced by "***"; None when it is not JSON (then nothing of it may be kept)."""
    try:
        document = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return None

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: "***" if _CREDENTIAL_KEY.search(k) else walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    try:
        return msgspec.json.encode(walk(document))
    except (msgspec.EncodeError, RecursionError, UnicodeError):
        # A lone surrogate (`"\ud800"`) decodes but cannot be encoded again.
        return None
