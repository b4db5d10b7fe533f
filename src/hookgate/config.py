"""Typed settings: one TOML file, `${ENV}` interpolation, validated at start-up.

Every command finds the file the same way: `--config`, else `$HOOKGATE_CONFIG`, else
`./hookgate.toml`. Errors name the offending key (`sources["ampeco"].secrets`), its line,
and what would be accepted, so an operator can fix the file without reading code.
Relative paths in the file (the SQLite database, CA bundles) are relative to the file's
directory, so every command finds the same database wherever it is run from.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from hookgate.alerts.settings import AlertsConfig
from hookgate.config_explain import explain, item_label, line_of
from hookgate.domain.anomalies import AnomalyRules
from hookgate.domain.errors import Invalid
from hookgate.domain.rules import Budget, ChargerRule, Group, Token, check_zone
from hookgate.domain.tariffs import Rates, Reimbursement, Tariff

CONFIG_ENV = "HOOKGATE_CONFIG"
DEFAULT_CONFIG = "hookgate.toml"
# Secrets `hookgate init` cannot know (issued by the provider) start with this; they are
# random beyond it, so a forgotten one still verifies nothing anybody could sign.
PLACEHOLDER = "REPLACE-ME-"

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# `$ZAPTEC_PASSWORD` without braces is taken literally; such a value is warned about.
_UNBRACED = re.compile(r"\$\$|\$\{[^}]*\}|\$([A-Z_][A-Z0-9_]+)")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"

SourceName = Annotated[str, msgspec.Meta(pattern=_NAME)]
Policy = Literal["allow", "deny"]
OnError = Literal["allow", "deny", "allow_known"]
OnInvalid = Literal["reject", "quarantine"]


class ConfigError(Invalid):
    """The configuration cannot be used; the message says which key and why."""


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """HTTP listener settings."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # The address providers use to reach this gateway; `hookgate init` prints URLs from it.
    public_url: str | None = None
    access_log: bool = False
    # Trust X-Forwarded-For/-Proto from these addresses (behind a load balancer); the
    # client address only appears in the rejection log, so it is off by default.
    proxy_headers: bool = False
    forwarded_allow_ips: str = "127.0.0.1"
    # Seconds that in-flight requests get to finish on SIGTERM before the server closes.
    graceful_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Limits at the HTTP edge (docs/security.md). Open connections beyond max_connections
    # first displace the longest-idle one; with none idle the newcomer gets 503.
    max_connections: Annotated[int, msgspec.Meta(ge=8, le=1_000_000)] = 4096
    # Request line plus header fields, and the number of header fields (431 beyond).
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1024 * 1024)] = 16 * 1024
    max_header_count: Annotated[int, msgspec.Meta(ge=8, le=10_000)] = 100
    # Whole-request deadlines from the first byte of a request to its last header field,
    # and from there to its last body byte (408 and close beyond); a connection with no
    # request in progress is closed after idle_timeout_seconds.
    header_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    body_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 30.0
    idle_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0
    # Body bytes being read at once across all requests (after their credentials passed,
    # or of signed bodies, whose signature needs the body); beyond it, 503 + Retry-After.
    max_buffered_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1 << 40)] = 64 * 1024 * 1024
    # Failed credentials per source and client address within the window before the
    # failing attempts get 429 (a valid credential always passes); 0 turns it off.
    auth_failure_limit: Annotated[int, msgspec.Meta(ge=0)] = 20
    auth_failure_window_seconds: Annotated[float, msgspec.Meta(gt=0, le=86400)] = 60.0
    # Most (source, address) pairs remembered at once; the oldest are forgotten first.
    auth_failure_table_size: Annotated[int, msgspec.Meta(ge=16, le=10_000_000)] = 10_000
    # Requests of one ingest source (every source but Zaptec's) being handled at once;
    # beyond it, 503 + Retry-After as soon as the request head is read, before its body,
    # its verification or its parse. Zaptec routes are never capped by it, so charging
    # authorization keeps its turns of the event loop under a flood; 0 turns it off
    # (docs/adr/0023-per-source-admission-at-the-edge.md). The default keeps the writer
    # busy (~5,000 events/s, each in progress for a few milliseconds) while a Zaptec call
    # waits a few milliseconds at each turn of the loop (docs/benchmarks.md).
    ingest_in_flight_max: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 32

    def __post_init__(self) -> None:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                "max_buffered_body_bytes must be at least max_body_bytes, or a body of the "
                "largest allowed size could never be read"
            )


class StorageConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the inbox lives. `sqlite:///path` (default) or `postgresql://...`."""

    url: str = "sqlite:///hookgate.db"
    # Apply pending migrations on `serve`; otherwise `serve` refuses an outdated schema.
    auto_migrate: bool = False
    # Largest number of writes that share one commit (group commit).
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 512
    # PostgreSQL: most connections this instance opens (writers, reads, admin).
    pool_size: Annotated[int, msgspec.Meta(ge=2, le=500)] = 10
    # PostgreSQL: batches committed concurrently by this instance (each on a connection).
    writers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    # Bytes of a rejected request's body kept for inspection.
    rejection_body_bytes: Annotated[int, msgspec.Meta(ge=0, le=1024 * 1024)] = 4096
    # Rejections recorded in full per source and reason each minute (per instance); the
    # rest are only counted (rejection_counts, hookgate_rejections_unrecorded_total), so a
    # flood of refused calls cannot fill the disk (docs/security.md).
    rejection_sample_per_minute: Annotated[int, msgspec.Meta(ge=0, le=100000)] = 20
    # Most bytes the rejection log may hold (bodies, replay copies, details); the oldest
    # records are deleted first once it is over. Counts are kept whatever this says.
    rejection_log_max_bytes: Annotated[int, msgspec.Meta(ge=1024 * 1024)] = 256 * 1024 * 1024
    # Seconds a provider is told to wait (Retry-After) when storage is unavailable.
    retry_after_seconds: Annotated[int, msgspec.Meta(ge=1)] = 5
    # Load shedding: writes queued for the writer (or in a batch not yet committed) beyond
    # which provider ingest is answered 503 + Retry-After at once; 0 is unbounded (never
    # shed). The default is about 200 ms of the writer's measured throughput (~5,000
    # events/s on either backend, docs/benchmarks.md; ADR 0015).
    queue_max: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 1000
    # Of queue_max, the room only Zaptec session starts and ends may use: charging
    # authorization keeps being decided and recorded while ingest is refused.
    queue_reserve: Annotated[int, msgspec.Meta(ge=0)] = 100

    def __post_init__(self) -> None:
        if self.url.startswith("postgres://"):  # libpq accepts both spellings
            self.url = "postgresql://" + self.url.removeprefix("postgres://")
        if not (self.url.startswith("sqlite:///") or self.url.startswith("postgresql://")):
            raise ValueError(
                f"url {self.url!r} must start with sqlite:/// (a file) or postgresql:// "
                "(or postgres://)"
            )
        if self.queue_max and self.queue_reserve >= self.queue_max:
            raise ValueError(
                f"queue_reserve ({self.queue_reserve}) must be below queue_max "
                f"({self.queue_max}), or ingest could never be queued"
            )

    def sqlite_file(self) -> str | None:
        """The database file of a `sqlite:///` URL (None for PostgreSQL)."""
        return self.url.removeprefix("sqlite:///") if self.url.startswith("sqlite:///") else None


AdminScope = Literal["read", "write"]


class AdminToken(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A named admin bearer token: `read` may only look, `write` may also change things.
    The name is what the audit log records as who made a change."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]
    token: str
    scope: AdminScope = "read"


class AdminConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bearer tokens for the admin API. Empty: the admin API refuses everyone.

    An item is a table `{name, token, scope}`, or a bare string: a `write` token named
    `admin` (`admin-2`, ... when there are several), as configurations before names had."""

    tokens: list[str | AdminToken] = []

    def __post_init__(self) -> None:
        names = [t.name for t in self.named()]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"admin token names must be unique: {', '.join(doubled)}")

    def named(self) -> list[AdminToken]:
        """Every configured token with its name and scope; empty ones (an unset variable)
        are left out, so they never match."""
        bare = [t for t in self.tokens if isinstance(t, str)]
        out: list[AdminToken] = []
        for index, item in enumerate(bare, 1):
            if item:
                name = "admin" if len(bare) == 1 else f"admin-{index}"
                out.append(AdminToken(name=name, token=item, scope="write"))
        out.extend(t for t in self.tokens if isinstance(t, AdminToken) and t.token)
        return out


class ConsoleConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The operator console's sign-in sessions (docs/console.md#signing-in)."""

    # A session ends after this many minutes without a request ...
    idle_minutes: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 60)] = 30
    # ... and this many hours after sign-in in any case, however busy.
    lifetime_hours: Annotated[int, msgspec.Meta(ge=1, le=30 * 24)] = 12

    def __post_init__(self) -> None:
        if self.idle_minutes > self.lifetime_hours * 60:
            raise ValueError(
                f"idle_minutes ({self.idle_minutes}) is longer than lifetime_hours "
                f"({self.lifetime_hours} h = {self.lifetime_hours * 60} min): a session "
                "could never sit idle that long; lower idle_minutes or raise lifetime_hours"
            )

    @property
    def idle_seconds(self) -> int:
        return self.idle_minutes * 60

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime_hours * 3600


class LoggingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Structured logs to stderr."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
    # One line per accepted (or duplicate) provider call: source, event id, status, time.
    access_log: bool = False
    # "request rejected" lines logged per source and reason each minute; the rest are
    # summed up in one "rejections suppressed" line once the minute is over.
    rejection_lines_per_minute: Annotated[int, msgspec.Meta(ge=0, le=100000)] = 20


class AuthorizationConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The charging decision engine, and the rules kept in version control.

    Entities listed here are managed by this file: they are written to the store at
    start-up, replace what the API/CLI had under the same id, and cannot be changed
    through the API/CLI (which manage day-to-day tokens).
    """

    # Zone of the day/week/month budget periods.
    timezone: str = "UTC"
    # kWh an approved session holds against energy budgets until its end reports the
    # real energy; a start needs this much room left.
    session_reserve_kwh: Annotated[float, msgspec.Meta(ge=0, le=1000)] = 1.0
    # Sessions older than this no longer count as active (their end never came).
    active_session_max_age_hours: Annotated[float, msgspec.Meta(gt=0)] = 48.0
    # How often the engine polls the store's change log (changes made elsewhere).
    refresh_interval_ms: Annotated[int, msgspec.Meta(ge=50, le=60000)] = 500
    groups: list[Group] = []
    chargers: list[ChargerRule] = []
    tokens: list[Token] = []
    budgets: list[Budget] = []

    def __post_init__(self) -> None:
        try:
            check_zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"timezone: {exc}") from None
        for items in (self.groups, self.chargers, self.tokens, self.budgets):
            for item in items:
                item.managed_by = "config"


class _Source(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="provider"):
    name: SourceName
    on_invalid: OnInvalid = "reject"

    def credentials(self) -> list[str]:
        """Every secret of the source, for fingerprints and masking."""
        raise NotImplementedError

    @property
    def provider(self) -> str:
        return str(type(self).__struct_config__.tag)


class ZaptecSource(_Source, tag="zaptec"):
    """Zaptec Cloud: OAuth password/client-credentials grant or HTTP Basic."""

    auth: Literal["oauth", "basic"] = "oauth"
    username: str = ""
    password: str = ""
    unknown_token: Policy = "deny"
    # When no decision is reached in time or storage fails: deny, allow, or allow_known
    # (tokens whose whitelist is ALLOWED_OFFLINE or ALWAYS).
    on_error: OnError = "deny"
    deny_status: Annotated[int, msgspec.Meta(ge=400, le=499)] = 403
    token_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=86400)] = 3600
    decision_deadline_ms: Annotated[int, msgspec.Meta(ge=10, le=30000)] = 2000

    def credentials(self) -> list[str]:
        return [s for s in (self.password,) if s]


SecurityProtocol = Literal["PLAINTEXT", "SASL_SSL", "SASL_PLAINTEXT", "SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Connection settings shared by the Kafka source and Kafka destinations."""

    brokers: list[str] | str = []
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    # A CA bundle for SSL/SASL_SSL when the system store does not hold the brokers' CA.
    ssl_ca_location: str | None = None

    def broker_list(self) -> list[str]:
        """`brokers` as a list whether it was written as a list or a comma-separated text."""
        if isinstance(self.brokers, str):
            return [b.strip() for b in self.brokers.split(",") if b.strip()]
        return [b.strip() for b in self.brokers if b.strip()]

    def check_kafka(self) -> None:
        """Refuse settings librdkafka would only reject later, naming the key."""
        if not self.broker_list():
            raise ValueError("brokers: at least one host:port is needed")
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ValueError(f"sasl_mechanism is required with {self.security_protocol}")
            if not self.sasl_username or not self.sasl_password:
                raise ValueError("sasl_username and sasl_password are required with SASL")


