"""The notify service's Faust agents: assignments in, notification events out."""
from __future__ import annotations

import logging
from collections import deque

import faust

from meshkernel import envelope as envelopes
from meshkernel import topics as declared
from meshkernel import tracing
from meshkernel.config import MeshSettings
from meshkernel.streams import DeadLetters, decoded_events, make_app, topic
from referralmesh.v1 import events_pb2
from services.notify.domain.routing import Assignment, route

log = logging.getLogger(__name__)
SERVICE = "notify"
# Enough to recognise a redelivered batch after a rebalance; old ids age out.
REMEMBERED_PER_CASE = 64


def _assignment_from(envelope: events_pb2.EventEnvelope) -> Assignment:
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
    )


def build_app(config: MeshSettings) -> faust.App:
    app = make_app(SERVICE, config, web_port=config.notify_web_port)
    assignments = topic(app, config, declared.ASSIGNMENTS)
    notifications = topic(app, config, declared.NOTIFICATIONS)
    dead_letters = DeadLetters(app, config, consumer=SERVICE)
    # case id -> ids of notifications already emitted (dedupe across redelivery and restarts)
    emitted = app.Table("notifications-emitted", default=list, partitions=config.topic_partitions)
    recent: deque[dict] = deque(maxlen=200)
    span_tracer = tracing.tracer(__name__)

    @app.agent(assignments)
    async def notify_on_assignment(stream):
        async for _event, envelope in decoded_events(stream, dead_letters, expect="assignment"):
            assignment = _assignment_from(envelope)
            parent = tracing.context_from(envelope.trace.traceparent, envelope.trace.tracestate)
            with span_tracer.start_as_current_span(
                f"process {assignments.get_topic_name()}", context=parent, kind=tracing.CONSUMER,
                attributes={"referralmesh.case_id": envelope.case_id, "messaging.system": "kafka"},
            ):
                already = list(emitted[envelope.case_id])
                for notification in route(assignment):
                    if notification.notification_id in already:
                        continue
                    payload = events_pb2.NotificationEvent(
                        notification_id=notification.notification_id,
                        referral_id=assignment.referral_id,
                        audience=events_pb2.Audience.Value(notification.audience.value),
                        recipient=notification.recipient,
                        template=notification.template,
                        language=notification.language,
                        caused_by_event_id=envelope.event_id,
                        responsible_region=assignment.responsible_region,
                    )
                    outgoing = envelopes.new_envelope(
                        case_id=envelope.case_id, producer=SERVICE,
                        event_id=notification.notification_id, notification=payload,
                    )
                    await notifications.send(
                        key=envelope.case_id.encode(), value=envelopes.encode(outgoing),
                        headers=envelopes.kafka_headers(outgoing),
                    )
                    already.append(notification.notification_id)
                    recent.appendleft({
                        "notification_id": notification.notification_id,
                        "case_id": envelope.case_id,
                        "audience": notification.audience.value,
                        "recipient": notification.recipient,
                        "template": notification.template,
                        "responsible_region": assignment.responsible_region,
                    })
                    log.info("notification emitted", extra={
                        "case_id": envelope.case_id, "notification_id": notification.notification_id,
                        "audience": notification.audience.value, "template": notification.template,
                    })
                emitted[envelope.case_id] = already[-REMEMBERED_PER_CASE:]

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "service": SERVICE})

    @app.page("/notifications")
    async def recent_notifications(web, request):
        return web.json({"notifications": list(recent)})

    return app
