"""What the notify worker's agents do with a batch of input events: one store transaction.

The agents take the events of their topic in batches (Faust `take_events`); for each batch one
blocking call here, in the store's thread pool, records everything the events change (the case
view's facts, the case record, alerts and their access-log rows) and every notification they
cause, in one transaction, and returns the notification events to send, in input order (so one
case's notifications keep the order of its events).

Once by id, nothing lost: a notification is recorded (by its id, derived from its cause) in the
same transaction as the facts, and the bytes returned for it are always the recorded ones (for
an id recorded before, by a redelivered input or another replica, the earlier bytes). The input
offsets are committed only after the batch is sent and the producer flushed; a crash in between
reads the inputs again, and their notifications go out again under the same ids and content.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from meshkernel import envelope as envelopes
from referralmesh.v1 import events_pb2
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.store import NewNotification, NotifyStore
from services.notify.application import alert_from_escalation
from services.notify.domain.alerts import Alert
from services.notify.domain.routing import Assignment, Escalation, Notification, route, route_client, route_escalation

log = logging.getLogger(__name__)
SERVICE = "notify"

ChannelFor = Callable[[str, str], str]  # (audience, recipient) -> webhook, client or none


def assignment_from(envelope: events_pb2.EventEnvelope, has_contact: bool = False) -> Assignment:
    payload = envelope.assignment
    return Assignment(
        event_id=envelope.event_id,
        case_id=envelope.case_id,
        referral_id=payload.referral_id,
        responsible_region=payload.responsible_region,
        previous_region=payload.previous_region,
        handover_to=payload.handover_to,
        rule=payload.rule,
        bound_nowhere=payload.bound_nowhere,
        sender=payload.sender,
        receiver=payload.receiver,
        languages=tuple(payload.languages),
        has_contact=has_contact,
    )


def notification_event(
    notification: Notification, *, case_id: str, referral_id: str, caused_by: str, responsible_region: str
) -> events_pb2.EventEnvelope:
    """The NotificationEvent of one notification, under the notification's id (derived from its cause)."""
    payload = events_pb2.NotificationEvent(
        notification_id=notification.notification_id,
        referral_id=referral_id,
        audience=events_pb2.Audience.Value(notification.audience.value),
        recipient=notification.recipient,
        template=notification.template,
        language=notification.language,
        caused_by_event_id=caused_by,
        responsible_region=responsible_region,
    )
    return envelopes.new_envelope(
        case_id=case_id, producer=SERVICE, event_id=notification.notification_id, notification=payload
    )


@dataclass(frozen=True)
class Outgoing:
    """One notification event to send: key, bytes and headers."""

    case_id: str
    notification_id: str
    raw: bytes
    headers: list[tuple[str, bytes]]
    audience: str
    template: str


@dataclass
class Handled:
    """The outcome of one batch."""

    outgoing: list[Outgoing] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)  # alerts raised by this batch (not redeliveries)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason): dead letters


@dataclass(frozen=True)
class _Planned:
    notification: Notification
    case_id: str
    event: events_pb2.EventEnvelope


