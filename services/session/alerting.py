"""Alerts: stored as a session ends, delivered in the background to each webhook and e-mail of the session's
policy, retried with back-off (domain_alerts.after_attempt). Nothing here runs inside the fold: a session's end
stores its alert (one insert) and wakes the dispatcher; a slow or dead receiver delays only its own delivery.

Webhook URLs are secrets: a URL or its reference is never logged, and an error's text is the receiver's status or
the exception's type, never the URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

from services.platform import lifecycle
from services.platform.secrets import SecretError, read_secret
from services.session import domain_alerts as alerts
from services.session.ports import AlertStore, Clock, Mailer, WebhookSender

log = logging.getLogger(__name__)


def resolve_url(url_ref: str) -> str:
    """A webhook's URL: the reference read ("env:NAME" / "file:/path"), or the URL as given."""
    if url_ref.startswith(("env:", "file:")):
        return read_secret(url_ref, "webhook url").strip()
    return url_ref


@dataclasses.dataclass
class AlertDispatcher:
    store: AlertStore
    webhooks: WebhookSender
    mailer: Mailer
    clock: Clock
    retry_base: dt.timedelta = dt.timedelta(seconds=5)
    max_attempts: int = alerts.MAX_ATTEMPTS
    attempt_timeout_s: float = 15.0
    _wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def wake(self) -> None:
        """New alerts are stored: deliver them now."""
        self._wake.set()

    async def deliver_due(self) -> int:
        """One round: every delivery now due is attempted (concurrently); returns how many were attempted."""
        due = await self.store.due(self.clock.now(), 100)
        await asyncio.gather(*(self._attempt(alert, number, delivery) for alert, number, delivery in due))
        return len(due)

    async def _attempt(self, alert: alerts.Alert, number: int, delivery: alerts.Delivery) -> None:
        error = ""
        try:
            await asyncio.wait_for(self._send(alert, delivery), self.attempt_timeout_s)
        except TimeoutError:
            error = f"no answer within {self.attempt_timeout_s:g} s"
        except SecretError as exc:
            error = str(exc)
        except Exception as exc:  # a receiver down, refusing, a network error: tried again later
            error = _describe(exc)
        after = alerts.after_attempt(delivery, self.clock.now(), error, self.retry_base, self.max_attempts)
        if error:
            log.warning(
                "alert %s: %s delivery to %s, attempt %d: %s",
                alert.alert_id,
                delivery.channel,
                delivery.shown,
                after.attempts,
                error,
            )
        await self.store.update(alert.alert_id, number, after)

    async def _send(self, alert: alerts.Alert, delivery: alerts.Delivery) -> None:
        if delivery.channel == "webhook":
            await self.webhooks.post(resolve_url(delivery.target), alerts.webhook_body(alert, delivery.format))
        else:
            subject, body = alerts.email(alert)
            await self.mailer.send(delivery.target, subject, body)

    async def run(self, stop: asyncio.Event, idle_s: float = 30.0) -> None:
        """Deliver until `stop`: a round whenever a delivery is due or an alert is stored."""
        while not stop.is_set():
            try:
                await self.deliver_due()
                next_due = await self.store.next_due()
            except Exception:
                log.exception("alert delivery round failed; retrying")
                next_due = None
            wait = idle_s
            if next_due is not None:
                wait = min(idle_s, max(0.0, (next_due - self.clock.now()).total_seconds()))
            if wait <= 0:
                continue
            await lifecycle.next_round(self._wake, stop, wait)


def _describe(exc: BaseException) -> str:
    """An error's text without a URL (aiohttp's errors name the URL they met)."""
    text = str(exc)
    if "://" in text or not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
