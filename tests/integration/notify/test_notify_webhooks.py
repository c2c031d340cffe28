"""Webhook delivery against a local receiver that fails, delays and sees duplicates; dead
letters on the real broker and their replay."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from aiohttp import web
from kafka import KafkaProducer

from meshcli.supervisor import free_port
from meshkernel import envelope as envelopes
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import DEAD_LETTERS
from referralmesh.v1 import events_pb2
from services.notify.adapters.channels import ChannelRouter, OutboxChannel
from services.notify.adapters.client_messages import ClientMessages
from services.notify.adapters.directory import Names
from services.notify.adapters.dispatch import Dispatcher
from services.notify.adapters.kek_file import LocalKeyFile
from services.notify.adapters.keystore import KeyStore
from services.notify.adapters.store import NotifyStore
from services.notify.adapters.webhooks import WebhookEndpoint, WebhookSender
from services.notify.domain import webhook
from services.notify.replay import read_dead_letters, requeue_letters
from tests.conftest import settings_from
from tests.integration.notify.notify_kit import notify_env

SECRET = b"a-webhook-secret-of-some-length"
AGENCY = "shelter-utrecht"


class Receiver:
    """An agency's endpoint: answers with a script of behaviours, dedupes on the notification id."""

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.requests: list[dict] = []
        self.processed: dict[str, dict] = {}  # notification id -> body (the receiver's dedupe)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ok = webhook.verify(
            SECRET,
            request.headers.get(webhook.TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(webhook.SIGNATURE_HEADER, ""),
            now=time.time(),
        )
        notification_id = request.headers[webhook.ID_HEADER]
        self.requests.append({"id": notification_id, "signed": ok, "attempt": request.headers[webhook.ATTEMPT_HEADER]})
        if not ok:
            return web.Response(status=401)
        behaviour = self.script.pop(0) if self.script else "ok"
        if behaviour == "fail":
            return web.Response(status=503)
        self.processed.setdefault(notification_id, json.loads(body))  # processed (once per id)
        if behaviour == "slow":
            await asyncio.sleep(1.0)  # longer than the sender waits: it will try again
        return web.Response(status=204)


