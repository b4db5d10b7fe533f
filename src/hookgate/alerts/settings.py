"""The `[alerts]` table: rules that watch the gateway and notifiers that tell someone.

Each rule kind is its own table shape (`kind = "..."` picks it), so a misspelt key is
refused at start-up naming the rule, not ignored at 3 a.m. With no `[[alerts.rules]]` the
built-in set (`default_rules`) watches everything an operator is expected to hear about.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

Severity = Literal["critical", "warning", "info"]
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
RuleName = Annotated[str, msgspec.Meta(pattern=_NAME)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)]
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Rule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    # Unique among the rules; defaults to the kind (one rule of each kind needs no name).
    name: RuleName | None = None
    severity: Severity = "warning"
    # Seconds between reminders while the alert lasts (default: [alerts] repeat_seconds).
    repeat_seconds: Seconds | None = None
    # Notifier names to tell (default: every notifier).
    notify: list[str] | None = None

    @property
    def kind(self) -> str:
        return str(type(self).__struct_config__.tag)

    @property
    def key(self) -> str:
        """The rule's name, as alerts record it."""
        return self.name or self.kind


class DestinationFailing(_Rule, tag="destination_failing", kw_only=True):
    """A destination's latest attempts all failed (`failures` in a row: its breaker is
    open on whichever instance sent them), or more than `dead_above` deliveries to it are
    dead (given up, waiting for a replay)."""

    destination: str | None = None  # every destination when unset
    failures: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None  # breaker_failures
    dead_above: Annotated[int, msgspec.Meta(ge=0)] = 0
    severity: Severity = "critical"


class SourceSilent(_Rule, tag="source_silent", kw_only=True):
    """No event from `source` for longer than `silent_seconds`, judged only within its
    active hours (a car park at night is quiet by nature)."""

    source: str
    silent_seconds: Seconds
    # "HH:MM-HH:MM" in `timezone` (an end before the start spans midnight); unset: always.
    active_hours: str | None = None
    active_days: list[Day] = msgspec.field(default_factory=lambda: list(DAYS))
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.active_hours is not None and not _HOURS.match(self.active_hours):
            raise ValueError(
                f"active_hours {self.active_hours!r} must be HH:MM-HH:MM, e.g. 07:00-22:00"
            )
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA zone") from None


class RejectionSpike(_Rule, tag="rejection_spike", kw_only=True):
    """More than `above` refusals of one source and reason within `window_seconds` (401s
    of a source usually mean the provider's secret was rotated and ours was not)."""

    source: str | None = None  # each source apart when unset
    # Refusal reasons counted together (e.g. unauthorized, too-many-failures); empty: each
    # reason apart.
    reasons: list[str] = []
    above: Annotated[int, msgspec.Meta(ge=0)] = 10
    window_seconds: Seconds = 300.0


class ProcessingBacklog(_Rule, tag="processing_backlog", kw_only=True):
    """The oldest event waiting for processing arrived more than `older_than_seconds` ago."""

    older_than_seconds: Seconds = 300.0


class Quarantined(_Rule, tag="quarantined", kw_only=True):
    """More than `above` events of a source are quarantined (authentic bodies our schema
    is behind on: an upgrade and `hookgate events reprocess` bring them in)."""

    source: str | None = None
    above: Annotated[int, msgspec.Meta(ge=0)] = 0


class BudgetExhausted(_Rule, tag="budget_exhausted", kw_only=True):
    """A group's charging budget refused a start within `window_seconds`."""

    group: str | None = None  # every group when unset
    window_seconds: Seconds = 3600.0
    severity: Severity = "info"


class FallbackDecisions(_Rule, tag="fallback_decisions", kw_only=True):
    """More than `above` Zaptec starts of a source were answered by the fallback (the
    decision missed its deadline or storage failed) within `window_seconds`."""

    source: str | None = None
    above: Annotated[int, msgspec.Meta(ge=0)] = 0
    window_seconds: Seconds = 900.0
    severity: Severity = "critical"


