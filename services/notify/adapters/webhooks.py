"""Agency webhooks: the endpoint configuration and the signed HTTP POST."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

from services.notify.domain import webhook


class WebhookConfigError(ValueError):
    pass


@dataclass(frozen=True)
class WebhookEndpoint:
    agency: str
    url: str
    secret: bytes

    def __repr__(self) -> str:  # never print the secret
        return f"WebhookEndpoint(agency={self.agency!r}, url={self.url!r})"


def load_webhooks(path: Path | None, environ=os.environ) -> dict[str, WebhookEndpoint]:
    if path is None or not Path(path).exists():
        return {}
    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    endpoints: dict[str, WebhookEndpoint] = {}
    for index, entry in enumerate(document.get("agencies") or []):
        where = f"{path}: agencies[{index}]"
        agency, url = entry.get("agency"), entry.get("url")
        if not agency or not url:
            raise WebhookConfigError(f"{where}: agency and url are required")
        if not str(url).startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise WebhookConfigError(f"{where}: url must be https (plain http only on loopback)")
        if entry.get("secret_env"):
            secret = environ.get(entry["secret_env"], "")
            if not secret:
                raise WebhookConfigError(f"{where}: environment variable {entry['secret_env']} is not set")
        else:
            secret = entry.get("secret", "")
        if len(secret) < 16:
            raise WebhookConfigError(f"{where}: the secret must be at least 16 characters")
        if agency in endpoints:
            raise WebhookConfigError(f"{where}: agency {agency!r} is listed twice")
        endpoints[agency] = WebhookEndpoint(agency, str(url), secret.encode())
    return endpoints


# We need only the status of an agency's answer; at most this much of its body is read, so a
# misbehaving endpoint cannot make the notify service buffer an endless response.
MAX_RESPONSE_BYTES = 64 * 1024


class WebhookSender:
    """One signed POST per call; the caller decides about retries."""

    def __init__(self, timeout: float = 10.0, clock=time.time):
        self.timeout = timeout
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(
        self, endpoint: WebhookEndpoint, notification_id: str, payload: dict, attempt: int
    ) -> tuple[bool, str]:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        stamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            webhook.ID_HEADER: notification_id,
            webhook.TIMESTAMP_HEADER: str(stamp),
            webhook.SIGNATURE_HEADER: webhook.sign(endpoint.secret, stamp, body),
            webhook.ATTEMPT_HEADER: str(attempt),
        }
        try:
            session = await self._client()
            async with session.post(endpoint.url, data=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(MAX_RESPONSE_BYTES)  # bounded; the rest is dropped with the connection
                status = response.status
        except TimeoutError:
            return False, "timeout"
        except aiohttp.ClientError as error:
            return False, f"connection:{type(error).__name__}"
        if webhook.retryable(status):
            return False, f"http:{status}"
        return True, f"http:{status}"
