"""The contract every provider module fills in.

A provider knows its own authentication, payload models, dedup key and answers; the
ingress runs the same pipeline for all of them (limits, auth, verify, parse, store,
answer). Adding a provider means adding one module here and its fixtures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import operator
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate, count
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import msgspec

from hookgate.config import SourceConfig
from hookgate.domain.decisions import ConsumptionReport, SessionEnd
from hookgate.domain.errors import HookgateError
from hookgate.domain.events import StoredEvent
from hookgate.domain.facts import Fact

RouteKind = Literal["ingest", "authorize", "session_end", "token"]
S = TypeVar("S", bound=SourceConfig)
T = TypeVar("T")

_encoder = msgspec.json.Encoder(decimal_format="string")


class Reject(HookgateError):
    """Refuse the call with an HTTP status and a problem type; nothing is stored but the log.
    (A provider's answers are HTTP by nature, so a refusal names its status itself.)"""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        *,
        public: str | None = None,
    ) -> None:
        super().__init__(detail, code=code)
        self.status = status
        self.title = title
        # `detail` is for the operator (log, rejection record); `public` is what the
        # caller is told when that must say less.
        self.public = detail if public is None else public
        self.headers = headers or {}


def unauthorized(detail: str, challenge: str | None = None, *, note: str | None = None) -> Reject:
    """401 with a challenge where one applies. `note` is for the operator only (a source
    without credentials): the caller gets `detail`, as for any wrong credential."""
    headers = {"WWW-Authenticate": challenge} if challenge else {}
    if note is None:
        return Reject(401, "unauthorized", "Unauthorized", detail, headers)
    return Reject(401, "unauthorized", "Unauthorized", f"{detail} ({note})", headers, public=detail)


@dataclass(slots=True)
class Call:
    """One HTTP call as a provider sees it: lowercase header names, raw body bytes."""

    route: str
    headers: dict[str, str]
    body: bytes


@dataclass(slots=True)
class Parsed:
    """What a provider makes of a verified body."""

    event_type: str
    dedup_key: str
    document: Any
    subject: str | None = None
    flags: list[str] = field(default_factory=list)
    status: str = "received"
    # Energy/money the event reports for a charging session (accounted against budgets).
    consumption: ConsumptionReport | None = None


@dataclass(slots=True, frozen=True)
class Answer:
    """Status and JSON body of a reply."""

    status: int
    body: bytes
    content_type: str = "application/json"


def json_answer(status: int, document: Any) -> Answer:
    """An Answer with `document` encoded as JSON."""
    return Answer(status, _encoder.encode(document))


def problem_answer(status: int, document: dict[str, Any]) -> Answer:
    """An RFC 9457 problem answer."""
    return Answer(status, _encoder.encode(document), "application/problem+json")


# One decoder per model: `msgspec.json.decode(type=...)` looks the type up on every call,
# which for a generic alias such as dict[str, Any] costs more than the parse itself.
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

# Deepest nesting of objects and arrays a body may have. Real payloads stay under 10; the
# bound is far below Python's recursion limit, so neither the decoder nor anything that
# later walks a stored document (encoders, the database's JSON functions) can run out of
# stack, wherever it is called from.
MAX_DEPTH = 64
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nesting_depth(body: bytes) -> int:
    """How deep objects and arrays nest in a JSON text (brackets inside strings do not
    count); linear, with no recursion, for any input."""
    steps = _STRING.sub(b"", body).translate(None, _NOT_BRACKET).translate(_STEP)
    if not steps:
        return 0
    # Each opener adds 2 to the running sum, each closer 0: depth = sum - position.
    depth: int = max(map(operator.sub, accumulate(steps), count(1)))
    return depth


def check_json_text(body: bytes) -> None:
    """Refuse, before any parsing, what would make a decoder fail other than with a
    syntax error: nesting beyond MAX_DEPTH and bytes that are not UTF-8 (msgspec checks
    UTF-8 only in the strings it keeps, not in fields it skips)."""
    # Fewer brackets than the bound cannot nest beyond it: the common case costs two scans.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        depth = nesting_depth(body)
        if depth > MAX_DEPTH:
            raise Reject(
                400,
                "nesting-too-deep",
                "Bad Request",
                f"objects and arrays nest {depth} levels deep; at most {MAX_DEPTH} are allowed",
            )
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Reject(
                400,
                "malformed-json",
                "Bad Request",
                f"the body is not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})",
            ) from None


