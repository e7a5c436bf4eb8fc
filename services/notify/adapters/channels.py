"""Channel adapters behind one interface: a signed webhook (how chat gateways such as
WeChat/WhatsApp/LINE and SMS providers are reached) and e-mail over SMTP."""

from __future__ import annotations

import asyncio
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

import aiohttp
import orjson

from services.notify.domain.signing import SIGNATURE_HEADER, sign


@dataclass(frozen=True)
class OutboundMessage:
    notification_id: str
    kind: str
    channel: str
    store_id: str
    booking_id: str | None
    recipient: dict[str, Any]
    locale: str
    subject: str
    text: str
    attempt: int
    # The same notification may have reached the channel already (its sender was killed
    # before recording the outcome); the idempotency key is the same as then.
    uncertain: bool = False


# Marks a resend after an unknown outcome (the receiver should dedupe by the idempotency key).
RESEND_HEADER = "X-OptiSync-Resend"


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ChannelAdapter(Protocol):
    @property
    def endpoint(self) -> str:
        """What the circuit breaker is keyed by (one broken gateway opens one breaker)."""
        ...

    async def send(self, message: OutboundMessage) -> None: ...

    async def close(self) -> None: ...


class WebhookAdapter:
    """POSTs the message as JSON, signed `t=<unix>,v1=<hmac>`; the notification id travels as
    `Idempotency-Key` so a gateway can drop the one resend a crash can cause."""

    def __init__(self, url: str, secret: str, timeout_s: float) -> None:
        self.url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return f"webhook:{self.url}"

    def _client(self) -> aiohttp.ClientSession:
        # aiohttp rather than httpx here: a third of the CPU per request, which is what
        # decides the rate one worker sustains on a small box.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=64)
            )
        return self._session

    async def send(self, message: OutboundMessage) -> None:
        body = orjson.dumps(message)  # orjson serializes dataclasses natively
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, int(time.time()), body),
            "Idempotency-Key": message.notification_id,
        }
        if message.uncertain:
            headers[RESEND_HEADER] = "uncertain"
        try:
            async with self._client().post(self.url, data=body, headers=headers) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        if status < 300:
            return
        # 4xx means this message will never be accepted (except timeouts and throttling).
        retryable = status >= 500 or status in (408, 425, 429)
        raise DeliveryError(f"HTTP {status}", retryable=retryable)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class SmtpAdapter:
    """E-mail through an SMTP server (the recipient's `chat_id` is the address on this channel)."""

    def __init__(self, host: str, port: int, sender: str, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s

    @property
    def endpoint(self) -> str:
        return f"smtp:{self.host}:{self.port}"

    async def send(self, message: OutboundMessage) -> None:
        address = message.recipient.get("chat_id") or ""
        if "@" not in address:
            raise DeliveryError("recipient has no e-mail address", retryable=False)
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = address
        email["Subject"] = message.subject
        email["Message-ID"] = f"<{message.notification_id}@notify.optisync>"
        email["X-OptiSync-Notification-Id"] = message.notification_id
        if message.uncertain:
            email[RESEND_HEADER] = "uncertain"
        email.set_content(message.text)
        try:
            await asyncio.to_thread(self._send_blocking, email)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"recipient refused: {exc}", retryable=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc

    def _send_blocking(self, email: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as client:
            client.send_message(email)

    async def close(self) -> None:
        return None


def build_adapter(spec: dict[str, Any], *, default_secret: str, timeout_s: float) -> ChannelAdapter:
    kind = spec.get("kind")
    if kind == "webhook":
        return WebhookAdapter(
            str(spec["url"]), str(spec.get("secret") or default_secret), timeout_s
        )
    if kind == "smtp":
        return SmtpAdapter(str(spec["host"]), int(spec["port"]), str(spec["sender"]), timeout_s)
    raise ValueError(f"unknown channel adapter kind {kind!r}")