@pytest.fixture
async def receiver_url():
    receivers = {}

    async def start(script):
        receiver = Receiver(script)
        app = web.Application()
        app.router.add_post("/hook", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        receivers[runner] = receiver
        return receiver, f"http://127.0.0.1:{port}/hook"

    yield start
    for runner in receivers:
        await runner.cleanup()


def _notification(case_id: str) -> tuple[str, bytes]:
    notification_id = str(uuid.uuid4())
    payload = events_pb2.NotificationEvent(
        notification_id=notification_id,
        referral_id="ref-1",
        audience=events_pb2.AGENCY,
        recipient=AGENCY,
        template="referral_assigned",
        language="nl",
        responsible_region="GM0518",
    )
    envelope = envelopes.new_envelope(case_id=case_id, producer="test", event_id=notification_id, notification=payload)
    return notification_id, envelopes.encode(envelope)


def _dispatcher(tmp_path, url, dead_letters, *, max_attempts=4, timeout=5.0) -> Dispatcher:
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    names = Names({}, {}, "", "", "")
    return Dispatcher(
        store,
        webhooks={AGENCY: WebhookEndpoint(AGENCY, url, SECRET)},
        sender=WebhookSender(timeout=timeout),
        keys=KeyStore(tmp_path / "keys.db", LocalKeyFile.create(tmp_path / "kek.key")),
        channel=ChannelRouter(default=OutboxChannel(tmp_path / "outbox")),
        messages=ClientMessages(),
        names=names,
        dead_letters=dead_letters,
        notifications_topic="notifications",
        max_attempts=max_attempts,
        base_delay=0.05,
        max_delay=0.2,
    )


def _record(dispatcher: Dispatcher, case_id="case-1") -> str:
    notification_id, raw = _notification(case_id)
    dispatcher.store.record_notification(
        notification_id=notification_id,
        case_id=case_id,
        audience="AGENCY",
        recipient=AGENCY,
        template="referral_assigned",
        language="nl",
        channel=dispatcher.channel_for("AGENCY", AGENCY),
        envelope=raw,
    )
    return notification_id


async def _drain(dispatcher: Dispatcher, notification_id: str, within_seconds: float = 10.0) -> str:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        await dispatcher.run_due()
        status = _status(dispatcher, notification_id)
        if status != "pending":
            return status
        await asyncio.sleep(0.02)
    return _status(dispatcher, notification_id)


def _status(dispatcher: Dispatcher, notification_id: str) -> str:
    delivery = dispatcher.store.delivery(notification_id)
    assert delivery is not None
    return delivery.status


async def test_a_failing_receiver_gets_signed_retries_with_the_same_id_until_it_accepts(tmp_path, receiver_url):
    receiver, url = await receiver_url(["fail", "fail", "ok"])
    letters = []
    dispatcher = _dispatcher(tmp_path, url, lambda key, letter: letters.append(letter) or asyncio.sleep(0))
    notification_id = _record(dispatcher)
    try:
        assert await _drain(dispatcher, notification_id) == "delivered"
    finally:
        await dispatcher.sender.close()
    assert [r["id"] for r in receiver.requests] == [notification_id] * 3
    assert [r["attempt"] for r in receiver.requests] == ["1", "2", "3"]
    assert all(r["signed"] for r in receiver.requests)
    body = receiver.processed[notification_id]
    assert body["notification_id"] == notification_id and body["case_id"] == "case-1"
    assert [a["result"] for a in dispatcher.store.attempts(notification_id)] == ["http:503", "http:503", "http:204"]
    assert letters == []


async def test_a_slow_receiver_sees_a_duplicate_and_deduplicates_it_by_id(tmp_path, receiver_url):
    receiver, url = await receiver_url(["slow", "ok"])
    dispatcher = _dispatcher(tmp_path, url, lambda key, letter: asyncio.sleep(0), timeout=0.3)
    notification_id = _record(dispatcher)
    try:
        assert await _drain(dispatcher, notification_id) == "delivered"
    finally:
        await dispatcher.sender.close()
    assert [r["id"] for r in receiver.requests] == [notification_id, notification_id]  # delivered twice ...
    assert list(receiver.processed) == [notification_id]  # ... processed once
    assert [a["result"] for a in dispatcher.store.attempts(notification_id)] == ["timeout", "http:204"]


async def test_after_the_last_try_the_delivery_is_dead_lettered_on_kafka_and_replay_delivers_it(
    kafka_bootstrap, tmp_path, receiver_url
):
    config = settings_from(notify_env(kafka_bootstrap, tmp_path))
    prepare_kafka(config, "notify-test", give_up_after=60)
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all")

    async def to_kafka(key, letter):
        producer.send(config.topic(DEAD_LETTERS.base_name), key=key, value=letter.SerializeToString())
        producer.flush()

    broken, broken_url = await receiver_url(["fail"] * 10)
    dispatcher = _dispatcher(tmp_path, broken_url, to_kafka, max_attempts=3)
    notification_id = _record(dispatcher)
    try:
        assert await _drain(dispatcher, notification_id) == "dead"
        assert len(broken.requests) == 3

        letters = read_dead_letters(config)
        assert [envelopes.decode(letter.value).notification.notification_id for letter in letters] == [notification_id]
        assert letters[0].consumer == "notify-webhook" and "after 3 attempts: http:503" in letters[0].reason

        # The agency fixed its endpoint: replay requeues, the next run delivers, with the same id.
        fixed, fixed_url = await receiver_url([])
        dispatcher.webhooks[AGENCY] = WebhookEndpoint(AGENCY, fixed_url, SECRET)
        report = requeue_letters(dispatcher.store, letters, dispatcher.channel_for)
        assert report.requeued == [notification_id]
        assert await _drain(dispatcher, notification_id) == "delivered"
        assert list(fixed.processed) == [notification_id]
        # Replaying again does not deliver again.
        again = requeue_letters(dispatcher.store, letters, dispatcher.channel_for)
        assert again.already_delivered == [notification_id] and again.requeued == []
        assert len(dispatcher.store.attempts(notification_id)) == 4
    finally:
        await dispatcher.sender.close()
        producer.close()


async def test_a_replay_into_an_empty_store_records_the_notification_from_the_letter(tmp_path, receiver_url):
    receiver, url = await receiver_url([])
    dispatcher = _dispatcher(tmp_path, url, lambda key, letter: asyncio.sleep(0))
    notification_id, raw = _notification("case-9")
    letter = events_pb2.DeadLetter(consumer="notify-webhook", value=raw, key=b"case-9", reason="x")
    report = requeue_letters(dispatcher.store, [letter], dispatcher.channel_for)
    try:
        assert report.requeued == [notification_id]
        assert await _drain(dispatcher, notification_id) == "delivered"
    finally:
        await dispatcher.sender.close()
    assert receiver.processed[notification_id]["case_id"] == "case-9"


async def test_an_endless_answer_is_read_only_up_to_the_bound():
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        try:
            for _chunk in range(100_000):  # ~6 GB if anyone read it all
                await response.write(b"x" * 65536)
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    app = web.Application()
    app.router.add_post("/hook", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sender = WebhookSender(timeout=5.0)
    try:
        endpoint = WebhookEndpoint("exit-the-hague", f"http://127.0.0.1:{port}/hook", b"s" * 32)
        delivered, outcome = await sender.post(endpoint, "n-1", {"id": "n-1"}, attempt=1)
    finally:
        await sender.close()
        await runner.cleanup()
    assert (delivered, outcome) == (True, "http:200")
