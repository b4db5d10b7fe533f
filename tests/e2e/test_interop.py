"""Independent implementations talk to a real `hookgate serve`.

OAuth2: authlib, a standard client library, runs the grants against the token endpoint and
attaches the Bearer token itself. HMAC: node's crypto, the openssl CLI and perl's
Digest::SHA sign the exact bytes that are then posted, byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import authlib.deprecate  # installs its "always" filter now, before ours below
import httpx
import pytest

from hookgate.emulate.ampeco_samples import sample
from support.e2e import Server, migrate, query, serving, write_config
from support.gateway import AMPECO_NEW, AMPECO_OLD, ZAPTEC_PASSWORD, ZAPTEC_USER, ZTLMENT_SECRET

with warnings.catch_warnings():
    # authlib announces a future move of its httpx integration; irrelevant here.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

_seq = itertools.count(700)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    home = tmp_path_factory.mktemp("interop")
    config = write_config(home)
    migrate(config)
    with serving(config) as server:
        yield server, home / "hookgate.db"


def _stored(db: Path, source: str, body: bytes) -> bytes:
    """The raw body stored for `body` (looked up by its SHA-256)."""
    rows = query(
        db,
        "SELECT raw_body FROM inbox WHERE source = ? AND body_sha256 = ?",
        source,
        hashlib.sha256(body).hexdigest(),
    )
    assert len(rows) == 1, f"expected one {source} row for the posted body, found {len(rows)}"
    return bytes(rows[0][0])


# -- OAuth2 with authlib --------------------------------------------------------------------


def _start_body() -> dict[str, str]:
    return {
        "ChargerId": f"ZAPCHG-{uuid.uuid4().hex[:8]}",
        "TokenId": f"RFID-{uuid.uuid4().hex[:8].upper()}",
        "InstallationId": str(uuid.uuid4()),
        "UserId": str(uuid.uuid4()),
    }


def _session_start(client: OAuth2Client, url: str) -> str:
    response = client.post(f"{url}/hooks/zaptec-allow/session-start", json=_start_body())
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    session_id = response.json()["sessionId"]
    assert str(uuid.UUID(session_id)) == session_id
    return str(session_id)


def test_authlib_password_grant_then_bearer_session_start(served: tuple[Server, Path]) -> None:
    server, db = served
    token_url = f"{server.url}/hooks/zaptec-allow/oauth/token"
    # A public client: Zaptec posts grant_type=password&username=..&password=.. only.
    with OAuth2Client(client_id=ZAPTEC_USER, token_endpoint_auth_method="none") as client:
        token = client.fetch_token(token_url, username=ZAPTEC_USER, password=ZAPTEC_PASSWORD)
        assert token["token_type"] == "Bearer"
        assert token["expires_in"] == 3600
        assert token["access_token"]

        session_id = _session_start(client, server.url)

        end = client.post(
            f"{server.url}/hooks/zaptec-allow/session-end",
            json={"SessionId": session_id, "Energy": 12.5, "EndDateTime": "2025-12-04T13:00:00Z"},
        )
        assert end.status_code == 200, end.text

    rows = query(
        db, "SELECT status, energy_kwh FROM authorized_sessions WHERE session_id = ?", session_id
    )
    assert rows == [("ended", "12.5")]


def test_authlib_password_grant_wrong_password_is_invalid_grant(
    served: tuple[Server, Path],
) -> None:
    server, _ = served
    with (
        OAuth2Client(client_id=ZAPTEC_USER, token_endpoint_auth_method="none") as client,
        pytest.raises(OAuthError) as caught,
    ):
        client.fetch_token(
            f"{server.url}/hooks/zaptec-allow/oauth/token",
            username=ZAPTEC_USER,
            password="not-the-password",
        )
    assert caught.value.error == "invalid_grant"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_credentials(served: tuple[Server, Path], method: str) -> None:
    server, _ = served
    token_url = f"{server.url}/hooks/zaptec-allow/oauth/token"
    with OAuth2Client(
        client_id=ZAPTEC_USER, client_secret=ZAPTEC_PASSWORD, token_endpoint_auth_method=method
    ) as client:
        token = client.fetch_token(token_url, grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        _session_start(client, server.url)

    with (
        OAuth2Client(
            client_id=ZAPTEC_USER, client_secret="wrong-secret", token_endpoint_auth_method=method
        ) as client,
        pytest.raises(OAuthError) as caught,
    ):
        client.fetch_token(token_url, grant_type="client_credentials")
    assert caught.value.error == "invalid_client"


# -- HMAC signatures from other languages -----------------------------------------------------

_NODE = (
    "const [alg, enc, key, file] = process.argv.slice(1);"
    "const crypto = require('crypto');"
    "const body = require('fs').readFileSync(file);"
    "process.stdout.write(crypto.createHmac(alg, key).update(body).digest(enc));"
)
_PERL = (
    "use Digest::SHA qw(hmac_sha256_hex hmac_sha512); use MIME::Base64;"
    "my ($alg, $key, $file) = @ARGV; open(my $f, '<:raw', $file) or die $!;"
    "local $/; my $body = <$f>;"
    "print $alg eq 'sha256' ? hmac_sha256_hex($body, $key)"
    " : encode_base64(hmac_sha512($body, $key), '');"
)

# A signer takes (algorithm, key, file with the body) and returns the signature text:
# lowercase hex for sha256 (AMPECO), base64 for sha512 (ZTLment).
Signer = Callable[[str, str, Path], str]


def _run(args: list[str], stdin: bytes | None = None) -> bytes:
    result = subprocess.run(args, input=stdin, capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr.decode(errors='replace')}"
    return result.stdout


def _node(alg: str, key: str, file: Path) -> str:
    encoding = "hex" if alg == "sha256" else "base64"
    return _run(["node", "-e", _NODE, "--", alg, encoding, key, str(file)]).decode().strip()


def _openssl(alg: str, key: str, file: Path) -> str:
    if alg == "sha256":
        out = _run(["openssl", "dgst", "-sha256", "-hmac", key, "-r", str(file)]).decode()
        return out.split()[0]
    digest = _run(["openssl", "dgst", "-sha512", "-hmac", key, "-binary", str(file)])
    if shutil.which("base64"):
        return _run(["base64", "-w0"], stdin=digest).decode().strip()
    return _run(["openssl", "base64", "-A"], stdin=digest).decode().strip()


def _perl(alg: str, key: str, file: Path) -> str:
    return _run(["perl", "-e", _PERL, alg, key, str(file)]).decode().strip()


def _available(name: str) -> Signer:
    binary = {"node": "node", "openssl": "openssl", "perl": "perl"}[name]
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed")
    if name == "perl":
        probe = subprocess.run(
            ["perl", "-MDigest::SHA", "-MMIME::Base64", "-e", "1"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            pytest.skip("perl lacks Digest::SHA or MIME::Base64")
    return {"node": _node, "openssl": _openssl, "perl": _perl}[name]


SIGNERS = ["node", "openssl", "perl"]


@pytest.mark.parametrize("signer_name", SIGNERS)
def test_ampeco_signed_by_other_languages(
    served: tuple[Server, Path], tmp_path: Path, signer_name: str
) -> None:
    server, db = served
    signer = _available(signer_name)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for key in (AMPECO_OLD, AMPECO_NEW):  # both secrets of the rotation are accepted
            # Non-ASCII text (Alexanderstraße) makes the UTF-8 bytes matter.
            body = json.dumps(
                sample("LocationChangedNotification", next(_seq)), ensure_ascii=False
            ).encode("utf-8")
            file = tmp_path / "body.json"
            file.write_bytes(body)
            signature = signer("sha256", key, file)
            assert len(signature) == 64
            headers = {"Content-Type": "application/json", "X-Tenant": signer_name}

            response = client.post(
                "/hooks/ampeco", content=body, headers={**headers, "X-Signature": signature}
            )
            assert response.status_code == 202, response.text
            assert _stored(db, "ampeco", body) == body

            # Same bytes, signed with a key hookgate does not know: refused.
            forged = signer("sha256", "not-" + key, file)
            refused = client.post(
                "/hooks/ampeco",
                content=body.replace(b"Alexander", b"Alexandor"),
                headers={**headers, "X-Signature": signature},
            )
            assert refused.status_code == 401, refused.text
            refused = client.post(
                "/hooks/ampeco", content=body, headers={**headers, "X-Signature": forged}
            )
            assert refused.status_code == 401, refused.text

        if signer_name == "openssl":
            # Uppercase hex with a `sha256=` prefix is accepted too.
            body = json.dumps(sample("cdr.received", next(_seq))).encode()
            file.write_bytes(body)
            signature = "sha256=" + signer("sha256", AMPECO_NEW, file).upper()
            response = client.post(
                "/hooks/ampeco", content=body, headers={**headers, "X-Signature": signature}
            )
            assert response.status_code == 202, response.text
            assert _stored(db, "ampeco", body) == body


@pytest.mark.parametrize("signer_name", SIGNERS)
def test_ztlment_signed_by_other_languages(
    served: tuple[Server, Path], tmp_path: Path, signer_name: str
) -> None:
    server, db = served
    signer = _available(signer_name)
    object_id = 880_000 + next(_seq)
    # Spaces after separators, as a Java serializer might write them: verified as sent.
    body = json.dumps(
        {"id": object_id, "type": "PAYMENT_OBJECT", "state": "PENDING_APPROVAL"}
    ).encode()
    file = tmp_path / "body.json"
    file.write_bytes(body)
    signature = signer("sha512", ZTLMENT_SECRET, file)
    assert len(signature) == 88 and signature.endswith("==")

    with httpx.Client(base_url=server.url, timeout=10) as client:
        headers = {"Content-Type": "application/json"}
        response = client.post(
            "/hooks/ztlment", content=body, headers={**headers, "X-Payload-Signature": signature}
        )
        assert response.status_code == 200, response.text
        assert _stored(db, "ztlment", body) == body
        rows = query(db, "SELECT dedup_key FROM inbox WHERE source = 'ztlment'")
        assert (f"PAYMENT_OBJECT:{object_id}:PENDING_APPROVAL",) in rows

        forged = signer("sha512", "another-secret", file)
        refused = client.post(
            "/hooks/ztlment", content=body, headers={**headers, "X-Payload-Signature": forged}
        )
        assert refused.status_code == 401, refused.text
