"""Delivers recorded notifications: agency webhooks and client messages.

At least once, with a stable id: every notification is a row in the store (recorded once by
id); a loop picks the due ones, tries them, records each attempt, and schedules the next try
with exponential backoff and jitter. After the last try the notification goes to the
dead-letter topic (consumer "notify-webhook" or "notify-client") and `mesh notify replay`
gives it a fresh set of tries.

Client messages also follow the send-time rules (domain/send_rules.py): a message that may not
go out yet (an SMS at night, a second message of a case within the hour) is postponed to the
first allowed moment without counting a try, and checked again then. A case's client messages
in one pass are tried one after the other, so the second sees the first as sent and is held
for the hour. What became of each (codes only) is kept in `client_outcomes.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import json_format

from meshkernel.envelope import decode
from meshkernel.metrics import meter
from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.channels import ChannelError, ChannelRejected
from services.notify.adapters.client_messages import ClientMessages
from services.notify.adapters.client_outcomes import ClientOutcomes
from services.notify.adapters.directory import Names
from services.notify.adapters.keystore import ContactUnavailable, KeyStore
from services.notify.adapters.store import Delivery, NotifyStore
from services.notify.adapters.webhooks import WebhookEndpoint, WebhookSender
from services.notify.domain.messages import MessageFacts
from services.notify.domain.send_rules import SendPolicy, earliest_send
from services.notify.domain.webhook import backoff_delay

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[bytes, events_pb2.DeadLetter], Awaitable[None]]
CONSUMER_BY_CHANNEL = {"webhook": "notify-webhook", "client": "notify-client"}


_DELIVERIES = meter("referralmesh.notify").create_counter(
    "referralmesh.notify.deliveries",
    unit="{delivery}",
    description="finished deliveries by channel and outcome (delivered, dead, skipped)",
)
_ATTEMPTS_FAILED = meter("referralmesh.notify").create_counter(
    "referralmesh.notify.failed_attempts",
    unit="{attempt}",
    description="failed delivery attempts (webhook failures among them), by channel",
)

_CLIENT_MESSAGES = meter("referralmesh.notify").create_counter(
    "referralmesh.notify.client_messages",
    unit="{message}",
    description="client message outcomes by channel (sms, email) and outcome (sent, held_quiet_hours, "
    "held_case_rate, failed, rejected, report_delivered, report_failed, ...)",
)


def count_client_message(channel: str, outcome: str) -> None:
    _CLIENT_MESSAGES.add(1, {"referralmesh.channel": channel, "referralmesh.outcome": outcome})


@dataclass
class _Held(Exception):  # not frozen: raising sets attributes on an exception
    until: float
    reason: str


def webhook_payload(envelope: events_pb2.EventEnvelope) -> dict:
    """What an agency receives: ids, codes and region codes; never a client's details."""
    body = json_format.MessageToDict(envelope.notification, preserving_proto_field_name=True)
    body["case_id"] = envelope.case_id
    body["occurred_at"] = envelope.occurred_at.ToJsonString()
    return body