def kafka_settings(owner: Any) -> KafkaSettings:
    """The Kafka keys of a source or destination table, as one settings object."""
    return KafkaSettings(
        brokers=owner.brokers,
        security_protocol=owner.security_protocol,
        sasl_mechanism=owner.sasl_mechanism,
        sasl_username=owner.sasl_username,
        sasl_password=owner.sasl_password,
        ssl_ca_location=owner.ssl_ca_location,
    )


class AmpecoSource(_Source, tag="ampeco"):
    """AMPECO notifications signed with HMAC-SHA256 in X-Signature, by webhook or from a
    Kafka topic (`transport = "kafka"`)."""

    secrets: list[str] = []
    signature_header: str = "X-Signature"
    # A signed body that breaks our schema is AMPECO's data all the same (its schema moves
    # ahead of ours, and it gives up after a few retries): keep it for reprocessing.
    on_invalid: OnInvalid = "quarantine"
    transport: Literal["webhook", "kafka"] = "webhook"
    brokers: list[str] | str = []
    topic: str | None = None
    group_id: str | None = None
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    # Where a new consumer group starts reading: the oldest message or only new ones.
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # Kafka only: refuse a message without the signature header. Unset: required as soon
    # as `secrets` are configured (a producer that signs signs every message, and an
    # unsigned one in its topic is one the secret holder did not write). A webhook is
    # always verified.
    require_signature: bool | None = None
    # AMPECO's public API, read after a thin notification (cdr.received,
    # transaction.changed, chargePoint.changed) names an object: the tenant's base URL
    # (`https://<tenant>`) and an API token with read access. Unset: no fetching.
    api_base_url: str | None = None
    api_token: str | None = None
    # Requests per second to the API (AMPECO answers 429 beyond its tenant's limit).
    api_requests_per_second: Annotated[float, msgspec.Meta(gt=0, le=100)] = 5.0
    # A fetch that failed for a reason that may pass (429, 5xx, network) is retried with
    # exponential backoff up to this many attempts, then kept as failed.
    api_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 10
    api_initial_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    api_max_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 900.0

    def __post_init__(self) -> None:
        if self.api_base_url is not None:
            if not re.match(r"^https?://[^/\s]+", self.api_base_url):
                raise ValueError("api_base_url must be an http(s) URL such as https://tenant")
            if not self.api_token:
                raise ValueError("api_base_url needs api_token (an AMPECO API token)")
        elif self.api_token:
            raise ValueError("api_token needs api_base_url (the tenant's https:// URL)")
        if self.transport == "kafka":
            if not self.topic:
                raise ValueError('topic is required with transport = "kafka"')
            self.kafka().check_kafka()
            if self.require_signature and not [s for s in self.secrets if s]:
                raise ValueError("require_signature = true needs the signing secrets in secrets")
        elif self.require_signature is not None:
            raise ValueError(
                'require_signature applies to transport = "kafka"; a webhook is always verified'
            )

    def signature_required(self) -> bool:
        """Whether a Kafka message without the signature header is refused."""
        if self.require_signature is not None:
            return self.require_signature
        return any(self.secrets)

    def kafka(self) -> KafkaSettings:
        """The Kafka connection settings of a `transport = "kafka"` source."""
        return kafka_settings(self)

    def consumer_group(self) -> str:
        """The consumer group: `group_id`, else one named after the source."""
        return self.group_id or f"hookgate-{self.name}"

    def credentials(self) -> list[str]:
        # A Kafka source is authenticated by the broker; signatures are checked when sent.
        if self.transport == "kafka":
            return [s for s in (*self.secrets, self.sasl_password or "kafka") if s]
        return [s for s in self.secrets if s]


