"""The region service's Faust agents: referral events in, assignment events out.

Current responsibility per case lives in a Faust table backed by a changelog topic, so a
restarted worker continues where the previous one stopped.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import faust

from meshkernel import envelope as envelopes
from meshkernel import topics as declared
from meshkernel import tracing
from meshkernel.config import MeshSettings
from meshkernel.streams import DeadLetters, decoded_events, make_app, topic
from referralmesh.v1 import events_pb2
from services.region.adapters.facts_mapping import assignment_from_decision, request_document
from services.region.domain.errors import InvalidInput

log = logging.getLogger(__name__)
SERVICE = "region"

# Referral events after which responsibility must be (re)decided.
DECIDING_EVENTS = frozenset({"ReferralRequested"})

Decide = Callable[[dict], dict]


def build_app(config: MeshSettings, decide: Decide, known_services: frozenset[str]) -> faust.App:
    app = make_app(SERVICE, config, web_port=config.region_web_port)
    referral_events = topic(app, config, declared.REFERRAL_EVENTS)
    assignments = topic(app, config, declared.ASSIGNMENTS)
    dead_letters = DeadLetters(app, config, consumer=SERVICE)
    # case id -> {"region": code, "referral_ids": [...], "decided_by": event id}
    responsibility = app.Table("responsibility", default=dict, partitions=config.topic_partitions)
    span_tracer = tracing.tracer(__name__)

    @app.agent(referral_events)
    async def assign_responsibility(stream):
        async for event, envelope in decoded_events(stream, dead_letters, expect="referral"):
            referral = envelope.referral
            if referral.event_type not in DECIDING_EVENTS:
                continue
            current = dict(responsibility[envelope.case_id])
            if envelope.event_id == current.get("decided_by"):
                continue  # a redelivered event: its assignment was sent already
            parent = tracing.context_from(envelope.trace.traceparent, envelope.trace.tracestate)
            with span_tracer.start_as_current_span(
                f"process {referral_events.get_topic_name()}", context=parent, kind=tracing.CONSUMER,
                attributes={"referralmesh.case_id": envelope.case_id, "messaging.system": "kafka"},
            ):
                service = next((d for d in referral.need_domains if d.lower() in known_services),
                               (referral.need_domains or ["shelter"])[0]).lower()
                document = request_document(
                    asked_in=referral.asked_in,
                    service=service,
                    decision_date=envelope.occurred_at.ToDatetime().date().isoformat(),
                    current_region=current.get("region"),
                    facts=referral.facts,
                )
                try:
                    decision = decide(document)
                except InvalidInput as problem:
                    await dead_letters.send(event, f"resolver refused the facts: {problem}")
                    continue
                assignment = assignment_from_decision(
                    decision,
                    referral_id=referral.referral_id,
                    previous_region=current.get("region", ""),
                    service=service,
                    sender=referral.sender,
                    receiver=referral.receiver,
                    languages=list(referral.languages),
                    caused_by_event_id=envelope.event_id,
                )
                outgoing = envelopes.new_envelope(
                    case_id=envelope.case_id, producer=SERVICE,
                    event_id=envelopes.derived_id("assignment", envelope.event_id),
                    assignment=assignment,
                )
                await assignments.send(
                    key=envelope.case_id.encode(), value=envelopes.encode(outgoing),
                    headers=envelopes.kafka_headers(outgoing),
                )
                responsibility[envelope.case_id] = {
                    "region": assignment.responsible_region,
                    "referral_ids": sorted(set(current.get("referral_ids", [])) | {referral.referral_id}),
                    "decided_by": envelope.event_id,
                }
                log.info("assignment emitted", extra={
                    "case_id": envelope.case_id, "region": assignment.responsible_region,
                    "rule": assignment.rule, "handover_to": assignment.handover_to,
                })

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "service": SERVICE})

    return app
