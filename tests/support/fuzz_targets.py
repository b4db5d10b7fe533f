"""Fuzz targets and input strategies, shared by the bounded suite (tests/unit/test_fuzz.py)
and the longer campaign (bench/fuzz.py).

Each `check_*` feeds one input to one parser or verifier and asserts what any input must
get: a value, or the refusal that parser promises (a `Reject` with 400/401/422, a
`ConfigError`, a `BadCursor`, an OAuth error answer, a CSV row error); never another
exception, since at the edge that is a 500 or a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import json
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from hypothesis import strategies as st

from hookgate.authorization.csv_import import read_csv
from hookgate.config import ConfigError, SourceConfig, ZaptecSource, parse_config
from hookgate.domain.errors import BadCursor
from hookgate.domain.events import StoredEvent
from hookgate.oauth import TokenIssuer, redact_form
from hookgate.providers import build_providers
from hookgate.providers.base import Call, Parsed, Reject, SessionAuthority, nesting_depth
from hookgate.store.paging import decode_cursor, decode_id_cursor
from hookgate.store.views import VIEWS
from hookgate.store.viewtx import _order_values, cursor_value
from hookgate.timeutil import iso

FIXTURES = Path(__file__).resolve().parents[1] / "contract" / "fixtures"
SECRET = "fuzz-secret"
ISSUER = TokenIssuer(b"f" * 32)
PROVIDERS = build_providers(ISSUER)

CONFIG = parse_config(
    {
        "sources": [
            {"name": "ampeco", "provider": "ampeco", "secrets": [SECRET], "on_invalid": "reject"},
            {"name": "ampeco-q", "provider": "ampeco", "secrets": [SECRET]},
            {
                "name": "easypark",
                "provider": "easypark",
                "username": "ep",
                "password": SECRET,
            },
            {
                "name": "easypark-key",
                "provider": "easypark",
                "auth": "api_key",
                "api_key_header": "X-Partner-Key",
                "api_keys": [SECRET],
            },
            {"name": "ztlment", "provider": "ztlment", "secrets": [SECRET]},
            {"name": "zaptec", "provider": "zaptec", "username": "zap", "password": SECRET},
            {
                "name": "zaptec-basic",
                "provider": "zaptec",
                "auth": "basic",
                "username": "zap",
                "password": SECRET,
            },
        ]
    },
    env={},
)
SOURCES: dict[str, SourceConfig] = {source.name: source for source in CONFIG.sources}
# (source, route) of every body-carrying route.
ROUTES = [
    ("ampeco", ""),
    ("ampeco-q", ""),
    ("easypark", ""),
    ("ztlment", ""),
    ("zaptec", "session-start"),
    ("zaptec", "session-end"),
]


def fixtures(provider: str) -> list[bytes]:
    return sorted(path.read_bytes() for path in (FIXTURES / provider).glob("*.json"))


FIXTURE_BODIES = {provider: fixtures(provider) for provider in ("ampeco", "easypark", "ztlment")}
FIXTURE_BODIES["zaptec"] = fixtures("zaptec")

# -- strategies ------------------------------------------------------------------------

# Numbers and strings that broke or nearly broke parsers before: huge and tiny exponents,
# many digits, NUL, escapes of lone surrogates, brackets in strings, formula starts.
_EDGE_NUMBERS = [
    b"1e999999999",
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"1e26",
    b"9" * 5000,
    b"0." + b"0" * 400 + b"1",
    b"-0",
    b"1E+2",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"0.1e1",
]
_EDGE_STRINGS = [
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"[[[{{{"',
    b'"=HYPERLINK(\\"x\\")"',
    b'"NaN"',
    b'"Infinity"',
    b'"sNaN"',
    b'"2025-12-04T12:02:37Z"',
    b'"2025-02-30T25:61:61+99"',
    b'"9999-12-31T23:59:59-23:59"',
    b'"0001-01-01T00:00:00+14:00"',
    b'"\xff\xfe"',
    b'"\xed\xa0\x80"',
    b'""',
    b'"   "',
]
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
raw_json_values = st.one_of(
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
    st.sampled_from(_EDGE_NUMBERS + _EDGE_STRINGS),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)


def _keys(body: bytes) -> list[str]:
    doc = json.loads(body)
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                found.append(key)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(doc)
    return sorted(set(found))


@st.composite
def mutated_fixture(draw: st.DrawFn, provider: str) -> bytes:
    """A captured body with some of its fields (at any depth) replaced by odd values, or
    removed, or a field added; re-encoded as compact JSON with the odd values raw."""
    body = draw(st.sampled_from(FIXTURE_BODIES[provider]))
    doc = json.loads(body)
    keys = _keys(body)
    replacements: dict[str, bytes] = {}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        key = draw(st.sampled_from(keys) | st.text(min_size=1, max_size=8))
        replacements[key] = draw(raw_json_values)
    drop = set(draw(st.lists(st.sampled_from(keys), max_size=2)))
    # Placeholders keep the raw values (not all of them are valid Python JSON) out of json.
    marks: dict[str, bytes] = {}

    def rebuild(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, inner in value.items():
                if key in drop:
                    continue
                if key in replacements:
                    mark = f"@@{len(marks)}@@"
                    marks[mark] = replacements[key]
                    out[key] = mark
                else:
                    out[key] = rebuild(inner)
            return out
        if isinstance(value, list):
            return [rebuild(inner) for inner in value]
        return value

    rebuilt = rebuild(doc)
    if isinstance(rebuilt, dict):
        for key, raw in replacements.items():
            if key not in keys:
                mark = f"@@{len(marks)}@@"
                marks[mark] = raw
                rebuilt[key] = mark
    text = json.dumps(rebuilt, separators=(",", ":"), ensure_ascii=False).encode()
    for mark, raw in marks.items():
        text = text.replace(f'"{mark}"'.encode(), raw)
    return text


@st.composite
def flipped_bytes(draw: st.DrawFn, provider: str) -> bytes:
    """A captured body with a few bytes changed, inserted or removed."""
    body = bytearray(draw(st.sampled_from(FIXTURE_BODIES[provider])))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=max(len(body) - 1, 0)))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        byte = draw(st.integers(min_value=0, max_value=255))
        if action == "set" and body:
            body[at] = byte
        elif action == "insert":
            body.insert(at, byte)
        elif body:
            del body[at]
    return bytes(body)


def bodies(provider: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        mutated_fixture(provider),
        flipped_bytes(provider),
    )


header_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=120
)  # as the ASGI edge decodes header bytes (latin-1)


@st.composite
def credentials(draw: st.DrawFn) -> dict[str, str]:
    """Headers with odd Authorization, signature and API key values."""
    b64 = st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())
    userpass = st.tuples(header_text, header_text).map(
        lambda pair: base64.b64encode(f"{pair[0]}:{pair[1]}".encode("latin-1")).decode()
    )
    auth = draw(
        st.one_of(
            header_text,
            st.builds("Basic {}".format, st.one_of(b64, userpass, header_text)),
            st.builds("Bearer {}".format, st.one_of(header_text, b64)),
            st.just(f"Basic {base64.b64encode(f'zap:{SECRET}'.encode()).decode()}"),
        )
    )
    signature = draw(st.one_of(header_text, b64, st.binary(max_size=70).map(bytes.hex)))
    return {
        "authorization": auth,
        "x-signature": signature,
        "x-payload-signature": signature,
        "x-partner-key": draw(header_text),
        "content-type": "application/json",
    }


# -- targets ---------------------------------------------------------------------------


def check_parse(source_name: str, route: str, body: bytes) -> None:
    """Parse a body as the pipeline does (after authentication and verification)."""
    source = SOURCES[source_name]
    provider = PROVIDERS[source.provider]
    call = Call(route, {"content-type": "application/json"}, body)
    try:
        parsed = provider.parse(source, call)
    except Reject as exc:
        assert exc.status in (400, 422), (exc.status, exc.detail)
        assert exc.detail
        if exc.status == 422 and source.on_invalid == "quarantine":
            provider.quarantine(source, call)
        return
    after_parse(source, provider, parsed, body)


def after_parse(source: SourceConfig, provider: Any, parsed: Parsed, body: bytes) -> None:
    """What happens to a parsed body next: the inbox row's JSON, the session a Zaptec end
    closes, and the facts the processing step draws from it."""
    document = msgspec.json.decode(msgspec.json.encode(parsed.document))
    assert nesting_depth(msgspec.json.encode(parsed.document)) <= 64
    if isinstance(source, ZaptecSource):
        authority: SessionAuthority = provider
        if parsed.event_type == "session.start":
            authority.start_request(parsed)
        else:
            authority.session_end(parsed)
    event = StoredEvent(
        id="01JFUZZ0000000000000000000",
        source=source.name,
        provider=source.provider,
        event_type=parsed.event_type,
        received_at=datetime(2025, 12, 4, tzinfo=UTC),
        subject=parsed.subject,
        status=parsed.status,
        flags=parsed.flags,
        document=document,
        decision={"session_id": "s-1"} if parsed.event_type == "session.start" else None,
    )
    for fact in provider.facts(event):
        # The projection writes instants as UTC text.
        for value in msgspec.structs.astuple(fact):
            if isinstance(value, datetime):
                iso(value)


def check_verify(source_name: str, headers: dict[str, str], body: bytes) -> None:
    """Authenticate and verify a call with odd credentials: pass, or 401."""
    source = SOURCES[source_name]
    provider = PROVIDERS[source.provider]
    call = Call("session-start" if source.provider == "zaptec" else "", headers, body)
    try:
        provider.authenticate(source, call)
        provider.verify(source, call)
    except Reject as exc:
        assert exc.status == 401, (exc.status, exc.detail)
    provider.replay_copy(source, headers, body)


form_bodies = st.one_of(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(
            ["grant_type", "username", "password", "client_id", "client_secret", "scope"]
        )
        | st.text(max_size=8),
        st.sampled_from(["password", "client_credentials", "zap", SECRET, ""])
        | st.text(max_size=20),
        max_size=5,
    ).map(
        lambda form: "&".join(f"{k}={v}".replace(" ", "+") for k, v in form.items()).encode(
            "utf-8", "surrogatepass"
        )
    ),
)
content_types = (
    st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=utf-8",
            "",
        ]
    )
    | header_text
)


def check_token_endpoint(content_type: str, body: bytes, auth: str | None) -> None:
    """The token endpoint answers every request, with an RFC 6749 error or a token."""
    source = SOURCES["zaptec"]
    assert isinstance(source, ZaptecSource)
    answer = ISSUER.answer(source, content_type, body, auth)
    assert answer.status in (200, 400, 401), answer
    if answer.status == 200:
        token = answer.body["access_token"]
        assert ISSUER.check(source, token) is None
    else:
        assert answer.body["error"] and answer.body["error_description"]
    redact_form(body)


def check_bearer(token: str) -> None:
    """A bearer token the endpoint never issued is refused with a reason."""
    source = SOURCES["zaptec"]
    assert isinstance(source, ZaptecSource)
    problem = ISSUER.check(source, token)
    assert problem is None or isinstance(problem, str)


_SOURCE_KEYS = [
    "name",
    "provider",
    "secrets",
    "signature_header",
    "transport",
    "brokers",
    "topic",
    "group_id",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "auth",
    "username",
    "password",
    "api_keys",
    "api_key_header",
    "on_invalid",
    "require_signature",
    "deny_status",
    "unknown_token",
    "decision_deadline_ms",
    "on_error",
    "token_ttl_seconds",
]
_SECTIONS = [
    "server",
    "storage",
    "admin",
    "logging",
    "authorization",
    "processing",
    "delivery",
    "destinations",
    "sources",
]
config_values = st.one_of(
    json_scalars,
    st.sampled_from(
        [
            "ampeco",
            "zaptec",
            "easypark",
            "ztlment",
            "kafka",
            "webhook",
            "${NOPE}",
            "${HOME}",
            "sqlite:///:memory:",
            "postgresql://x",
            "SASL_SSL",
            "quarantine",
            "api_key",
        ]
    ),
    st.lists(json_scalars, max_size=3),
)
source_entries = st.dictionaries(
    st.sampled_from(_SOURCE_KEYS) | st.text(max_size=6), config_values, max_size=8
)
config_documents = st.dictionaries(
    st.sampled_from(_SECTIONS) | st.text(max_size=6),
    st.one_of(
        config_values,
        st.lists(source_entries, max_size=3),
        st.dictionaries(st.text(max_size=10) | st.sampled_from(_SOURCE_KEYS), config_values),
    ),
    max_size=6,
)


def check_config(data: dict[str, Any]) -> None:
    """A configuration loads, or ConfigError says what to fix."""
    try:
        parse_config(data, env={"HOME": "/root"})
    except ConfigError as exc:
        assert str(exc)


csv_texts = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.lists(
            st.sampled_from(
                [
                    "uid",
                    "status",
                    "driver",
                    "vehicle",
                    "cost_centre",
                    "kwh_per_day",
                    "sources",
                    "chargers",
                    "valid_until",
                    "TAG-1",
                    "valid",
                    "1e999999999",
                    "-1",
                    "NaN",
                    '"a,b"',
                    "zaptec",
                    "2025-12-04T00:00:00Z",
                    "9999-99-99",
                ]
            )
            | st.text(max_size=10),
            max_size=6,
        ),
        max_size=6,
    ).map(
        lambda rows: "\n".join(sep.join(row) for row, sep in zip(rows, ",;\t,;\t", strict=False))
    ),
)


def check_csv(text: str) -> None:
    """A token file is read into rows and row errors, whatever it holds."""
    parsed = read_csv(text, known_sources={"zaptec"})
    for error in parsed.errors:
        assert error.line >= 1 and str(error)


cursor_texts = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=string.ascii_letters + string.digits + "-_=", max_size=60),
    st.lists(st.text(max_size=30), max_size=4).map(
        lambda values: base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
    ),
    st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
)


def check_cursor(text: str) -> None:
    """Every cursor decoder answers BadCursor or a value the query can use."""
    with contextlib.suppress(BadCursor):
        decode_id_cursor(text)
    for table in VIEWS:
        try:
            value = cursor_value(table, text)
        except BadCursor:
            continue
        _order_values(VIEWS[table], value, "sqlite")
        _order_values(VIEWS[table], value, "postgresql")
    with contextlib.suppress(BadCursor):
        decode_cursor(text)


# -- admin API query parameters ----------------------------------------------------------

ADMIN_LISTS = [
    "/api/v1/events",
    "/api/v1/rejections",
    "/api/v1/rejection-counts",
    "/api/v1/decisions",
    "/api/v1/charging-sessions",
    "/api/v1/parking-transactions",
    "/api/v1/payments",
    "/api/v1/charge-points",
    "/api/v1/deliveries",
    "/api/v1/destinations",
    "/api/v1/export",
    "/api/v1/tokens",
    "/api/v1/groups",
    "/api/v1/rules",
    "/api/v1/budgets",
]
_PARAMS = [
    "source",
    "status",
    "charger_id",
    "token",
    "since",
    "until",
    "limit",
    "cursor",
    "license_number",
    "object_type",
    "state",
    "network_status",
    "event_id",
    "destination",
    "type",
    "provider",
    "subject",
    "result",
    "month",
    "format",
    "totals",
    "group_id",
    "whitelist",
    "managed_by",
]
_ODD_VALUES = [
    "",
    "0",
    "-1",
    "501",
    "99999999999999999999999",
    "9" * 5000,
    "\u00b9",  # digits str.isdigit() accepts: superscript, Arabic-Indic, fullwidth
    "\u0663",
    "\uff15",
    "1e400",
    "NaN",
    "2025-12",
    "2025-13",
    "0000-00",
    "9999-12",
    "2025-12-01T00:00:00Z",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "true",
    "json",
    "csv",
    "\x00",
    "%",
    "A" * 26,
    "W10",
    "WyIiXQ",
    "WyIyMDI1LTEyLTA0VDEyOjAwOjAwWiIsICIifQ",
]
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
# Percent-escapes no text encodes to: bytes that are not UTF-8, NUL, broken escapes.
_RAW = ["%ED%A0%80", "%FF%FE", "%00", "%zz", "%", "%C3", "%2", "a%00b"]


@st.composite
def admin_queries(draw: st.DrawFn) -> str:
    """A list endpoint with a query string of odd parameters (raw, percent-encoded)."""
    path = draw(st.sampled_from(ADMIN_LISTS))
    pairs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(_PARAMS) | _text,
                st.sampled_from(_ODD_VALUES) | _text | cursor_texts,
            ),
            max_size=4,
        )
    )
    parts = [urlencode([pair]) for pair in pairs]
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        name = draw(st.sampled_from(_PARAMS))
        parts.append(f"{name}={draw(st.sampled_from(_RAW))}")
    return path + ("?" + "&".join(parts) if parts else "")


def check_admin_answer(status: int, content_type: str, body: bytes) -> None:
    """An admin answer: never a 5xx; a refusal is problem+json saying what to fix."""
    assert status < 500, (status, body[:300])
    if status >= 400:
        assert content_type.startswith("application/problem+json"), (status, content_type)
        assert json.loads(body)["detail"]