class Dispatcher:
    def __init__(
        self,
        store: NotifyStore,
        *,
        webhooks: dict[str, WebhookEndpoint],
        sender: WebhookSender,
        keys: KeyStore,
        channel,
        messages: ClientMessages,
        names: Names,
        dead_letters: DeadLetterSink,
        notifications_topic: str,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        poll_interval: float = 0.5,
        lease_seconds: float | None = None,
        send_policy: SendPolicy | None = None,
        outcomes: ClientOutcomes | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.webhooks = webhooks
        self.sender = sender
        self.keys = keys
        self.channel = channel
        self.messages = messages
        self.names = names
        self.dead_letters = dead_letters
        self.notifications_topic = notifications_topic
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.poll_interval = poll_interval
        self.send_policy = send_policy or SendPolicy()
        self.outcomes = outcomes or ClientOutcomes(store.engine)
        self.clock = clock
        # How long a claimed delivery is this dispatcher's alone (other replicas skip it); longer
        # than any attempt can take, so it only matters when this replica dies mid-attempt.
        self.lease_seconds = (
            lease_seconds if lease_seconds is not None else max(60.0, 3 * getattr(sender, "timeout", 10.0))
        )
        self.wake = asyncio.Event()
        self._inflight: set[str] = set()

    def channel_for(self, audience: str, recipient: str) -> str:
        if audience == "AGENCY":
            return "webhook" if recipient in self.webhooks else "none"
        if audience == "CLIENT":
            return "client"
        return "none"  # coordinators see alerts on the dashboard and the gRPC stream

    async def run(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery loop failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.poll_interval)
            self.wake.clear()

    async def run_due(self) -> int:
        claimed = await self.store.aio.claim_due_deliveries(self.clock(), self.lease_seconds)
        due = [d for d in claimed if d.notification_id not in self._inflight]
        for delivery in due:
            self._inflight.add(delivery.notification_id)
        # A case's client messages one after the other (the send-time rules see each outcome);
        # everything else side by side.
        lanes: dict[str, list[Delivery]] = {}
        for delivery in due:
            lane = f"client:{delivery.case_id}" if delivery.channel == "client" else delivery.notification_id
            lanes.setdefault(lane, []).append(delivery)
        try:
            await asyncio.gather(*(self._attempt_in_turn(lane) for lane in lanes.values()))
        finally:
            for delivery in due:
                self._inflight.discard(delivery.notification_id)
        return len(due)

    async def _attempt_in_turn(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await self.attempt(delivery)

    async def attempt(self, delivery: Delivery) -> str:
        started = time.monotonic()
        envelope = decode(delivery.envelope, expect="notification")
        attempt = delivery.attempts + 1
        try:
            if delivery.channel == "webhook":
                endpoint = self.webhooks.get(delivery.recipient)
                if endpoint is None:
                    return await self._finish(delivery, "skipped", "no webhook configured", started)
                ok, result = await self.sender.post(
                    endpoint, delivery.notification_id, webhook_payload(envelope), attempt
                )
            elif delivery.channel == "client":
                ok, result = await self._client_message(delivery, envelope)
                if result == "contact_unavailable":
                    return await self._finish(delivery, "skipped", result, started)
            else:
                return await self._finish(delivery, "skipped", "no channel", started)
        except _Held as held:
            await self.store.aio.postpone(delivery.notification_id, held.until, held.reason)
            log.info("client message held", extra={"notification_id": delivery.notification_id, "result": held.reason})
            return "held"
        except Exception as error:  # a bug in one delivery must not stop the others
            ok, result = False, f"error:{type(error).__name__}"
        if ok:
            return await self._finish(delivery, "delivered", result, started)
        _ATTEMPTS_FAILED.add(1, {"referralmesh.channel": delivery.channel})
        if attempt >= self.max_attempts or result.startswith("rejected:"):
            await self._finish(delivery, "dead", result, started)
            await self._dead_letter(delivery, result, attempt)
            return "dead"
        delay = backoff_delay(attempt, self.base_delay, self.max_delay)
        await self.store.aio.record_attempt(
            delivery.notification_id,
            result=result,
            status="pending",
            duration_ms=int((time.monotonic() - started) * 1000),
            next_attempt_at=self.clock() + delay,
        )
        log.info(
            "delivery failed; will try again",
            extra={
                "notification_id": delivery.notification_id,
                "channel": delivery.channel,
                "attempt": attempt,
                "result": result,
                "retry_in_s": round(delay, 2),
            },
        )
        return "retry"

    async def _finish(self, delivery: Delivery, status: str, result: str, started: float) -> str:
        _DELIVERIES.add(1, {"referralmesh.channel": delivery.channel, "referralmesh.outcome": status})
        await self.store.aio.record_attempt(
            delivery.notification_id, result=result, status=status, duration_ms=int((time.monotonic() - started) * 1000)
        )
        log.info(
            "delivery finished",
            extra={
                "notification_id": delivery.notification_id,
                "case_id": delivery.case_id,
                "channel": delivery.channel,
                "status": status,
                "result": result,
            },
        )
        return status

    async def _dead_letter(self, delivery: Delivery, result: str, attempts: int) -> None:
        recipient = delivery.recipient if delivery.channel == "webhook" else "client"
        letter = events_pb2.DeadLetter(
            source_topic=self.notifications_topic,
            partition=-1,
            offset=-1,
            reason=f"{delivery.channel} delivery to {recipient} failed after {attempts} attempts: {result}",
            consumer=CONSUMER_BY_CHANNEL.get(delivery.channel, "notify"),
            key=delivery.case_id.encode(),
            value=delivery.envelope,
        )
        letter.failed_at.FromDatetime(datetime.now(UTC))
        log.warning(
            "delivery dead-lettered",
            extra={"notification_id": delivery.notification_id, "channel": delivery.channel, "attempts": attempts},
        )
        await self.dead_letters(delivery.case_id.encode(), letter)

    async def _client_message(self, delivery: Delivery, envelope: events_pb2.EventEnvelope) -> tuple[bool, str]:
        case = await self.store.aio.case(delivery.case_id)
        if case is None or not case.contact_ciphertext:
            return False, "contact_unavailable"
        try:
            contact = await self.keys.aio.open(
                case.case_id,
                common_pb2.SealedContact(key_id=case.contact_key_id or "", ciphertext=case.contact_ciphertext),
            )
        except ContactUnavailable:
            return False, "contact_unavailable"
        notification = envelope.notification
        handover = ""
        if case.last_assignment:
            handover = decode(case.last_assignment, expect="assignment").assignment.handover_to
        facts = MessageFacts(
            organisation=self.names.client_organisation(case.receiver, notification.responsible_region),
            region=self.names.region(notification.responsible_region),
            handover_region=self.names.region(handover) if handover else "",
            help_name=self.names.help_name,
            help_phone=self.names.help_phone,
            help_url=self.names.help_url,
        )
        text = self.messages.render(delivery.template, delivery.language, facts)
        await self._apply_send_rules(delivery, contact.channel)
        try:
            result = await self.channel.send(
                contact,
                text,
                notification_id=delivery.notification_id,
                language=delivery.language,
                template=delivery.template,
            )
        except ChannelRejected as error:
            await self._note(delivery, contact.channel, "rejected")
            return False, f"rejected:{error}"
        except ChannelError as error:
            await self._note(delivery, contact.channel, "failed")
            return False, f"channel:{error}"
        await self._note(delivery, contact.channel, "sent")
        return True, result

    async def _apply_send_rules(self, delivery: Delivery, channel: str) -> None:
        """Raise _Held when the rules hold the message back; the message is never dropped."""
        now = self.clock()
        last_sent = await self.store.aio.run(self.outcomes.last_sent_at, delivery.case_id)
        decision = earliest_send(
            self.send_policy,
            channel=channel,
            template=delivery.template,
            now=datetime.fromtimestamp(now, UTC),
            last_sent=datetime.fromtimestamp(last_sent, UTC) if last_sent is not None else None,
        )
        if decision.now:
            return
        state = f"held_{decision.hold.value}"
        await self._note(delivery, channel, state)
        raise _Held(until=decision.at.timestamp(), reason=state)

    async def _note(self, delivery: Delivery, channel: str, state: str) -> None:
        await self.store.aio.run(
            self.outcomes.note, delivery.notification_id, delivery.case_id, channel, state, self.clock()
        )
        count_client_message(channel, state)