class EasyParkSource(_Source, tag="easypark"):
    """EasyPark Fleet parking transactions, HTTP Basic or an API key header."""

    auth: Literal["basic", "api_key"] = "basic"
    username: str = ""
    password: str = ""
    api_key_header: str = "X-Api-Key"
    api_keys: list[str] = []

    def credentials(self) -> list[str]:
        if self.auth == "basic":
            return [s for s in (self.password,) if s]
        return [s for s in self.api_keys if s]


class ZtlmentSource(_Source, tag="ztlment"):
    """ZTLment object state changes signed with HMAC-SHA512 in X-Payload-Signature."""

    secrets: list[str] = []
    signature_header: str = "X-Payload-Signature"
    # Signed state changes are authentic even when our schema is behind: keep them.
    on_invalid: OnInvalid = "quarantine"

    def credentials(self) -> list[str]:
        return [s for s in self.secrets if s]


SourceConfig = ZaptecSource | AmpecoSource | EasyParkSource | ZtlmentSource


class DestinationFilter(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which events a destination receives; every given part must match (empty: all).

    `event_types` are CloudEvents types (`hookgate.easypark.parking.completed`) or the
    provider's own type names; a trailing `*` matches a prefix. `where` maps a dotted path
    in the CloudEvent (`data.currency`, `subject`) to a value or a list of values.
    """

    providers: list[str] = []
    sources: list[str] = []
    event_types: list[str] = []
    where: dict[str, Any] = {}


class RetryPolicy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Exponential backoff with full jitter; past `max_attempts` or `max_age_seconds` a
    delivery is dead (kept, visible, replayable)."""

    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 12
    initial_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    max_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3600.0
    max_age_seconds: Annotated[float, msgspec.Meta(gt=0)] = 3 * 86400.0


class DestinationConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where accepted events go: an HTTP endpoint (Standard Webhooks signed) or a Kafka
    topic (CloudEvents, structured mode). Filter and retry keys may be written at the top
    level or in `[destinations.filter]` / `[destinations.retry]` tables."""

    name: SourceName
    kind: Literal["http", "kafka"]
    url: str | None = None
    secret: str | None = None
    headers: dict[str, str] = {}
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    # Concurrent in-flight deliveries to this destination.
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=256)] = 8
    # Kafka
    brokers: list[str] | str = []
    topic: str | None = None
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    # Filter (also accepted as a `filter` table)
    providers: list[str] = []
    sources: list[str] = []
    event_types: list[str] = []
    where: dict[str, Any] = {}
    filter: DestinationFilter | None = None
    # Retry schedule (also accepted as a `retry` table)
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    initial_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    max_backoff_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    max_age_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None
    retry: RetryPolicy | None = None
    # Consecutive failures that open the circuit, and how long it stays open at first.
    breaker_failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    breaker_cooldown_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0

    def __post_init__(self) -> None:
        if self.kind == "http":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError('url: an http:// or https:// URL is required for kind = "http"')
            if self.secret is not None and not self.secret.startswith("whsec_"):
                raise ValueError("secret: a Standard Webhooks secret starts with whsec_")
            if self.secret is not None:
                try:
                    base64.b64decode(self.secret.removeprefix("whsec_"), validate=True)
                except (binascii.Error, ValueError):
                    raise ValueError("secret: the part after whsec_ must be base64") from None
        else:
            if not self.topic:
                raise ValueError('topic is required for kind = "kafka"')
            self.kafka().check_kafka()
        policy = self.retry or RetryPolicy()
        self.retry = RetryPolicy(
            max_attempts=self.max_attempts or policy.max_attempts,
            initial_backoff_seconds=self.initial_backoff_seconds or policy.initial_backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds or policy.max_backoff_seconds,
            max_age_seconds=self.max_age_seconds or policy.max_age_seconds,
        )
        if self.retry.max_backoff_seconds < self.retry.initial_backoff_seconds:
            raise ValueError("max_backoff_seconds must not be below initial_backoff_seconds")
        given = self.filter or DestinationFilter()
        self.filter = DestinationFilter(
            providers=self.providers or given.providers,
            sources=self.sources or given.sources,
            event_types=self.event_types or given.event_types,
            where=self.where or given.where,
        )

    def policy(self) -> RetryPolicy:
        """The merged retry schedule."""
        assert self.retry is not None
        return self.retry

    def selection(self) -> DestinationFilter:
        """The merged filter."""
        assert self.filter is not None
        return self.filter

    def kafka(self) -> KafkaSettings:
        """Connection settings of a Kafka destination."""
        return kafka_settings(self)


class ProcessingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Outbox workers: projection into the views and delivery to destinations."""

    # Run the workers inside `hookgate serve`; false when `hookgate worker` runs them.
    in_process: bool = True
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=5000)] = 200
    # How often idle workers look for work (new events also wake them at once in-process).
    poll_interval_ms: Annotated[int, msgspec.Meta(ge=10, le=60000)] = 500
    # A claimed delivery is another worker's to take over after this long.
    lease_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 60.0


class OcpiConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OCPI 2.2.1, eMSP side: the endpoints under /ocpi/ that CPOs register with and ask
    for token authorizations (off until `enabled`)."""

    enabled: bool = False
    # The source name OCPI calls are recorded and decided under (audit, sessions).
    source: SourceName = "ocpi"
    # This gateway's base URL as CPOs reach it; the versions and endpoint URLs are built
    # on it. Empty: taken from each request (scheme and Host header).
    public_url: str = ""
    # hookgate's own OCPI identity as an eMSP (the credentials role and every token).
    country_code: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}$")] = "NL"
    party_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{3}$")] = "HGT"
    business_name: str = "hookgate"
    # As for a Zaptec source: the answer when no decision is reached in time.
    on_error: OnError = "deny"
    decision_deadline_ms: Annotated[int, msgspec.Meta(ge=10, le=30000)] = 2000
    # How long registration waits for a CPO's versions endpoints.
    client_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0


class TracingConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenTelemetry traces: one per event, from the provider's request through its
    commit, processing and every delivery attempt. Off by default (then it costs nothing)."""

    enabled: bool = False
    service_name: str = "hookgate"
    # OTLP/HTTP traces endpoint (http://collector:4318/v1/traces); needs the `otlp` extra.
    # Unset with tracing enabled: spans are written to stderr (for a first look).
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = {}
    # Share of traces kept (a parent's decision from an incoming traceparent is followed).
    sample_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 1.0

    def __post_init__(self) -> None:
        if self.otlp_endpoint is None:
            return
        if not self.otlp_endpoint.startswith(("http://", "https://")):
            raise ValueError("otlp_endpoint: an http:// or https:// URL is required")
        import importlib.util

        if self.enabled and importlib.util.find_spec("opentelemetry.exporter.otlp") is None:
            raise ValueError("otlp_endpoint needs the OTLP exporter: pip install 'hookgate[otlp]'")


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The whole file."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    authorization: AuthorizationConfig = msgspec.field(default_factory=AuthorizationConfig)
    sources: list[SourceConfig] = []
    processing: ProcessingConfig = msgspec.field(default_factory=ProcessingConfig)
    destinations: list[DestinationConfig] = []
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)
    tracing: TracingConfig = msgspec.field(default_factory=TracingConfig)
    ocpi: OcpiConfig = msgspec.field(default_factory=OcpiConfig)
    # Prices of sessions no provider prices, and home-charging reimbursement rates
    # (domain/tariffs.py; docs/configuration.md#tariffs).
    tariffs: list[Tariff] = []
    # Thresholds of the anomaly flags on charging sessions (domain/anomalies.py).
    anomalies: AnomalyRules = msgspec.field(default_factory=AnomalyRules)
    reimbursements: list[Reimbursement] = []

    def rates(self) -> Rates:
        """The tariffs and reimbursement rates, as pricing takes them."""
        return Rates(tariffs=tuple(self.tariffs), reimbursements=tuple(self.reimbursements))

    def __post_init__(self) -> None:
        for kind, rates in (("tariffs", self.tariffs), ("reimbursements", self.reimbursements)):
            names = [rate.name for rate in rates]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(f"{kind}: the names {twice} are used more than once")
        self._check_alert_rules()
        named: dict[str, int] = {}
        for index, destination in enumerate(self.destinations):
            if destination.name in named:
                raise ValueError(
                    f"destinations[{index}].name: {destination.name!r} is already the name of "
                    f"destinations[{named[destination.name]}]"
                )
            named[destination.name] = index
        seen: dict[str, int] = {}
        for index, source in enumerate(self.sources):
            if source.name in seen:
                raise ValueError(
                    f"sources[{index}].name: {source.name!r} is already the name of "
                    f"sources[{seen[source.name]}]"
                )
            seen[source.name] = index
        if self.ocpi.enabled and self.ocpi.source in seen:
            raise ValueError(
                f"ocpi.source: {self.ocpi.source!r} is already the name of "
                f"sources[{seen[self.ocpi.source]}]; OCPI decisions need a name of their own"
            )

    def _check_alert_rules(self) -> None:
        """A rule naming a source or destination that does not exist would never fire."""
        sources = {s.name for s in self.sources}
        destinations = {d.name for d in self.destinations}
        for index, rule in enumerate(self.alerts.rules):
            source = getattr(rule, "source", None)
            if source is not None and source not in sources:
                raise ValueError(
                    f"alerts.rules[{index}].source: no source named {source!r} "
                    f"(configured: {', '.join(sorted(sources)) or 'none'})"
                )
            destination = getattr(rule, "destination", None)
            if destination is not None and destination not in destinations:
                raise ValueError(
                    f"alerts.rules[{index}].destination: no destination named "
                    f"{destination!r} (configured: {', '.join(sorted(destinations)) or 'none'})"
                )

    def source(self, name: str) -> SourceConfig | None:
        """The source called `name`, if configured."""
        for source in self.sources:
            if source.name == name:
                return source
        return None


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The file every command reads: --config, else $HOOKGATE_CONFIG, else ./hookgate.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    return Path(DEFAULT_CONFIG)


