"""FastAPI receiver: verify over the raw body, validate with pydantic, one ORM insert, answer.

The endpoints are plain `def` functions, which FastAPI runs in its worker threadpool.
That is how most teams pair FastAPI with the (synchronous) SQLAlchemy ORM: the blocking
SQLite commit (an fsync) then runs off the event loop, and the code reads like any other
Flask-era service. The raw body is read by an async dependency (an `async def` cannot
be awaited from a thread), then handed to the sync endpoint.

Answers follow the provider contracts: AMPECO 202 `{}`, EasyPark 200 (409 for a known
parkingId), ZTLment 200, Zaptec 200 `{"sessionId"}` or 403; 401 for bad credentials,
422 for a body that breaks the schema, 404 for an unknown source.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import ChargeToken, Event, create_schema, make_engine
from .models import (
    AMPECO_MODELS,
    AmpecoNotification,
    ObjectState,
    ParkingTransaction,
    SessionStart,
)
from .settings import settings

engine = make_engine(settings.database)
create_schema(engine)
app = FastAPI(title="baseline webhook receiver", docs_url=None, redoc_url=None)

Headers = Mapping[str, str]
M = TypeVar("M", bound=BaseModel)


async def raw_body(request: Request) -> bytes:
    """The exact bytes the provider signed, before any JSON parsing."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


# -- verification -------------------------------------------------------------------------


def _unauthorized(detail: str, challenge: str | None = None) -> HTTPException:
    headers = {"WWW-Authenticate": challenge} if challenge else None
    return HTTPException(status_code=401, detail=detail, headers=headers)


def _decode_signature(text: str, size: int) -> bytes | None:
    """Hex (any case) or base64, optionally prefixed `sha256=` / `sha512=`."""
    value = text.strip().split("=", 1)[1] if text[:7].lower() in ("sha256=", "sha512=") else text
    value = value.strip()
    try:
        if len(value) == size * 2:
            return bytes.fromhex(value)
        decoded = base64.b64decode(value, validate=True)
    except (ValueError, binascii.Error):
        return None
    return decoded if len(decoded) == size else None


def verify_hmac(body: bytes, header: str | None, secrets: list[str], algorithm: str) -> None:
    if not secrets:
        raise _unauthorized("no secret configured for this source")
    if not header:
        raise _unauthorized("signature header missing")
    digestmod = getattr(hashlib, algorithm)
    given = _decode_signature(header, digestmod().digest_size)
    if given is None:
        raise _unauthorized("signature is not hex or base64")
    ok = False
    for secret in secrets:  # every secret is tried: no early exit that would leak timing
        expected = hmac.new(secret.encode(), body, digestmod).digest()
        ok |= hmac.compare_digest(expected, given)
    if not ok:
        raise _unauthorized("signature does not match the body")


def verify_basic(header: str | None, username: str, password: str) -> None:
    challenge = 'Basic realm="baseline"'
    if not password:
        raise _unauthorized("no credentials configured for this source", challenge)
    scheme, _, encoded = (header or "").partition(" ")
    try:
        user, _, given = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, binascii.Error):
        user, given = "", ""
    user_ok = hmac.compare_digest(user.encode(), username.encode())
    password_ok = hmac.compare_digest(given.encode(), password.encode())
    if scheme.lower() != "basic" or not (user_ok and password_ok):
        raise _unauthorized("HTTP Basic credentials are missing or wrong", challenge)


def _parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise HTTPException(status_code=422, detail=errors) from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=f"malformed JSON: {exc}") from None


# -- storage ------------------------------------------------------------------------------


def store(event: Event) -> bool:
    """Insert in its own transaction; False when (source, dedup_key) is already stored."""
    with Session(engine) as session:
        session.add(event)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
    return True


def _event(
    source: str, provider: str, event_type: str, key: str, doc: BaseModel, body: bytes, **kw: Any
) -> Event:
    return Event(
        source=source,
        provider=provider,
        event_type=event_type,
        dedup_key=key,
        received_at=datetime.now(UTC),
        headers=kw.get("headers", {}),
        document=doc.model_dump(mode="json", by_alias=True),
        raw_body=body,
    )


# -- providers ----------------------------------------------------------------------------


def ampeco(source: str, headers: Headers, body: bytes) -> JSONResponse:
    verify_hmac(body, headers.get("x-signature"), settings.ampeco_secrets, "sha256")
    data = _json(body)
    name = data.get("notification") if isinstance(data, dict) else None
    note = _parse(AMPECO_MODELS.get(str(name), AmpecoNotification), data)
    kept = {k: headers[k] for k in ("x-timestamp", "x-tenant") if k in headers}
    key = hashlib.sha256(body).hexdigest()  # AMPECO resends identical bodies
    store(_event(source, "ampeco", note.notification, key, note, body, headers=kept))
    return JSONResponse({}, status_code=202)  # a duplicate is accepted the same way


def easypark(source: str, headers: Headers, body: bytes) -> JSONResponse:
    verify_basic(
        headers.get("authorization"), settings.easypark_username, settings.easypark_password
    )
    tx = _parse(ParkingTransaction, _json(body))
    key = f"parking:{tx.parkingId}"
    if not store(_event(source, "easypark", "parking.completed", key, tx, body)):
        # 409 tells EasyPark "duplicate, already processed": it stops retrying.
        return JSONResponse(
            {"detail": f"parking {tx.parkingId} was already received"}, status_code=409
        )
    return JSONResponse({})


def ztlment(source: str, headers: Headers, body: bytes) -> JSONResponse:
    verify_hmac(body, headers.get("x-payload-signature"), settings.ztlment_secrets, "sha512")
    obj = _parse(ObjectState, _json(body))
    key = f"{obj.type}:{obj.id}:{obj.state}"
    kind = obj.type.removesuffix("_OBJECT").lower()
    store(_event(source, "ztlment", f"{kind}.{obj.state.lower()}", key, obj, body))
    return JSONResponse({})


HANDLERS: dict[str, Callable[[str, Headers, bytes], JSONResponse]] = {
    "ampeco": ampeco,
    "easypark": easypark,
    "ztlment": ztlment,
}


@app.post("/hooks/{source}")
def receive_hook(source: str, request: Request, body: RawBody) -> JSONResponse:
    handler = HANDLERS.get(source)
    if handler is None:
        raise HTTPException(status_code=404, detail=f"no source named {source!r}")
    return handler(source, request.headers, body)


@app.post("/hooks/zaptec/session-start")
def zaptec_session_start(request: Request, body: RawBody) -> JSONResponse:
    verify_basic(
        request.headers.get("authorization"), settings.zaptec_username, settings.zaptec_password
    )
    start = _parse(SessionStart, _json(body))
    with Session(engine) as session:
        token = session.get(ChargeToken, start.token_id.upper()) if start.token_id else None
        allowed = token is not None and token.status == "valid"
        session_id = str(uuid.uuid4()) if allowed else None
        event = _event(
            "zaptec", "zaptec", "session.start", f"start:{uuid.uuid4().hex}", start, body
        )
        event.document = {**event.document, "authorized": allowed, "sessionId": session_id}
        session.add(event)
        session.commit()
    if session_id is None:
        return JSONResponse(
            {"authorized": False, "reason": "UNKNOWN", "message": "Charging is not authorized."},
            status_code=403,
        )
    return JSONResponse({"sessionId": session_id})
