"""Shared receiver for providers that sign the body with HMAC."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from hookgate.config import AmpecoSource, ZtlmentSource
from hookgate.providers.base import Call, Provider, unauthorized
from hookgate.verify import Algorithm, decode_signature, hmac_matches

SignedSource = AmpecoSource | ZtlmentSource


class SignedProvider(Provider[SignedSource]):
    """Verifies `signature_header` = HMAC(secret, raw body) for any configured secret."""

    algorithm: ClassVar[Algorithm]

    def replay_headers(self, source: SignedSource) -> frozenset[str]:
        # The signature is over the body alone, so body + signature can be checked again.
        return frozenset({source.signature_header.lower(), "content-type"})

    def replay_copy(
        self, source: SignedSource, headers: Mapping[str, str], body: bytes
    ) -> bytes | None:
        # A call without a well-formed signature (missing, or no digest of this
        # algorithm's size) cannot pass after any configuration fix: keep nothing of it.
        signature = headers.get(source.signature_header.lower())
        if not signature or decode_signature(signature, self.algorithm) is None:
            return None
        return super().replay_copy(source, headers, body)

    def authenticate(self, source: SignedSource, call: Call) -> None:
        # The signature covers the body, so only its presence can be checked before the
        # body is read: an unsigned call is refused without reading it. (A source without
        # secrets is refused by `verify`, after the body, so that the call can be re-run
        # once a secret is configured.)
        if [s for s in source.secrets if s] and not call.headers.get(
            source.signature_header.lower()
        ):
            raise unauthorized(f"the {source.signature_header} header is missing")

    def verify(self, source: SignedSource, call: Call) -> None:
        # The signing secrets only: a Kafka source's SASL password is no signing key.
        secrets = [s for s in source.secrets if s]
        # Without secrets every call fails as a wrong signature would: the caller is not
        # told that the source is misconfigured; the operator is (the note).
        note = None if secrets else f"source {source.name!r} has no secret configured"
        header = source.signature_header.lower()
        signature = call.headers.get(header)
        if not signature:
            raise unauthorized(f"the {source.signature_header} header is missing", note=note)
        if not secrets or not hmac_matches(call.body, signature, secrets, self.algorithm):
            raise unauthorized(
                f"the {source.signature_header} signature does not match the body", note=note
            )
