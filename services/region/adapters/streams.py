"""The region service's Faust agent: referral events and coordinator overrides in, assignments out.

One agent reads both input topics (both keyed by case id, with the same partition count), so
the events of one case are handled one at a time. Per-case state lives in the `cases` table,
backed by a changelog topic, so a restarted worker continues where the previous one stopped.
The agent is thin: `assigning.Assigner` makes the decision, this module only moves bytes.
"""
from __future__ import annotations

import logging

import faust

from meshkernel import envelope as envelopes
from meshkernel import topics as declared
from meshkernel import tracing
from meshkernel.config import MeshSettings
from meshkernel.metrics import meter
from meshkernel.streams import DeadLetters, decoded_events, make_app, observe_consumer_lag, topic
from services.region.adapters.assigning import SERVICE, Assigner, Refused, already_seen
from services.region.decide import Resolver

log = logging.getLogger(__name__)
TABLE = "cases"
SESSION_TIMEOUT_SECONDS = 10.0


def build_app(config: MeshSettings, resolver: Resolver, agency_regions, *, grpc: bool = True) -> faust.App:
    app = make_app(SERVICE, config, web_port=config.region_web_port)
    # A worker that died without leaving the group (SIGKILL, lost node) holds its partitions
    # until the session times out; Faust's default of 60 s would stall every case that long.
    app.conf.broker_session_timeout = SESSION_TIMEOUT_SECONDS
    incoming = app.topic(
        config.topic(declared.REFERRAL_EVENTS.base_name), config.topic(declared.OVERRIDES.base_name),
        key_serializer="raw", value_serializer="raw", partitions=config.topic_partitions,
    )
    assignments = topic(app, config, declared.ASSIGNMENTS)
    dead_letters = DeadLetters(app, config, consumer=SERVICE)
    # case id -> record (see assigning.Assigner._record): responsibility state, history, seen ids.
    cases = app.Table(TABLE, default=dict, partitions=config.topic_partitions)
    assigner = Assigner(resolver, agency_regions)
    observe_consumer_lag(app)
    assignments_made = meter(__name__).create_counter(
        "referralmesh.assignments", unit="{assignment}",
        description="assignment decisions by rule (the bound_nowhere share is the fallback share)",
    )

    @app.agent(incoming)
    async def assign_responsibility(stream):
        async for event, envelope in decoded_events(stream, dead_letters, expect=None):
            kind = envelope.WhichOneof("payload")
            record = dict(cases[envelope.case_id])
            if already_seen(record, envelope.event_id):
                continue  # a redelivered event: its assignment was sent already
            with tracing.consuming(
                event.message.topic, envelope, consumer_group=app.conf.id,
                partition=event.message.partition,
                headers=envelopes.trace_carrier_from_headers(event.headers),
            ):
                try:
                    if kind == "referral":
                        outcome = assigner.on_referral(envelope, record)
                    elif kind == "override":
                        outcome = assigner.on_override(envelope, record)
                    else:
                        raise Refused(f"unexpected payload {kind!r}, expected 'referral' or 'override'")
                except Refused as problem:
                    await dead_letters.send(event, str(problem))
                    continue
                except Exception as problem:  # never crash the worker on one event
                    log.exception("region decision failed", extra={"case_id": envelope.case_id})
                    await dead_letters.send(event, f"internal error: {type(problem).__name__}")
                    continue
                if outcome.assignment is not None:
                    # Sent before the table is written: after a crash in between, the same event
                    # is redelivered, decided from the same state and sent with the same id.
                    sent = outcome.assignment
                    with tracing.publishing(assignments.get_topic_name(), case_id=sent.case_id,
                                            event_id=sent.event_id):
                        await assignments.send(
                            key=envelope.case_id.encode(), value=envelopes.encode(sent),
                            headers=envelopes.kafka_headers(sent, tracing.inject_current()),
                        )
                    decided = outcome.assignment.assignment
                    assignments_made.add(1, {"referralmesh.rule": decided.rule, "referralmesh.trigger": decided.trigger})
                    log.info("assignment emitted", extra={
                        "case_id": envelope.case_id, "region": decided.responsible_region,
                        "rule": decided.rule, "handover_to": decided.handover_to, "trigger": decided.trigger,
                    })
                cases[envelope.case_id] = outcome.record

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "service": SERVICE})

    if grpc:
        from services.region.adapters.grpc_api import attach_grpc_server

        attach_grpc_server(app, config, resolver, cases, incoming_topic=config.topic(declared.REFERRAL_EVENTS.base_name))
    return app