class StorageErrors(_Rule, tag="storage_errors", kw_only=True):
    """More than `above` storage failures (503 answers, failed batches, the alert
    evaluator's own queries) within `window_seconds` on the evaluating instance."""

    above: Annotated[int, msgspec.Meta(ge=0)] = 0
    window_seconds: Seconds = 300.0
    severity: Severity = "critical"


Rule = (
    DestinationFailing
    | SourceSilent
    | RejectionSpike
    | ProcessingBacklog
    | Quarantined
    | BudgetExhausted
    | FallbackDecisions
    | StorageErrors
)


class _Notifier(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="kind"):
    name: RuleName
    # Attempts per notification, with doubling pauses from `retry_backoff_seconds`.
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 5
    retry_backoff_seconds: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 2.0
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=120)] = 10.0
    # Only alerts of these severities (default: all).
    severities: list[Severity] = msgspec.field(
        default_factory=lambda: ["critical", "warning", "info"]
    )

    @property
    def kind(self) -> str:
        return str(type(self).__struct_config__.tag)


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError("url: an http:// or https:// URL is required")


class WebhookNotifier(_Notifier, tag="webhook", kw_only=True):
    """A JSON POST signed per Standard Webhooks (`webhook-id`, `-timestamp`, `-signature`)."""

    url: str
    secret: str | None = None
    headers: dict[str, str] = {}

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.secret is not None and not self.secret.startswith("whsec_"):
            raise ValueError("secret: a Standard Webhooks secret starts with whsec_")


class SlackNotifier(_Notifier, tag="slack", kw_only=True):
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat)."""

    url: str

    def __post_init__(self) -> None:
        _check_url(self.url)


class EmailNotifier(_Notifier, tag="email", kw_only=True):
    """Plain-text e-mail over SMTP (STARTTLS when the server offers it and `starttls`)."""

    host: str
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    sender: str
    to: list[str]
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    # Implicit TLS from the first byte (port 465).
    ssl: bool = False

    def __post_init__(self) -> None:
        if not self.to:
            raise ValueError("to: at least one recipient is needed")
        for address in [self.sender, *self.to]:
            if "@" not in address or any(c in address for c in "\r\n"):
                raise ValueError(f"{address!r} is not an e-mail address")


Notifier = WebhookNotifier | SlackNotifier | EmailNotifier


class AlertsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Alert rules, how often they are judged, and who is told."""

    enabled: bool = True
    # Seconds between evaluations of every rule.
    interval_seconds: Annotated[float, msgspec.Meta(ge=0.05, le=3600)] = 15.0
    # Seconds between reminders while an alert lasts (a rule may set its own).
    repeat_seconds: Seconds = 4 * 3600.0
    # The evaluating instance holds a lease this long, renewed every evaluation; another
    # instance takes over once it lapses.
    lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 60.0
    # The rules; none given: the built-in set (`default_rules`).
    rules: list[Rule] = []
    notifiers: list[Notifier] = []

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            if rule.key in seen:
                raise ValueError(
                    f"rules[{index}]: a rule named {rule.key!r} exists already; give each "
                    "rule of one kind its own name"
                )
            seen.add(rule.key)
        names = {n.name for n in self.notifiers}
        if len(names) != len(self.notifiers):
            raise ValueError("notifiers: two notifiers have the same name")
        for index, rule in enumerate(self.rules):
            for name in rule.notify or []:
                if name not in names:
                    raise ValueError(
                        f"rules[{index}].notify: no notifier named {name!r} "
                        f"(configured: {', '.join(sorted(names)) or 'none'})"
                    )

    def effective_rules(self) -> list[Rule]:
        """The configured rules, or the built-in set when none are."""
        return list(self.rules) if self.rules else default_rules()


def default_rules() -> list[Rule]:
    """What an operator wants to hear about without writing a rule."""
    return [
        DestinationFailing(),
        RejectionSpike(
            name="credentials-refused",
            reasons=[
                "unauthorized",
                "too-many-failures",
                "oauth-invalid_client",
                "oauth-invalid_grant",
            ],
            above=10,
            window_seconds=300,
        ),
        RejectionSpike(above=100, window_seconds=300),
        ProcessingBacklog(),
        Quarantined(),
        BudgetExhausted(),
        FallbackDecisions(),
        StorageErrors(),
    ]
