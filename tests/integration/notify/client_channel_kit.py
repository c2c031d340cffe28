"""Shared set-up for the client channel tests: a dispatcher over a fresh store and key store, a
case with a sealed contact, a recorded client notification, and the privacy markers."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from meshkernel import envelope as envelopes
from meshkernel.metrics import setup_metrics
from referralmesh.v1 import events_pb2
from services.notify.adapters.channels import ChannelRouter, OutboxChannel
from services.notify.adapters.client_messages import ClientMessages
from services.notify.adapters.directory import Names
from services.notify.adapters.dispatch import Dispatcher
from services.notify.adapters.kek_file import LocalKeyFile
from services.notify.adapters.keystore import KeyStore
from services.notify.adapters.store import NotifyStore
from services.notify.adapters.webhooks import WebhookSender
from services.notify.domain.contact import Contact
from services.notify.domain.send_rules import SendPolicy

# Personal data planted in the contact; none of it may show up in logs, metrics or events.
CLIENT_NAME = "Marisol Quintanilla"
EMAIL_ADDRESS = "marisol.quintanilla.x7@example.org"
PHONE_NUMBER = "+31 6 4719 2853"
MARKERS = (CLIENT_NAME, "Quintanilla", EMAIL_ADDRESS, "marisol.quintanilla", "47192853", "4719 2853", "+316")

NAMES = Names(
    agencies={"shelter-den-haag": "Huis aan de Haven"},
    regions={"GM0518": "Den Haag"},
    help_name="Meldpunt",
    help_phone="0800 0000",
    help_url="https://example.org/hulp",
)


def dispatcher(tmp_path: Path, router: ChannelRouter | None = None, **options) -> Dispatcher:
    setup_metrics("notify-test", 0)  # the meters record into the Prometheus registry
    store = NotifyStore.open(f"sqlite:///{tmp_path / 'notify.db'}")
    options.setdefault("send_policy", SendPolicy(quiet_start=SendPolicy().quiet_end, quiet_end=SendPolicy().quiet_end))
    return Dispatcher(
        store,
        webhooks={},
        sender=WebhookSender(),
        keys=KeyStore(tmp_path / "keys.db", LocalKeyFile.create(tmp_path / "kek.key")),
        channel=router or ChannelRouter(default=OutboxChannel(tmp_path / "outbox.jsonl")),
        messages=ClientMessages(),
        names=NAMES,
        dead_letters=_no_dead_letters,
        notifications_topic="notify.notifications.v1",
        max_attempts=options.pop("max_attempts", 3),
        base_delay=0.01,
        max_delay=0.05,
        **options,
    )


async def _no_dead_letters(key: bytes, letter) -> None:
    return None


def client_case(dispatcher: Dispatcher, contact: Contact, *, languages=("es",)) -> str:
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    sealed = dispatcher.keys.seal(case_id, contact)
    dispatcher.store.update_case(
        case_id,
        referral_id="ref-1",
        responsible_region="GM0518",
        receiver="shelter-den-haag",
        languages=tuple(languages),
        contact_key_id=sealed.key_id,
        contact_ciphertext=sealed.ciphertext,
    )
    return case_id


def record_client_notification(
    dispatcher: Dispatcher, case_id: str, *, template="client_responsible_region", language="es"
) -> str:
    notification_id = uuid.uuid4().hex
    payload = events_pb2.NotificationEvent(
        notification_id=notification_id,
        referral_id="ref-1",
        audience=events_pb2.CLIENT,
        recipient="client",
        template=template,
        language=language,
        responsible_region="GM0518",
    )
    envelope = envelopes.new_envelope(case_id=case_id, producer="test", event_id=notification_id, notification=payload)
    dispatcher.store.record_notification(
        notification_id=notification_id,
        case_id=case_id,
        audience="CLIENT",
        recipient="client",
        template=template,
        language=language,
        channel=dispatcher.channel_for("CLIENT", "client"),
        envelope=envelopes.encode(envelope),
    )
    return notification_id


async def drain(dispatcher: Dispatcher, notification_id: str, within_seconds: float = 120.0) -> str:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        await dispatcher.run_due()
        delivery = dispatcher.store.delivery(notification_id)
        assert delivery is not None
        if delivery.status != "pending":
            return delivery.status
        await asyncio.sleep(0.02)
    return "pending"


def metrics_text() -> str:
    return generate_latest(REGISTRY).decode()


def assert_no_personal_data(*texts: str) -> None:
    for text in texts:
        for marker in MARKERS:
            assert marker not in text, f"personal data {marker!r} leaked"
