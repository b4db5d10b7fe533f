"""Telling someone: a signed webhook, a Slack-compatible message, an e-mail.

Each notification is sent in the background with its own retries (doubling pauses), so
a slow or failing notifier never holds up the evaluation of the rules or another
notifier. A message keeps its id across retries (`webhook-id`, `Message-ID`), so a
receiver that got it twice can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx
import msgspec
import structlog

from hookgate import __version__
from hookgate.alerts.settings import EmailNotifier, Notifier, SlackNotifier, WebhookNotifier
from hookgate.delivery.signing import signature_headers
from hookgate.metrics import Metrics
from hookgate.store.alerting import AlertRow

log = structlog.get_logger("hookgate.alerts")
_encoder = msgspec.json.Encoder()

# What happened to the alert: it fired, it still holds (a reminder), it is over.
Change = str  # "firing" | "repeat" | "resolved"
_VERB = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}
_SLACK_ICON = {"firing": ":rotating_light:", "repeat": ":bell:", "resolved": ":white_check_mark:"}


class NotifyError(Exception):
    """One attempt failed; the message says why (retried unless attempts are used up)."""


def message_id(alert: AlertRow, change: Change) -> str:
    """The id of one notification, the same on every retry."""
    return f"{alert.id}-{change}-{alert.notifications}"


def payload(alert: AlertRow, change: Change, instance: str) -> dict[str, Any]:
    """The JSON document a webhook notifier posts."""
    return {
        "type": f"alert.{change}",
        "id": message_id(alert, change),
        "alert": alert.public(),
        "instance": instance,
    }


def headline(alert: AlertRow, change: Change) -> str:
    """One line for a chat message or a mail subject."""
    return f"[{alert.severity.upper()}] {_VERB[change]} {alert.rule}: {alert.summary}"


def text(alert: AlertRow, change: Change, instance: str) -> str:
    """The plain-text body of an e-mail."""
    item = alert.public()
    lines = [
        headline(alert, change),
        "",
        f"rule:      {alert.rule} ({alert.kind})",
        f"subject:   {alert.subject}",
        f"severity:  {alert.severity}",
        f"fired at:  {item['fired_at']}",
    ]
    if alert.resolved_at is not None:
        lines.append(f"resolved:  {item['resolved_at']}")
    lines += [
        f"alert id:  {alert.id} (`hookgate alerts show {alert.id}`)",
        f"instance:  {instance}",
        "",
        "details:",
        *(f"  {k}: {v}" for k, v in sorted(alert.details.items())),
    ]
    return "\n".join(lines) + "\n"


class Sender:
    """One configured notifier."""

    def __init__(self, config: Notifier, client: httpx.AsyncClient, instance: str) -> None:
        self.config = config
        self.client = client
        self.instance = instance

    @property
    def name(self) -> str:
        return self.config.name

    async def send(self, alert: AlertRow, change: Change) -> None:
        """One attempt; raises NotifyError."""
        config = self.config
        if isinstance(config, WebhookNotifier):
            body = _encoder.encode(payload(alert, change, self.instance))
            headers = {**config.headers, "content-type": "application/json"}
            headers.update(
                signature_headers(config.secret, message_id(alert, change), int(time.time()), body)
            )
            await self._post(config.url, body, headers)
        elif isinstance(config, SlackNotifier):
            icon = _SLACK_ICON[change]
            body = _encoder.encode(
                {
                    "text": f"{icon} {headline(alert, change)}",
                    "attachments": [
                        {
                            "color": "good" if change == "resolved" else "danger",
                            "fields": [
                                {"title": k, "value": str(v), "short": True}
                                for k, v in sorted(alert.details.items())
                            ],
                            "footer": f"hookgate {self.instance} · alert {alert.id}",
                        }
                    ],
                }
            )
            await self._post(config.url, body, {"content-type": "application/json"})
        else:
            assert isinstance(config, EmailNotifier)
            await asyncio.to_thread(self._mail, config, alert, change)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        limit = self.config.timeout_seconds
        try:
            response = await self.client.post(url, content=body, headers=headers, timeout=limit)
        except httpx.HTTPError as exc:
            raise NotifyError(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise NotifyError(f"HTTP {response.status_code} {response.reason_phrase}")

    def _mail(self, config: EmailNotifier, alert: AlertRow, change: Change) -> None:
        mail = EmailMessage()
        mail["Subject"] = f"[hookgate] {headline(alert, change)}"[:250]
        mail["From"] = config.sender
        mail["To"] = ", ".join(config.to)
        mail["Date"] = formatdate(localtime=False)
        domain = config.sender.rsplit("@", 1)[1]
        mail["Message-ID"] = f"<{message_id(alert, change)}@{domain}>"
        mail.set_content(text(alert, change, self.instance))
        try:
            smtp: smtplib.SMTP
            if config.ssl:
                smtp = smtplib.SMTP_SSL(
                    config.host,
                    config.port,
                    timeout=config.timeout_seconds,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_seconds)
            with smtp:
                smtp.ehlo()
                if not config.ssl and config.starttls and smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if config.username:
                    smtp.login(config.username, config.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"{type(exc).__name__}: {exc}") from exc


class Dispatcher:
    """Sends notifications in the background, each with its notifier's retries."""

    def __init__(
        self,
        notifiers: list[Notifier],
        metrics: Metrics | None,
        *,
        instance: str | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.instance = instance or socket.gethostname()
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            headers={"user-agent": f"hookgate/{__version__}"},
            trust_env=False,
        )
        self.senders = [Sender(n, self._client, self.instance) for n in notifiers]
        self._metrics = metrics
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self, alert: AlertRow, change: Change, only: list[str] | None) -> int:
        """Queue the notification for every notifier meant for it (`only`: these names);
        returns how many were queued."""
        queued = 0
        for sender in self.senders:
            if only is not None and sender.name not in only:
                continue
            if alert.severity not in sender.config.severities:
                continue
            task = asyncio.ensure_future(self._deliver(sender, alert, change))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            queued += 1
        return queued

    async def _deliver(self, sender: Sender, alert: AlertRow, change: Change) -> None:
        config = sender.config
        pause = config.retry_backoff_seconds
        for attempt in range(1, config.max_attempts + 1):
            try:
                await asyncio.wait_for(sender.send(alert, change), config.timeout_seconds * 2)
            except (NotifyError, TimeoutError) as exc:
                error = str(exc) or "timed out"
                last = attempt == config.max_attempts
                (log.error if last else log.warning)(
                    "alert notification failed",
                    notifier=sender.name,
                    alert_id=alert.id,
                    rule=alert.rule,
                    change=change,
                    attempt=attempt,
                    error=error,
                    gave_up=last,
                )
                self._count(sender.name, "failed" if last else "retried")
                if last:
                    return
                await self._sleep(pause)
                pause *= 2
                continue
            log.info(
                "alert notified",
                notifier=sender.name,
                alert_id=alert.id,
                rule=alert.rule,
                change=change,
                attempt=attempt,
            )
            self._count(sender.name, "sent")
            return

    def _count(self, notifier: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.alert_notifications.labels(notifier, outcome).inc()

    async def drain(self, wait_seconds: float = 10.0) -> None:
        """Wait (a while) for notifications in flight, then close the HTTP client."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=wait_seconds)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not self._client.is_closed:
            await self._client.aclose()
