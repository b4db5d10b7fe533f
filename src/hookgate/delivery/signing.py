"""Standard Webhooks signatures, so receivers can verify with any of its libraries.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64
part of the `whsec_` secret. The id is the event id: a redelivery carries the same id
and receivers deduplicate on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,<base64 HMAC-SHA256>`."""
    content = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    secret: str | None, message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` (unix seconds) and, with a secret,
    `webhook-signature`. The timestamp is wall-clock time: receivers reject old ones."""
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if secret is not None:
        headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
    return headers