def decode(body: bytes, model: type[T]) -> T:
    """Parse JSON into `model`: 400 when it is not JSON (or not UTF-8, or nested too
    deep), 422 when it breaks the schema."""
    check_json_text(body)
    decoder = _decoders.get(model)
    if decoder is None:
        decoder = _decoders[model] = msgspec.json.Decoder(model)
    try:
        result: T = decoder.decode(body)
        return result
    except msgspec.ValidationError as exc:
        raise Reject(422, "schema-violation", "Unprocessable Content", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Reject(
            400, "malformed-json", "Bad Request", f"the body is not valid JSON: {exc}"
        ) from None
    except RecursionError:
        # Only reachable by a malformed text whose unclosed brackets the depth scan cannot
        # pair up; refused all the same.
        raise Reject(
            400, "nesting-too-deep", "Bad Request", "objects and arrays nest too deep"
        ) from None


SCHEMA_MISMATCH = "schema_mismatch"
"""The flag of an authentic event stored raw because it breaks our schema."""

_MSGSPEC_ERROR = re.compile(r"^(?P<rule>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<want>[^`]*)`, got `(?P<got>[^`]*)`$")


def violation(detail: str) -> str:
    """A schema error as `<JSON path>: <rule>`, e.g. `$.session.meterStop: required` or
    `$.session.id: expected str, got int` (msgspec's wording, made uniform)."""
    match = _MSGSPEC_ERROR.match(detail.strip())
    rule, path = (match["rule"], match["path"] or "$") if match else (detail, "$")
    if missing := _MISSING.match(rule):
        return f"{path}.{missing['name']}: required"
    if expected := _EXPECTED.match(rule):
        return f"{path}: expected {expected['want']}, got {expected['got']}"
    return f"{path}: {rule[:1].lower()}{rule[1:]}"


class ReplayCopy(msgspec.Struct, frozen=True):
    """A stored `Rejection.replay`: the kept headers and the whole body (base64)."""

    headers: dict[str, str]
    body: bytes  # msgspec reads and writes bytes as base64


def read_replay_copy(raw: bytes) -> ReplayCopy:
    """Decode a `Rejection.replay` written by `Provider.replay_copy`."""
    return msgspec.json.decode(raw, type=ReplayCopy)


def json_block(document: dict[str, object], indent: str) -> str:
    """A JSON object to copy from a terminal: one key per line, long lists wrapped."""
    lines = ["{"]
    for index, (key, value) in enumerate(document.items()):
        comma = "," if index < len(document) - 1 else ""
        text = json.dumps(value)
        if isinstance(value, list) and len(text) > 60:
            items = textwrap.wrap(", ".join(json.dumps(item) for item in value), 76)
            lines += [f'  "{key}": [', *(f"    {line}" for line in items), f"  ]{comma}"]
        else:
            lines.append(f'  "{key}": {text}{comma}')
    lines.append("}")
    return "\n".join(indent + line for line in lines)


def body_hash(body: bytes) -> str:
    """SHA-256 hex of the raw body."""
    return hashlib.sha256(body).hexdigest()


class Provider(Generic[S]):
    """Base receiver: override what differs."""

    name: ClassVar[str]
    routes: ClassVar[dict[str, RouteKind]] = {"": "ingest"}
    # Headers kept with each event (credentials are masked, see verify.mask_headers).
    keep_headers: ClassVar[frozenset[str]] = frozenset(
        {"content-type", "user-agent", "x-forwarded-for", "x-request-id", "authorization"}
    )

    # Its routes may be sent credentials in the body (a token form, or an authentication
    # payload posted to the wrong URL): a refused body is kept only as redacted JSON.
    credential_bodies: ClassVar[bool] = False

    # -- what the rest of hookgate asks of a provider (setup, edge, operations) --------

    @classmethod
    def create(cls, issuer: Any) -> Provider[Any]:
        """The receiver, given the token issuer of a gateway (most providers ignore it)."""
        return cls()

    @classmethod
    def decides_starts(cls) -> bool:
        """Whether this provider asks hookgate to authorize charging sessions live."""
        return "authorize" in cls.routes.values()

    # Who issues a secret of the source that `hookgate init` cannot know.
    secret_issuer: ClassVar[str] = "the provider"
    # What becomes of a refused call hookgate cannot verify again (`rejections rerun`).
    resend: ClassVar[str] = "the provider has to send the call again"
    # None: `hookgate init` makes the source's secret up; else the name of the
    # placeholder it writes instead (the provider issues that secret).
    init_placeholder: ClassVar[str | None] = None

    @classmethod
    def starter(cls, secret: str) -> str:
        """The `[[sources]]` table `hookgate init` writes for this provider."""
        return f'[[sources]]\nname = "{cls.name}"\nprovider = "{cls.name}"\n'

    @classmethod
    def portal(cls, url: str, secret: str, config_name: str) -> str:
        """What to enter at the provider so that it calls this gateway at `url`."""
        return f"{cls.name}: send calls to {url}/hooks/{cls.name}"

    def guessable(self, source: S) -> bool:
        """Whether the source's credentials could be guessed online (a password, an API
        key), so that failures are throttled per address; a signature or a bearer token
        this gateway signed cannot be."""
        return False

    def via_kafka(self, source: S) -> bool:
        """Whether the source receives through a Kafka topic instead of HTTP."""
        return False

    def secret_headers(self, source: S) -> frozenset[str]:
        """Header names whose whole value is a secret."""
        return frozenset()

    def problems(self, source: S) -> list[str]:
        """Configuration problems to announce at start-up (a source without credentials)."""
        if not source.credentials():
            return [f"source {source.name!r} has no credentials configured: it rejects every call"]
        return []

    def replay_headers(self, source: S) -> frozenset[str]:
        """Headers (lowercase) a refused call must keep to be verified again after a
        configuration fix. Empty when the call's credentials would have to be stored
        (Basic, API keys, bearer tokens): such calls are never kept for a re-run."""
        return frozenset()

    def replay_copy(self, source: S, headers: Mapping[str, str], body: bytes) -> bytes | None:
        """The `Rejection.replay` copy of a refused call: its whole body and only the
        `replay_headers`; None when this source keeps none. Pass only a complete body
        (never the head of an over-size one)."""
        names = self.replay_headers(source)
        if not names:
            return None
        kept = {name: value for name, value in headers.items() if name in names}
        return _encoder.encode({"headers": kept, "body": base64.b64encode(body).decode()})

    def authenticate(self, source: S, call: Call) -> None:
        """Check credentials carried in headers, before the body is read."""

    def verify(self, source: S, call: Call) -> None:
        """Check signatures over the raw body."""

    def parse(self, source: S, call: Call) -> Parsed:
        """Turn the verified body into an event; Reject with 400/422 when it is not one."""
        raise NotImplementedError

    def quarantine(self, source: S, call: Call, reason: Reject | None = None) -> Parsed:
        """An authentic body that breaks our schema (on_invalid=quarantine), kept raw for an
        operator: flagged `schema_mismatch`, its violation in the document, held out of
        processing until reprocessed. Its type and dedup key come from `drift_identity`."""
        event_type, dedup_key, subject = self.drift_identity(call)
        detail = reason.detail if reason is not None else "the body breaks the schema"
        return Parsed(
            event_type=event_type,
            dedup_key=dedup_key,
            document={"violation": violation(detail), "error": detail},
            subject=subject,
            flags=[SCHEMA_MISMATCH],
            status="quarantined",
        )

    def drift_identity(self, call: Call) -> tuple[str, str, str | None]:
        """(event type, dedup key, subject) of a body our schema refused. The key must be
        the one a valid parse would give where the body still carries it, so that resends
        of a drifted event stay one event; without one, the body hash under `quarantine:`."""
        return "invalid", "quarantine:" + body_hash(call.body), None

    def accepted(self, event_id: str) -> Answer:
        """The answer to a newly stored event."""
        return json_answer(200, {})

    def duplicate(self, event_id: str) -> Answer:
        """The answer to an event already in the inbox."""
        return self.accepted(event_id)

    # -- after the answer: processing and delivery -------------------------------------

    def facts(self, event: StoredEvent) -> list[Fact]:
        """What a stored event says about sessions, charge points, parking or payments
        (run by the processing step, never before the answer)."""
        return []

    def cloudevent_type(self, event_type: str) -> str:
        """The CloudEvents `type` hookgate publishes for one of this provider's events."""
        return f"hookgate.{self.name}.{event_type}"

    def cloudevent_data(self, event: StoredEvent) -> Any:
        """The CloudEvents `data` of a stored event: its parsed document."""
        return event.document


@dataclass(slots=True, frozen=True)
class StartRequest:
    """Who wants to charge where: the input of a charging decision."""

    charger_id: str | None
    token: str | None
    user_id: str | None
    installation_id: str | None


class SessionAuthority(Protocol):
    """A provider that asks hookgate to authorize charging sessions (routes
    `authorize` and `session_end`)."""

    def start_request(self, parsed: Parsed) -> StartRequest:
        """The decision input of a parsed session start."""

    def session_end(self, parsed: Parsed) -> SessionEnd:
        """The session a parsed end closes."""

    def approve(self, session_id: str) -> Answer:
        """The approval answer carrying the new session id."""

    def deny(self, source: Any, reason: str, message: str) -> Answer:
        """The deny answer (never 2xx)."""
