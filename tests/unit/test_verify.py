"""Credential checks over raw bytes: HMAC signatures, HTTP Basic, bearer tokens, masking."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hookgate.emulate.base import sign
from hookgate.verify import (
    any_equal,
    basic_matches,
    bearer_token,
    decode_signature,
    hmac_matches,
    mask_headers,
    parse_basic,
)

BODY = b'{"notification":"cdr.received","id":"DE-AMP-0000184210"}'
SECRET = "ampeco-api-token"


def digest(body: bytes, secret: str, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()


# --------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
@pytest.mark.parametrize(
    "render",
    [
        lambda d: d.hex(),
        lambda d: d.hex().upper(),
        lambda d: base64.b64encode(d).decode(),
        lambda d: base64.urlsafe_b64encode(d).decode().rstrip("="),
        lambda d: f"  {d.hex()}  ",
    ],
    ids=["hex-lower", "hex-upper", "base64", "base64url-unpadded", "surrounding-spaces"],
)
def test_signature_encodings_verify(algorithm: str, render: object) -> None:
    signature = render(digest(BODY, SECRET, algorithm))  # type: ignore[operator]
    assert hmac_matches(BODY, signature, [SECRET], algorithm)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["sha256=", "SHA256=", "Sha256="])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_algorithm_prefix_is_accepted(prefix: str, encoding: str) -> None:
    signature = prefix + sign(BODY, SECRET, "sha256", encoding)
    assert hmac_matches(BODY, signature, [SECRET], "sha256")


def test_prefix_of_another_algorithm_is_not_stripped() -> None:
    signature = "sha512=" + sign(BODY, SECRET, "sha256", "hex")
    assert not hmac_matches(BODY, signature, [SECRET], "sha256")


def test_rotated_secrets_old_and_new_pass_a_third_fails() -> None:
    secrets = ["old-token", "new-token"]
    assert hmac_matches(BODY, sign(BODY, "old-token", "sha256", "hex"), secrets, "sha256")
    assert hmac_matches(BODY, sign(BODY, "new-token", "sha256", "hex"), secrets, "sha256")
    assert not hmac_matches(BODY, sign(BODY, "third-token", "sha256", "hex"), secrets, "sha256")


def test_no_secrets_never_match() -> None:
    assert not hmac_matches(BODY, sign(BODY, SECRET, "sha256", "hex"), [], "sha256")


def test_signature_of_another_algorithm_fails() -> None:
    assert not hmac_matches(BODY, sign(BODY, SECRET, "sha256", "hex"), [SECRET], "sha512")
    assert not hmac_matches(BODY, sign(BODY, SECRET, "sha512", "base64"), [SECRET], "sha256")


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "   ",
        "sha256=",
        "not a signature",
        "zz" * 32,
        "%%%%",
        sign(BODY, SECRET, "sha256", "hex")[:-2],
        sign(BODY, SECRET, "sha256", "hex")[:32],
        sign(BODY, SECRET, "sha256", "base64")[:20],
        sign(BODY, SECRET, "sha256", "hex") + "00",
        base64.b64encode(b"\0" * 32).decode(),
    ],
    ids=[
        "empty",
        "blank",
        "prefix-only",
        "words",
        "non-hex-of-right-length",
        "punctuation",
        "hex-truncated-by-one-byte",
        "hex-half",
        "base64-truncated",
        "hex-extended",
        "zeros",
    ],
)
def test_truncated_or_garbage_signatures_do_not_match(signature: str) -> None:
    assert hmac_matches(BODY, signature, [SECRET], "sha256") is False


def test_decode_signature_returns_none_for_the_wrong_length() -> None:
    assert decode_signature("ab" * 31, "sha256") is None
    assert decode_signature(base64.b64encode(b"x" * 33).decode(), "sha256") is None
    assert decode_signature("ab" * 32, "sha256") == bytes.fromhex("ab" * 32)


@given(body=st.binary(min_size=1, max_size=2048), secret=st.text(max_size=64), data=st.data())
def test_property_signature_matches_and_any_bit_flip_breaks_it(
    body: bytes, secret: str, data: st.DataObject
) -> None:
    algorithm = data.draw(st.sampled_from(["sha256", "sha512"]))
    encoding = data.draw(st.sampled_from(["hex", "base64"]))
    signature = sign(body, secret, algorithm, encoding)
    assert hmac_matches(body, signature, [secret], algorithm)

    bit = data.draw(st.integers(min_value=0, max_value=len(body) * 8 - 1))
    flipped = bytearray(body)
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert not hmac_matches(bytes(flipped), signature, [secret], algorithm)


# --------------------------------------------------------------------------- Basic, bearer


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_parse_basic_keeps_colons_in_the_password() -> None:
    assert parse_basic(f"Basic {b64('easypark:park:ing-secret')}") == (
        "easypark",
        "park:ing-secret",
    )
    assert parse_basic(f"basic {b64('u:')}") == ("u", "")
    assert parse_basic(f"BASIC   {b64('zaptec:zap:pass:word')}") == ("zaptec", "zap:pass:word")


def test_parse_basic_reads_utf8_credentials() -> None:
    assert parse_basic(f"Basic {b64('nyköping:lösen')}") == ("nyköping", "lösen")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Basic !!!notbase64!!!",
        "Basic " + b64("no-colon-here"),
        "Basic " + base64.b64encode(b"\xff\xfe:\xfd").decode(),
        "Bearer " + b64("user:pass"),
        "Digest username=user",
        b64("user:pass"),
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "scheme-and-space",
        "bad-base64",
        "no-colon",
        "not-utf8",
        "bearer-scheme",
        "digest-scheme",
        "no-scheme",
    ],
)
def test_parse_basic_refuses_malformed_headers(header: str | None) -> None:
    assert parse_basic(header) is None


def test_basic_matches_needs_both_username_and_password() -> None:
    header = f"Basic {b64('easypark:park:ing-secret')}"
    assert basic_matches(header, "easypark", ["park:ing-secret"])
    assert basic_matches(header, "easypark", ["old", "park:ing-secret"])
    assert not basic_matches(header, "easypark", ["park"])
    assert not basic_matches(header, "other", ["park:ing-secret"])
    assert not basic_matches(header, "easypark", [])
    assert not basic_matches(None, "easypark", ["park:ing-secret"])


def test_any_equal_ignores_empty_accepted_values() -> None:
    assert any_equal("k1", ["k0", "k1"])
    assert not any_equal("", [""])
    assert not any_equal("k2", ["k0", "k1"])


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer   abc  ") == "abc"
    assert bearer_token("Bearer ") is None
    assert bearer_token("Basic abc") is None
    assert bearer_token(None) is None


# --------------------------------------------------------------------------- masking


def test_mask_headers_masks_credentials_and_keeps_the_rest() -> None:
    headers = {
        "authorization": f"Basic {b64('easypark:park:ing-secret')}",
        "proxy-authorization": "Bearer proxy-secret",
        "x-partner-key": "ep-api-key-123",
        "x-signature": "a" * 64,
        "content-type": "application/json",
        "user-agent": "EasyPark-Fleet/2.1",
        "x-not-kept": "dropped",
    }
    keep = frozenset(
        {"authorization", "proxy-authorization", "x-signature", "content-type", "user-agent"}
    )
    masked = mask_headers(headers, keep, frozenset({"x-partner-key"}))
    assert masked["authorization"] == "Basic ***"
    assert masked["proxy-authorization"] == "Bearer ***"
    assert masked["x-partner-key"] == "***"
    assert masked["x-signature"] != "a" * 64
    assert masked["content-type"] == "application/json"
    assert masked["user-agent"] == "EasyPark-Fleet/2.1"
    assert "x-not-kept" not in masked
    text = repr(masked)
    for secret in (
        "park:ing-secret",
        b64("easypark:park:ing-secret"),
        "proxy-secret",
        "ep-api-key-123",
    ):
        assert secret not in text


def test_mask_headers_masks_a_bare_credential_without_scheme() -> None:
    masked = mask_headers({"authorization": "token-without-scheme"}, frozenset({"authorization"}))
    assert "token-without-scheme" not in masked["authorization"]
    assert masked["authorization"].endswith("***")
