"""The alert channels' adapters: webhooks over HTTP (aiohttp) and e-mail over SMTP (the standard library's
smtplib, in a thread). Their errors never carry a webhook's URL (alerting._describe)."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiohttp

from services.platform.secrets import read_secret


class HttpWebhooks:
    """POSTs a JSON body; anything but a 2xx answer is an error (its status, never the URL)."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def post(self, url: str, body: bytes) -> None:
        async with (
            aiohttp.ClientSession(timeout=self.timeout) as http,
            http.post(url, data=body, headers={"Content-Type": "application/json"}) as answer,
        ):
            if not 200 <= answer.status < 300:
                raise WebhookRefused(f"the receiver answered HTTP {answer.status}")


class WebhookRefused(RuntimeError):
    pass


@dataclass(frozen=True)
class SmtpMailer:
    """Plain-text mail through the service's SMTP server (SFVAULT_SMTP_*): STARTTLS when asked, login when a
    user name is set (its password from a secret reference)."""

    host: str
    port: int = 25
    sender: str = "sfvault@localhost"
    username: str = ""
    password_ref: str = ""
    starttls: bool = False
    timeout_s: float = 10.0

    async def send(self, to: str, subject: str, body: str) -> None:
        if not self.host:
            raise MailNotConfigured("no SMTP server is set (SFVAULT_SMTP_HOST)")
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(body)
        await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, read_secret(self.password_ref, "SFVAULT_SMTP_PASSWORD_REF"))
            smtp.send_message(message)


class MailNotConfigured(RuntimeError):
    pass