class _Missing:
    """Where variables that are not set were referenced, when commands may do without."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.parts: dict[str, list[Any]] = {}  # the raw key path, to find the line


def _interpolate(
    value: Any,
    path: str,
    env: dict[str, str] | os._Environ[str],
    missing: _Missing | None,
    parts: tuple[Any, ...] = (),
) -> Any:
    """Expand `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`. A variable that is
    not set is an error, or (with `missing`) becomes "" and is recorded by key path."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            if missing is None:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            missing.paths.setdefault(path, name)
            missing.parts.setdefault(path, list(parts))
            return ""

        return _ENV_REF.sub(replace, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else k, env, missing, (*parts, k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _interpolate(v, f"{path}{item_label(v, i)}", env, missing, (*parts, i))
            for i, v in enumerate(value)
        ]
    return value


def _unbraced(value: Any, path: str, found: list[str]) -> None:
    """Warn about `$NAME`: it looks like a variable but is taken literally."""
    if isinstance(value, str):
        for match in _UNBRACED.finditer(value):
            if match.group(1):
                found.append(
                    f"{path}: ${match.group(1)} is taken literally (only ${{{match.group(1)}}} "
                    f"is replaced by the environment variable; write $$ for a literal $)"
                )
    elif isinstance(value, dict):
        for k, v in value.items():
            _unbraced(v, f"{path}.{k}" if path else k, found)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _unbraced(v, f"{path}{item_label(v, i)}", found)


def _covers(prefix: str, path: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


@dataclass
class ConfigFile:
    """A loaded configuration with what commands need to know about how it was read.

    `missing` maps key paths to environment variables that were not set (their values are
    empty); a command asks with `require` only for the parts it uses, so reading events
    does not need the admin token or a provider's password.
    """

    config: Config
    path: Path | None = None
    missing: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)  # of `missing` and `warnings` keys

    def located(self, path: str) -> str:
        """`file:line` of a key path, as far as it is known."""
        line = self.lines.get(path)
        return f"{self.path}:{line}" if line else f"{self.path}"

    def require(self, *prefixes: str) -> Config:
        """The configuration, once every variable under `prefixes` (all: none given) is set."""
        for path, name in self.missing.items():
            if not prefixes or any(_covers(prefix, path) for prefix in prefixes):
                where = f"{self.located(path)}: " if self.path else ""
                raise ConfigError(f"{where}{path}: environment variable {name} is not set")
        return self.config


def source_key(name: str) -> str:
    """The key path of a source, as `require` and messages name it."""
    return f'sources["{name}"]'


def _convert(data: dict[str, Any], missing: _Missing | None) -> Config:
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        text, parts = explain(str(exc), data, Config)
        if missing is not None:
            # A value left empty because its variable is not set may be what is invalid.
            where = text.split(":", 1)[0]
            for path, name in missing.paths.items():
                if _covers(where, path) or _covers(path, where):
                    raise ConfigError(f"{path}: environment variable {name} is not set") from None
        raise _Located(text, parts) from None


class _Located(ConfigError):
    def __init__(self, text: str, parts: list[Any]) -> None:
        super().__init__(text)
        self.parts = parts


def parse_config(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    """Validate an already-parsed TOML document (every variable must be set)."""
    resolved = _interpolate(data, "", os.environ if env is None else env, None)
    return _convert(resolved, None)


def _resolve_paths(config: Config, base: Path) -> None:
    """Relative file paths in the file are relative to the file's directory."""

    def absolute(value: str) -> str:
        return value if os.path.isabs(value) else os.path.normpath(base / value)

    database = config.storage.sqlite_file()
    if database is not None and database and not database.startswith(":"):
        config.storage.url = "sqlite:///" + absolute(database)
    for owner in [*config.sources, *config.destinations]:
        location = getattr(owner, "ssl_ca_location", None)
        if location:
            owner.ssl_ca_location = absolute(location)  # type: ignore[union-attr]


def read_config(
    path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None
) -> ConfigFile:
    """Find, read, interpolate and validate the configuration; variables that are not set
    are recorded in `missing` instead of failing (see `ConfigFile.require`)."""
    file = find_config(path)
    if not file.exists():
        raise ConfigError(
            f"no configuration at {file}: pass --config, set ${CONFIG_ENV}, "
            "or run `hookgate init` to write a starter file"
        )
    if file.is_dir():
        raise ConfigError(f"{file} is a directory: pass the TOML file itself")
    text = file.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    missing = _Missing()
    warnings: list[str] = []
    _unbraced(data, "", warnings)
    try:
        resolved = _interpolate(data, "", os.environ if env is None else env, missing)
        config = _convert(resolved, missing)
    except _Located as exc:
        line = line_of(text, exc.parts) if exc.parts else None
        where = f"{file}:{line}" if line else f"{file}"
        raise ConfigError(f"{where}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    _resolve_paths(config, file.absolute().parent)
    lines = {path: line_of(text, parts) for path, parts in missing.parts.items()}
    return ConfigFile(
        config,
        file,
        dict(missing.paths),
        warnings,
        {path: line for path, line in lines.items() if line},
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Find, read, interpolate and validate the configuration; every variable must be set."""
    return read_config(path).require()