class Intake:
    """`span(topic, envelope)` opens the consumer span of one input event (its parent is the
    producer's context carried in the event); the notifications it causes are made inside it,
    so they carry it on to their receivers."""

    def __init__(
        self,
        store: NotifyStore,
        facts: CaseFacts,
        channel_for: ChannelFor,
        span: Callable[[str, events_pb2.EventEnvelope], AbstractContextManager[Any]] | None = None,
    ):
        self.store = store
        self.facts = facts
        self.channel_for = channel_for
        self.span = span or (lambda _topic, _envelope: nullcontext())

    # --- the three input topics (blocking: call through store.aio.run) -------------------
    # Each reads the batch's cases first: a batch of one topic does not change what it reads
    # (an assignment never changes the contact, a referral event never the last assignment),
    # and the intake lock keeps the other topics' batches out until this one commits.
    def assignments(self, batch: list[events_pb2.EventEnvelope], topic: str = "") -> Handled:
        with self.store.intake() as connection:
            known = self.store.cases_in(connection, {envelope.case_id for envelope in batch})
            self.facts.record_assignments_in(connection, batch)
            self.store.update_cases_in(
                connection,
                [
                    {
                        "case_id": envelope.case_id,
                        "referral_id": envelope.assignment.referral_id,
                        "responsible_region": envelope.assignment.responsible_region,
                        "responsible_rule": envelope.assignment.rule,
                        "sender": envelope.assignment.sender,
                        "receiver": envelope.assignment.receiver,
                        "languages": tuple(envelope.assignment.languages),
                        "last_assignment": envelopes.encode(envelope),
                    }
                    for envelope in batch
                ],
            )
            planned: list[_Planned] = []
            for envelope in batch:
                with self.span(topic, envelope):
                    payload = envelope.assignment
                    case = known.get(envelope.case_id)
                    has_contact = bool(case and case.contact_ciphertext)
                    planned.extend(
                        self._plan(
                            notification,
                            case_id=envelope.case_id,
                            referral_id=payload.referral_id,
                            caused_by=envelope.event_id,
                            responsible_region=payload.responsible_region,
                        )
                        for notification in route(assignment_from(envelope, has_contact=has_contact))
                    )
            return Handled(outgoing=self._record(connection, planned))

    def referrals(self, batch: list[events_pb2.EventEnvelope], topic: str = "") -> Handled:
        with self.store.intake() as connection:
            self.facts.record_referrals_in(connection, batch)
            sealed = [envelope for envelope in batch if envelope.referral.contact.ciphertext]
            if not sealed:
                return Handled()
            known = self.store.cases_in(connection, {envelope.case_id for envelope in sealed})
            self.store.update_cases_in(
                connection,
                [
                    {
                        "case_id": envelope.case_id,
                        "referral_id": envelope.referral.referral_id,
                        "contact_key_id": envelope.referral.contact.key_id,
                        "contact_ciphertext": envelope.referral.contact.ciphertext,
                    }
                    for envelope in sealed
                ],
            )
            planned: list[_Planned] = []
            for envelope in sealed:
                with self.span(topic, envelope):
                    case = known.get(envelope.case_id)
                    if case is None or not case.last_assignment:
                        continue  # no assignment yet: the client hears when it comes
                    last = envelopes.decode(case.last_assignment, expect="assignment")
                    notification = route_client(assignment_from(last, has_contact=True))
                    if notification is not None:
                        planned.append(
                            self._plan(
                                notification,
                                case_id=envelope.case_id,
                                referral_id=envelope.referral.referral_id,
                                caused_by=last.event_id,
                                responsible_region=last.assignment.responsible_region,
                            )
                        )
            return Handled(outgoing=self._record(connection, planned))

    def escalations(self, batch: list[events_pb2.EventEnvelope], topic: str = "") -> Handled:
        handled = Handled()
        with self.store.intake() as connection:
            known = self.store.cases_in(connection, {envelope.case_id for envelope in batch})
            planned: list[_Planned] = []
            for index, envelope in enumerate(batch):
                with self.span(topic, envelope):
                    case = known.get(envelope.case_id)
                    try:
                        alert = alert_from_escalation(envelope, case.responsible_rule if case else "")
                        if not alert.region:
                            raise ValueError("escalation.region: must name the responsible region")
                    except ValueError as problem:  # goes to the dead letters; the batch goes on
                        handled.refused.append((index, str(problem)))
                        continue
                    if self.store.raise_alert_in(connection, alert, envelope.escalation.SerializeToString()):
                        handled.alerts.append(alert)
                    escalation = envelope.escalation
                    routed = route_escalation(
                        Escalation(
                            escalation_id=escalation.escalation_id,
                            case_id=envelope.case_id,
                            referral_id=escalation.referral_id,
                            region=escalation.region,
                            level=events_pb2.EscalationLevel.Name(escalation.level),
                            # The agency the deadline was about, as the region saw it: the case's
                            # assignment may not have reached this replica yet (another topic).
                            receiver=escalation.agency or (case.receiver if case else ""),
                        )
                    )
                    planned.extend(
                        self._plan(
                            notification,
                            case_id=envelope.case_id,
                            referral_id=escalation.referral_id,
                            caused_by=envelope.event_id,
                            responsible_region=escalation.region,
                        )
                        for notification in routed
                    )
            handled.outgoing = self._record(connection, planned)
        return handled

    # --- shared ---------------------------------------------------------------------------
    @staticmethod
    def _plan(
        notification: Notification, *, case_id: str, referral_id: str, caused_by: str, responsible_region: str
    ) -> _Planned:
        event = notification_event(
            notification,
            case_id=case_id,
            referral_id=referral_id,
            caused_by=caused_by,
            responsible_region=responsible_region,
        )
        return _Planned(notification, case_id, event)

    def _record(self, connection, planned: list[_Planned]) -> list[Outgoing]:
        if not planned:
            return []
        rows = [
            NewNotification(
                notification_id=item.notification.notification_id,
                case_id=item.case_id,
                audience=item.notification.audience.value,
                recipient=item.notification.recipient,
                template=item.notification.template,
                language=item.notification.language,
                channel=self.channel_for(item.notification.audience.value, item.notification.recipient),
                envelope=envelopes.encode(item.event),
            )
            for item in planned
        ]
        to_send = self.store.record_notifications_in(connection, rows)
        outgoing = []
        for item, row in zip(planned, rows, strict=True):
            raw = to_send.pop(row.notification_id, None)
            if raw is None:
                continue  # the same notification twice in one batch: sent once
            event = item.event if raw == row.envelope else envelopes.decode(raw, expect="notification")
            outgoing.append(
                Outgoing(
                    case_id=item.case_id,
                    notification_id=row.notification_id,
                    raw=raw,
                    headers=envelopes.kafka_headers(event),
                    audience=row.audience,
                    template=row.template,
                )
            )
        return outgoing
