"""Client SMS through an HTTP gateway.

`SmsGateway` is the small port a provider implements: submit one message, and read one delivery
report (the gateway's status callback). `JsonHttpGateway` is the generic provider, close to the
request shape of the common SMS APIs (MessageBird, Twilio, CM.com):

    POST <MESH_NOTIFY_SMS_GATEWAY_URL>
    Authorization: Bearer <token from MESH_NOTIFY_SMS_TOKEN_FILE>
    Idempotency-Key: <notification id>
    Content-Type: application/json
    {"to": "+31612345678", "from": "<MESH_NOTIFY_SMS_SENDER>", "body": "<text>",
     "reference": "<notification id>", "status_callback": "<MESH_NOTIFY_SMS_CALLBACK_URL>"}

    2xx: accepted; 408, 429, 5xx, timeout, no connection: try again; any other 4xx: refused.

The gateway later reports (POST to the callback URL, signed as the README describes):

    {"reference": "<notification id>", "status": "delivered" | "failed" | "expired" | ...}

`SmsGatewayChannel` retries a submission that may succeed later (5xx, 408, 429, timeouts) a few
times, with exponential backoff and jitter, and never one the gateway refused (4xx): that
becomes ChannelRejected. The Idempotency-Key lets the gateway drop a repeat of a message it
did take before a timeout. The phone number goes to the gateway request only: errors are codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from services.notify.adapters.channels import ChannelError, ChannelRejected
from services.notify.domain.contact import Contact
from services.notify.domain.webhook import backoff_delay

MAX_RESPONSE_BYTES = 16 * 1024


class GatewayUnavailable(Exception):
    """Worth another try (the code only: 503, timeout, ...)."""


class GatewayRefused(Exception):
    """Never worth another try (the code only: 400, 401, 422, ...)."""


@dataclass(frozen=True)
class DeliveryReport:
    reference: str  # our notification id
    status: str  # accepted, buffered, delivered, failed, expired, rejected


class SmsGateway(Protocol):
    name: str

    async def submit(self, *, to: str, text: str, reference: str) -> None: ...

    def read_report(self, body: dict) -> DeliveryReport: ...

    async def close(self) -> None: ...


# The JSON provider's report statuses, mapped onto ours (unknown ones are refused, not guessed).
REPORT_STATUSES = {
    "accepted": "accepted",
    "queued": "accepted",
    "sent": "accepted",
    "buffered": "buffered",
    "delivered": "delivered",
    "delivery_failed": "failed",
    "failed": "failed",
    "undelivered": "failed",
    "expired": "expired",
    "rejected": "rejected",
}


class JsonHttpGateway:
    name = "json"

    def __init__(self, url: str, token: str, *, sender: str, callback_url: str = "", timeout: float = 10.0):
        if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
            raise ValueError("the SMS gateway URL must be https (http only to 127.0.0.1 for tests)")
        self.url = url
        self.token = token
        self.sender = sender
        self.callback_url = callback_url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def submit(self, *, to: str, text: str, reference: str) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = {"to": to, "from": self.sender, "body": text, "reference": reference}
        if self.callback_url:
            body["status_callback"] = self.callback_url
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": reference}
        try:
            async with self._session.post(self.url, json=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(MAX_RESPONSE_BYTES)  # bounded; the body is not needed
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            raise GatewayUnavailable(type(error).__name__) from None
        if 200 <= status < 300:
            return
        if status in (408, 429) or status >= 500:
            raise GatewayUnavailable(str(status))
        raise GatewayRefused(str(status))

    def read_report(self, body: dict) -> DeliveryReport:
        reference, status = body.get("reference"), body.get("status")
        if not isinstance(reference, str) or not reference or len(reference) > 64:
            raise ValueError("reference missing")
        if not isinstance(status, str) or status.lower() not in REPORT_STATUSES:
            raise ValueError("unknown status")
        return DeliveryReport(reference=reference, status=REPORT_STATUSES[status.lower()])

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class SmsGatewayChannel:
    def __init__(
        self,
        gateway: SmsGateway,
        *,
        tries: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.gateway = gateway
        self.tries = tries
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep

    async def send(self, contact: Contact, text: str, *, notification_id: str, language: str, template: str) -> str:
        if contact.channel != "sms":
            raise ChannelRejected("sms:not_a_phone_contact")
        last = ""
        for attempt in range(1, self.tries + 1):
            try:
                await self.gateway.submit(to=contact.address, text=text, reference=notification_id)
                return "sms:accepted"
            except GatewayRefused as refused:
                raise ChannelRejected(f"sms:refused:{refused}") from None
            except GatewayUnavailable as unavailable:
                last = str(unavailable)
            if attempt < self.tries:
                await self.sleep(backoff_delay(attempt, self.base_delay, self.max_delay))
        raise ChannelError(f"sms:unavailable:{last}")

    async def close(self) -> None:
        await self.gateway.close()
