"""Client SMS against a local HTTP gateway (aiohttp) that fails, times out, refuses and calls
back with signed delivery reports to the notify web server's status route."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import pytest
from aiohttp import web

from meshcli.supervisor import free_port, settings_from
from services.notify.adapters.channel_setup import client_channels
from services.notify.adapters.sms_status import STATUS_PATH
from services.notify.domain import webhook
from services.notify.domain.contact import Contact
from tests.integration.notify.client_channel_kit import (
    PHONE_NUMBER,
    assert_no_personal_data,
    client_case,
    dispatcher,
    drain,
    metrics_text,
    record_client_notification,
)

TOKEN = "gateway-token-for-tests"
CALLBACK_SECRET = b"callback-secret-of-enough-length"


class Gateway:
    """An SMS provider: answers by a script, then reports delivery to the status callback. Like a
    real one it sends one message per idempotency key (a retry of a request that timed out on the
    client's side is the same message), and it tries a report again while the callback does not
    take it (a report can overtake the sender's own record of the send)."""

    def __init__(self, script: list[str], report: str = "delivered"):
        self.script = list(script)
        self.report = report
        self.requests: list[dict] = []
        self.reports: list[int] = []
        self.accepted: set[str] = set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append({"auth": request.headers.get("Authorization"), "key": key, **body})
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "timeout":
            await asyncio.sleep(3)
        if behaviour.isdigit():
            return web.Response(status=int(behaviour))
        if key not in self.accepted:
            self.accepted.add(key)
            asyncio.get_running_loop().create_task(self.call_back(body["status_callback"], body["reference"]))
        return web.json_response({"id": "gw-1", "status": "accepted"}, status=202)

    async def call_back(self, url: str, reference: str) -> None:
        for _ in range(20):
            status = await post_report(url, {"reference": reference, "status": self.report})
            self.reports.append(status)
            if status < 400:
                return
            await asyncio.sleep(0.2)


async def post_report(url: str, report: dict, *, secret: bytes = CALLBACK_SECRET, at: int | None = None) -> int:
    body = json.dumps(report).encode()
    stamp = int(time.time()) if at is None else at
    headers = {
        webhook.TIMESTAMP_HEADER: str(stamp),
        webhook.SIGNATURE_HEADER: webhook.sign(secret, stamp, body),
        "Content-Type": "application/json",
    }
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status


@pytest.fixture
async def sms_setup(tmp_path):
    """Gateway and notify web server on local ports; returns a builder for one script."""
    runners = []

    async def serve(app: web.Application, port: int | None = None) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        port = port or free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    async def build(script: list[str], report: str = "delivered"):
        gateway = Gateway(script, report)
        gateway_app = web.Application()
        gateway_app.router.add_post("/v1/messages", gateway.handle)
        gateway_port = await serve(gateway_app)
        web_port = free_port()
        (tmp_path / "sms-token").write_text(TOKEN + "\n")
        (tmp_path / "sms-callback-secret").write_bytes(CALLBACK_SECRET + b"\n")
        config = settings_from(
            {
                "MESH_NOTIFY_SMS_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}/v1/messages",
                "MESH_NOTIFY_SMS_TOKEN_FILE": str(tmp_path / "sms-token"),
                "MESH_NOTIFY_SMS_SENDER": "Meldpunt",
                "MESH_NOTIFY_SMS_TIMEOUT": "1",
                "MESH_NOTIFY_SMS_CALLBACK_URL": f"http://127.0.0.1:{web_port}{STATUS_PATH}",
                "MESH_NOTIFY_SMS_CALLBACK_SECRET_FILE": str(tmp_path / "sms-callback-secret"),
            }
        )
        channels = client_channels(config, tmp_path / "outbox.jsonl")
        channels.router.by_channel["sms"].base_delay = 0.05  # the backoff, shortened for the test
        sender = dispatcher(tmp_path, channels.router, max_attempts=2)
        notify_web = web.Application()
        callback = channels.status_callback(config, sender.outcomes)
        assert callback is not None
        callback.add_to(notify_web)  # as the service adds it to the dashboard's server
        await serve(notify_web, web_port)
        return gateway, sender, f"http://127.0.0.1:{web_port}{STATUS_PATH}", channels

    yield build
    for runner in runners:
        await runner.cleanup()


async def _wait_for(predicate, within_seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_timeouts_and_5xx_are_retried_with_one_idempotency_key_then_the_report_is_recorded(sms_setup, caplog):
    gateway, sender, _callback_url, channels = await sms_setup(["timeout", "503", "ok"])
    case_id = client_case(sender, Contact("sms", PHONE_NUMBER), languages=("pl",))
    notification_id = record_client_notification(sender, case_id, language="pl")
    caplog.set_level(logging.DEBUG)

    assert await drain(sender, notification_id) == "delivered"
    assert len(gateway.requests) == 3
    assert {r["key"] for r in gateway.requests} == {notification_id}
    assert {r["reference"] for r in gateway.requests} == {notification_id}
    assert {r["auth"] for r in gateway.requests} == {f"Bearer {TOKEN}"}
    last = gateway.requests[-1]
    assert last["to"] == PHONE_NUMBER and last["from"] == "Meldpunt"
    assert "Huis aan de Haven" in last["body"] and "pomoc" in last["body"].lower()  # Polish text
    assert sender.store.delivery(notification_id).last_result == "sms:accepted"

    assert await _wait_for(lambda: sender.outcomes.get(notification_id).receipt == "delivered")
    # The answer the gateway got: taken once, after any tries that overtook the record of the send.
    assert await _wait_for(lambda: gateway.reports[-1:] == [204])
    assert gateway.reports.count(204) == 1 and set(gateway.reports) <= {404, 204}
    outcome = sender.outcomes.get(notification_id)
    assert (outcome.medium, outcome.state, outcome.receipt) == ("sms", "sent", "delivered")
    metrics = metrics_text()
    assert 'referralmesh_channel="sms",referralmesh_outcome="sent"' in metrics
    assert 'referralmesh_channel="sms",referralmesh_outcome="report_delivered"' in metrics
    logs = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    assert_no_personal_data(logs, metrics, sender.store.delivery(notification_id).envelope.decode("latin-1"))
    assert TOKEN not in logs
    await channels.close()


async def test_a_refusal_is_not_retried(sms_setup):
    gateway, sender, _callback_url, channels = await sms_setup(["422"])
    case_id = client_case(sender, Contact("sms", PHONE_NUMBER))
    notification_id = record_client_notification(sender, case_id)

    assert await drain(sender, notification_id) == "dead"
    assert len(gateway.requests) == 1
    assert sender.store.delivery(notification_id).last_result == "rejected:sms:refused:422"
    assert sender.outcomes.get(notification_id).state == "rejected"
    await channels.close()


async def test_a_gateway_that_stays_down_leaves_the_message_to_the_dispatchers_later_tries(sms_setup):
    gateway, sender, _callback_url, channels = await sms_setup(["503"] * 8)
    case_id = client_case(sender, Contact("sms", PHONE_NUMBER))
    notification_id = record_client_notification(sender, case_id)

    assert await drain(sender, notification_id) == "dead"  # after the dispatcher's 2 tries
    assert len(gateway.requests) == 8  # 4 quick tries inside each of the dispatcher's 2
    assert [a["result"] for a in sender.store.attempts(notification_id)] == ["channel:sms:unavailable:503"] * 2
    await channels.close()


async def test_delivery_reports_must_be_signed_fresh_known_and_newer_than_the_last(sms_setup):
    _gateway, sender, callback_url, channels = await sms_setup(["ok"], report="buffered")
    case_id = client_case(sender, Contact("sms", PHONE_NUMBER))
    notification_id = record_client_notification(sender, case_id)
    assert await drain(sender, notification_id) == "delivered"
    assert await _wait_for(lambda: sender.outcomes.get(notification_id).receipt == "buffered")

    report = {"reference": notification_id, "status": "delivered"}
    assert await post_report(callback_url, report, secret=b"not-the-secret-at-all-000") == 401
    assert await post_report(callback_url, report, at=int(time.time()) - 3600) == 401  # a replay, too old
    assert await post_report(callback_url, {"reference": "unknown-id", "status": "delivered"}) == 404
    assert await post_report(callback_url, {"reference": notification_id, "status": "teleported"}) == 400
    assert sender.outcomes.get(notification_id).receipt == "buffered"

    now = int(time.time())
    assert await post_report(callback_url, {**report, "status": "failed"}, at=now + 2) == 204
    assert await post_report(callback_url, report, at=now + 1) == 204  # older than the recorded one
    assert sender.outcomes.get(notification_id).receipt == "failed"
    assert 'referralmesh_outcome="report_refused"' in metrics_text()
    await channels.close()
