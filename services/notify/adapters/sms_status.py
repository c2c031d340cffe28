"""The SMS gateway's delivery reports: `POST /channels/sms/status` on the notify web server.

The gateway signs each report as our agency webhooks are signed (domain/webhook.py):
`X-Mesh-Timestamp: <unix seconds>` and `X-Mesh-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>">` with the shared secret (MESH_NOTIFY_SMS_CALLBACK_SECRET_FILE). A report
with a bad signature or a timestamp more than 5 minutes off is refused (401); a report older
than the one recorded changes nothing, so a replayed report cannot undo a newer one. Answers:
204 recorded (or already known), 400 unreadable, 401 unsigned or stale, 404 unknown message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from aiohttp import web

from services.notify.adapters.channels_sms import SmsGateway
from services.notify.adapters.client_outcomes import ClientOutcomes
from services.notify.adapters.dispatch import count_client_message
from services.notify.domain import webhook

log = logging.getLogger(__name__)
STATUS_PATH = "/channels/sms/status"


class SmsStatusCallback:
    def __init__(
        self,
        gateway: SmsGateway,
        outcomes: ClientOutcomes,
        secret: bytes,
        *,
        clock: Callable[[], float] = time.time,
        tolerance_seconds: int = webhook.DEFAULT_TOLERANCE_SECONDS,
    ):
        if len(secret) < 16:
            raise ValueError("the SMS callback secret must be at least 16 bytes")
        self.gateway = gateway
        self.outcomes = outcomes
        self.secret = secret
        self.clock = clock
        self.tolerance = tolerance_seconds

    def add_to(self, app: web.Application) -> None:
        app.router.add_post(STATUS_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()  # bounded by the application's client_max_size
        timestamp = request.headers.get(webhook.TIMESTAMP_HEADER, "")
        signature = request.headers.get(webhook.SIGNATURE_HEADER, "")
        if not webhook.verify(self.secret, timestamp, body, signature, now=self.clock(), tolerance=self.tolerance):
            count_client_message("sms", "report_refused")
            log.warning("SMS delivery report refused: bad signature or stale timestamp")
            return web.Response(status=401)
        try:
            data = json.loads(body)
            report = self.gateway.read_report(data if isinstance(data, dict) else {})
        except ValueError:
            return web.Response(status=400)
        known = await asyncio.to_thread(self.outcomes.get, report.reference)  # the store: off the loop
        if known is None or known.medium != "sms":
            return web.Response(status=404)
        if await asyncio.to_thread(
            self.outcomes.record_receipt, report.reference, report.status, float(int(timestamp))
        ):
            count_client_message("sms", f"report_{report.status}")
            log.info("SMS delivery report", extra={"notification_id": report.reference, "result": report.status})
        return web.Response(status=204)
