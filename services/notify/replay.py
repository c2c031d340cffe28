"""`mesh notify replay`: give dead-lettered deliveries a fresh set of tries.

Reads the dead-letter topic from the start, picks the letters of the notify deliveries
(consumer notify-webhook / notify-client), and requeues each notification in the notify store
(re-recording it from the letter if the store does not know it). The running notify service
then delivers them with its usual retries; with --now this command tries each one once itself.
Delivered notifications are never sent again; receivers deduplicate on the id anyway.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from kafka import KafkaConsumer

from meshkernel.config import MeshSettings
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.kafka_security import kafka_python_options
from meshkernel.topics import DEAD_LETTERS
from referralmesh.v1 import events_pb2
from services.notify.adapters.dispatch import CONSUMER_BY_CHANNEL
from services.notify.adapters.store import NotifyStore

CONSUMERS = set(CONSUMER_BY_CHANNEL.values())


@dataclass
class ReplayReport:
    letters: int = 0
    requeued: list[str] = field(default_factory=list)
    already_delivered: list[str] = field(default_factory=list)
    delivered_now: list[str] = field(default_factory=list)
    unreadable: int = 0


def read_dead_letters(config: MeshSettings, timeout_ms: int = 3000) -> list[events_pb2.DeadLetter]:
    consumer = KafkaConsumer(
        config.topic(DEAD_LETTERS.base_name),
        **kafka_python_options(
            config,
            group_id=f"mesh-notify-replay-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=timeout_ms,
        ),
    )
    try:
        letters = []
        for record in consumer:
            try:
                letter = events_pb2.DeadLetter.FromString(record.value)
            except Exception:
                continue
            if letter.consumer in CONSUMERS:
                letters.append(letter)
        return letters
    finally:
        consumer.close()


def requeue_letters(store: NotifyStore, letters, channel_for, only: set[str] | None = None) -> ReplayReport:
    report = ReplayReport()
    for letter in letters:
        try:
            envelope = decode(letter.value, expect="notification")
        except MalformedEvent:
            report.unreadable += 1
            continue
        notification_id = envelope.notification.notification_id
        if only and notification_id not in only:
            continue
        report.letters += 1
        known = store.delivery(notification_id)
        if known is None:
            notification = envelope.notification
            audience = events_pb2.Audience.Name(notification.audience)
            store.record_notification(
                notification_id=notification_id,
                case_id=envelope.case_id,
                audience=audience,
                recipient=notification.recipient,
                template=notification.template,
                language=notification.language,
                channel=channel_for(audience, notification.recipient),
                envelope=letter.value,
            )
            report.requeued.append(notification_id)
        elif known.status == "delivered":
            report.already_delivered.append(notification_id)
        elif store.requeue(notification_id):
            report.requeued.append(notification_id)
    return report


def run_replay(config: MeshSettings, *, now: bool = False, only: set[str] | None = None, out=print) -> int:
    from services.notify.adapters.channels import ChannelRouter, OutboxChannel
    from services.notify.adapters.client_messages import ClientMessages
    from services.notify.adapters.dispatch import Dispatcher
    from services.notify.adapters.streams import NotifyRuntime
    from services.notify.adapters.webhooks import WebhookSender, load_webhooks
    from services.notify.paths import NotifyPaths

    runtime = NotifyRuntime.create(config)
    dispatcher = Dispatcher(
        runtime.store,
        webhooks=load_webhooks(config.notify_webhooks_path),
        sender=WebhookSender(timeout=config.notify_webhook_timeout),
        keys=runtime.keys,
        channel=ChannelRouter(default=OutboxChannel(NotifyPaths.of(config).client_outbox)),
        messages=ClientMessages(),
        names=runtime.names,
        dead_letters=_no_dead_letters,
        notifications_topic=config.topic("notify.notifications.v1"),
        max_attempts=1,
    )
    report = requeue_letters(runtime.store, read_dead_letters(config), dispatcher.channel_for, only)
    if now:

        async def deliver():
            try:
                for notification_id in report.requeued:
                    delivery = runtime.store.delivery(notification_id)
                    if delivery and delivery.status == "pending" and await dispatcher.attempt(delivery) == "delivered":
                        report.delivered_now.append(notification_id)
            finally:
                await dispatcher.sender.close()

        asyncio.run(deliver())
    for notification_id in report.requeued:
        requeued = runtime.store.delivery(notification_id)
        assert requeued is not None  # requeued rows are never deleted
        runtime.store.log_access(
            actor="operator",
            action="REPLAY_NOTIFICATION",
            case_id=requeued.case_id,
            subject=notification_id,
            why="dead_letter_replay",
            channel="cli",
        )
    out(
        f"dead letters of notify deliveries: {report.letters}; requeued: {len(report.requeued)}; "
        f"already delivered: {len(report.already_delivered)}"
        + (f"; delivered now: {len(report.delivered_now)}" if now else "")
    )
    runtime.store.close()
    return 0


async def _no_dead_letters(key, letter) -> None:
    """A replay attempt that fails again stays in the store as dead; no second letter."""
