"""Notifiers against real servers: a signed webhook verified by the official
`standardwebhooks` package, a Slack-compatible endpoint, and e-mail through a local SMTP
server (aiosmtpd); failures are retried with the same message id, then given up."""

from __future__ import annotations

import base64
import email
import socket
from collections.abc import Iterator
from email.message import Message
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from hookgate.alerts.notifiers import Dispatcher
from hookgate.alerts.settings import AlertsConfig
from hookgate.metrics import Metrics
from hookgate.store.alerting import AlertRow
from hookgate.timeutil import utcnow
from support.delivery_receiver import Receiver, serve
from support.polling import until_async

SECRET = "whsec_" + base64.b64encode(b"notifier-test-secret-32-bytes!!!").decode()


def alert(severity: str = "critical", notifications: int = 1) -> AlertRow:
    now = utcnow()
    return AlertRow(
        id="01M9ALERTTEST0000000000001",
        rule="credentials-refused",
        kind="rejection_spike",
        subject="easypark",
        severity=severity,
        status="firing",
        summary="12 refusals of source easypark in 5 min (unauthorized: 12; above 10)",
        details={"total": 12, "reasons": {"unauthorized": 12}},
        fired_at=now,
        last_seen_at=now,
        notified_at=now,
        notifications=notifications,
    )


def notifiers(*tables: dict[str, Any]) -> AlertsConfig:
    return msgspec.convert({"notifiers": list(tables)}, AlertsConfig)


async def _settle(dispatcher: Dispatcher, timeout: float = 10) -> None:
    await until_async(lambda: not dispatcher._tasks, "notifications in flight", timeout)


@pytest.fixture
def hook() -> Iterator[Receiver]:
    yield from serve(Receiver(secret=SECRET))


@pytest.fixture
def chat() -> Iterator[Receiver]:
    yield from serve(Receiver())


async def test_webhook_is_signed_per_standard_webhooks_and_retried_with_one_id(
    hook: Receiver,
) -> None:
    hook.script = [500, 503]  # the receiver is down twice, then takes it
    config = notifiers(
        {
            "name": "oncall",
            "kind": "webhook",
            "url": hook.url,
            "secret": SECRET,
            "headers": {"X-Team": "payments"},
            "retry_backoff_seconds": 0.01,
        }
    )
    metrics = Metrics()
    dispatcher = Dispatcher(config.notifiers, metrics, instance="gw-1")
    assert dispatcher.notify(alert(), "firing", None) == 1
    await _settle(dispatcher)
    await dispatcher.drain()
    assert len(hook.received) == 3
    assert all(r.verified for r in hook.received), [r.error for r in hook.received]
    assert len({r.headers["webhook-id"] for r in hook.received}) == 1
    assert hook.received[0].headers["x-team"] == "payments"
    payload = hook.received[-1].payload
    assert payload["type"] == "alert.firing"
    assert payload["instance"] == "gw-1"
    assert payload["alert"]["rule"] == "credentials-refused"
    assert payload["id"] == hook.received[0].headers["webhook-id"]
    sent = metrics.alert_notifications.labels("oncall", "sent")._value.get()
    retried = metrics.alert_notifications.labels("oncall", "retried")._value.get()
    assert (sent, retried) == (1, 2)


async def test_a_notifier_that_stays_down_is_given_up_after_max_attempts(
    hook: Receiver,
) -> None:
    hook.default = 500
    config = notifiers(
        {
            "name": "oncall",
            "kind": "webhook",
            "url": hook.url,
            "secret": SECRET,
            "max_attempts": 3,
            "retry_backoff_seconds": 0.01,
        }
    )
    metrics = Metrics()
    dispatcher = Dispatcher(config.notifiers, metrics)
    dispatcher.notify(alert(), "resolved", None)
    await _settle(dispatcher)
    await dispatcher.drain()
    assert len(hook.received) == 3
    assert metrics.alert_notifications.labels("oncall", "failed")._value.get() == 1


async def test_slack_payload_and_severity_and_rule_filters(chat: Receiver) -> None:
    config = notifiers(
        {"name": "chat", "kind": "slack", "url": chat.url, "severities": ["critical"]},
        {"name": "other", "kind": "slack", "url": chat.url},
    )
    dispatcher = Dispatcher(config.notifiers, None, instance="gw-2")
    assert dispatcher.notify(alert("info"), "firing", ["chat"]) == 0  # severity filtered
    assert dispatcher.notify(alert("critical"), "firing", ["chat"]) == 1  # rule's notify
    await _settle(dispatcher)
    await dispatcher.drain()
    [received] = chat.received
    message = msgspec.json.decode(received.body)
    assert message["text"].startswith(":rotating_light: [CRITICAL] FIRING credentials-refused:")
    [attachment] = message["attachments"]
    assert attachment["color"] == "danger"
    assert {"title": "total", "value": "12", "short": True} in attachment["fields"]
    assert "gw-2" in attachment["footer"]


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, Message]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append((envelope, email.message_from_bytes(content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[_Mailbox, int]]:
    mailbox = _Mailbox()
    port = _free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, port
    finally:
        controller.stop()


async def test_email_over_smtp(smtp: tuple[_Mailbox, int]) -> None:
    mailbox, port = smtp
    config = notifiers(
        {
            "name": "mail",
            "kind": "email",
            "host": "127.0.0.1",
            "port": port,
            "sender": "hookgate@example.org",
            "to": ["oncall@example.org", "lead@example.org"],
        }
    )
    dispatcher = Dispatcher(config.notifiers, None, instance="gw-3")
    resolved = alert()
    resolved.status, resolved.resolved_at = "resolved", utcnow()
    dispatcher.notify(resolved, "resolved", None)
    await _settle(dispatcher)
    await dispatcher.drain()
    [(envelope, message)] = mailbox.messages
    assert envelope.mail_from == "hookgate@example.org"
    assert sorted(envelope.rcpt_tos) == ["lead@example.org", "oncall@example.org"]
    assert message["Subject"].startswith("[hookgate] [CRITICAL] RESOLVED credentials-refused:")
    assert message["Message-ID"] == "<01M9ALERTTEST0000000000001-resolved-1@example.org>"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert "subject:   easypark" in text and "resolved:" in text and "gw-3" in text


async def test_email_to_a_server_that_is_down_is_retried_then_given_up() -> None:
    config = notifiers(
        {
            "name": "mail",
            "kind": "email",
            "host": "127.0.0.1",
            "port": _free_port(),
            "sender": "hookgate@example.org",
            "to": ["oncall@example.org"],
            "max_attempts": 2,
            "retry_backoff_seconds": 0.01,
            "timeout_seconds": 2,
        }
    )
    metrics = Metrics()
    dispatcher = Dispatcher(config.notifiers, metrics)
    dispatcher.notify(alert(), "firing", None)
    await _settle(dispatcher)
    await dispatcher.drain()
    assert metrics.alert_notifications.labels("mail", "retried")._value.get() == 1
    assert metrics.alert_notifications.labels("mail", "failed")._value.get() == 1


def test_notifier_settings_are_checked() -> None:
    with pytest.raises(msgspec.ValidationError, match="whsec_"):
        notifiers({"name": "x", "kind": "webhook", "url": "http://h/", "secret": "plain"})
    with pytest.raises(msgspec.ValidationError, match="e-mail address"):
        notifiers({"name": "x", "kind": "email", "host": "h", "sender": "nobody", "to": ["a@b"]})
    with pytest.raises(msgspec.ValidationError, match="no notifier named"):
        msgspec.convert({"rules": [{"kind": "quarantined", "notify": ["pager"]}]}, AlertsConfig)
