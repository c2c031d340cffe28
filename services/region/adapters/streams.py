"""The region service's Faust agent: referral events and coordinator actions in, assignments and
escalations out.

One agent reads both input topics (both keyed by case id, with the same partition count), so
the events of one case are handled one at a time. Per-case state lives in the `cases` table,
backed by a changelog topic, so a restarted worker continues where the previous one stopped.
The agent is thin: `assigning.Assigner` makes the decision, this module only moves bytes.

The stall detector (`escalating.Escalator`) sees every referral event, the worker's own
assignment decisions and coordinators' alert actions; its per-case state lives in the
`escalation-state` table, and a timer task fires due deadlines onto the escalations topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust

from meshkernel import envelope as envelopes
from meshkernel import topics as declared
from meshkernel import tracing
from meshkernel.config import MeshSettings
from meshkernel.health import KafkaProbe, ServiceHealth, faust_health_pages, faust_worker_checks
from meshkernel.metrics import meter
from meshkernel.streams import DeadLetters, decoded_events, make_app, observe_consumer_lag, topic
from referralmesh.v1 import events_pb2
from services.region.adapters import tables
from services.region.adapters.assigning import (
    SERVICE,
    Assigner,
    Refused,
    already_seen,
    assignment_from_entry,
    sent_for,
)
from services.region.adapters.directory_follow import follow_directory
from services.region.adapters.escalating import Escalator
from services.region.adapters.retention_sweep import ClosedCaseSweep
from services.region.decide import Resolver
from services.region.domain.escalation import EscalationPolicy, load_escalation_policy
from services.region.domain.retention import ClosedCaseRetention

log = logging.getLogger(__name__)
API_NAME = "referralmesh.v1.RegionService"
TABLE = "cases"
ESCALATION_TABLE = "escalation-state"
SESSION_TIMEOUT_SECONDS = 10.0
# An event whose handling fails outside the decision is tried again (see _until_handled).
HANDLING_ATTEMPTS = 6
RETRY_FIRST_PAUSE_SECONDS = 0.5
RETRY_LONGEST_PAUSE_SECONDS = 8.0


def build_app(
    config: MeshSettings,
    resolver: Resolver,
    agency_regions,
    *,
    grpc: bool = True,
    escalation_policy: EscalationPolicy | None = None,
    clock: Callable[[], float] = time.time,
) -> faust.App:
    app = make_app(
        SERVICE,
        config,
        web_port=config.region_web_port,
        web_host=config.region_web_host,
        store=config.region_table_store,
        datadir=config.region_data_dir,
    )
    # A worker that died without leaving the group (SIGKILL, lost node) holds its partitions
    # until the session times out; Faust's default of 60 s would stall every case that long.
    app.conf.broker_session_timeout = SESSION_TIMEOUT_SECONDS
    incoming = app.topic(
        config.topic(declared.REFERRAL_EVENTS.base_name),
        config.topic(declared.OVERRIDES.base_name),
        key_serializer="raw",
        value_serializer="raw",
        partitions=config.topic_partitions,
    )
    assignments = topic(app, config, declared.ASSIGNMENTS)
    dead_letters = DeadLetters(app, config, consumer=SERVICE)
    # case id -> record (see assigning.Assigner._record): responsibility state, history, seen ids.
    cases = _table(app, config, TABLE)
    assigner = Assigner(resolver, agency_regions)
    app.directory_feed = follow_directory(app, config, assigner)  # type: ignore[attr-defined]
    escalator = _escalator(
        app,
        config,
        escalation_policy or load_escalation_policy(config.escalation_policy_path),
        clock,
        source_topic=config.topic(declared.REFERRAL_EVENTS.base_name),
    )
    app.escalator = escalator  # type: ignore[attr-defined]  # for tests and the gRPC server
    observe_consumer_lag(app)
    assignments_made = meter(__name__).create_counter(
        "referralmesh.assignments",
        unit="{assignment}",
        description="assignment decisions by rule (the bound_nowhere share is the fallback share)",
    )

    @app.agent(incoming)
    async def assign_responsibility(stream):
        async for event, envelope in decoded_events(stream, dead_letters, expect=None):
            await _until_handled(event, envelope)

    async def _until_handled(event, envelope) -> None:
        """Handle one event to the end before the next. A failure outside the decision (the
        table, the producer) is tried again after a pause: going on to the next event would let
        its acknowledgement commit this one too (faust commits over a single unacknowledged
        offset), and the event would be lost. After the last try it goes to the dead-letter
        topic, with the error's type, so it is never dropped silently."""
        pause = RETRY_FIRST_PAUSE_SECONDS
        for attempt in range(1, HANDLING_ATTEMPTS + 1):
            try:
                await _handle(event, envelope)
                return
            except Exception as problem:
                if app.should_stop:
                    raise  # unacknowledged: read again after the restart
                log.exception(
                    "handling an event failed",
                    extra={"case_id": envelope.case_id, "attempt": attempt, "of": HANDLING_ATTEMPTS},
                )
                if attempt == HANDLING_ATTEMPTS:
                    await dead_letters.send(event, f"internal error: {type(problem).__name__}")
                    return
                await asyncio.sleep(pause)
                pause = min(2 * pause, RETRY_LONGEST_PAUSE_SECONDS)

    async def _handle(event, envelope) -> None:
        kind = envelope.WhichOneof("payload")
        partition = event.message.partition
        if kind == "alert_action":
            await _alert_action(event, envelope)
            return
        if kind == "client_erased":
            await _forget_case(envelope.case_id, partition)
            return
        record = dict(cases[envelope.case_id])
        if already_seen(record, envelope.event_id):
            # A redelivered event: decided and recorded before, but the assignment may not have
            # reached the broker (the record can be durable first), so it goes out again as
            # sent, same id. The stall detector may not have stored it (crash between the two
            # table writes); feeding it again is harmless.
            for raw in sent_for(record, envelope.event_id):
                await _send_assignment(envelopes.decode(raw, expect="assignment"), raw)
            _feed_escalator(envelope, _replayed_assignment(envelope, record), partition)
            return
        with tracing.consuming(
            event.message.topic,
            envelope,
            consumer_group=app.conf.id,
            partition=partition,
            headers=envelopes.trace_carrier_from_headers(event.headers),
        ):
            try:
                if kind == "referral":
                    outcome = assigner.on_referral(envelope, record)
                elif kind == "override":
                    outcome = assigner.on_override(envelope, record)
                else:
                    raise Refused(f"unexpected payload {kind!r}, expected 'referral', 'override' or 'alert_action'")
            except Refused as problem:
                await dead_letters.send(event, str(problem))
                return
            except Exception as problem:  # never crash the worker on one event
                log.exception("region decision failed", extra={"case_id": envelope.case_id})
                await dead_letters.send(event, f"internal error: {type(problem).__name__}")
                return
            if outcome.assignment is not None:
                # Sent before the table is written: after a crash in between, the same event
                # is redelivered, decided from the same state and sent with the same id.
                await _send_assignment(outcome.assignment, envelopes.encode(outcome.assignment))
                decided = outcome.assignment.assignment
                assignments_made.add(1, {"referralmesh.rule": decided.rule, "referralmesh.trigger": decided.trigger})
                log.info(
                    "assignment emitted",
                    extra={
                        "case_id": envelope.case_id,
                        "region": decided.responsible_region,
                        "rule": decided.rule,
                        "handover_to": decided.handover_to,
                        "trigger": decided.trigger,
                    },
                )
            # The stall detector's state first: the `cases` write marks the event as handled.
            _feed_escalator(envelope, outcome.assignment, partition, tracing.inject_current().get("traceparent", ""))
            cases[envelope.case_id] = outcome.record

    async def _send_assignment(sent: events_pb2.EventEnvelope, raw: bytes) -> None:
        with tracing.publishing(assignments.get_topic_name(), case_id=sent.case_id, event_id=sent.event_id):
            await assignments.send(
                key=sent.case_id.encode(), value=raw, headers=envelopes.kafka_headers(sent, tracing.inject_current())
            )

    async def _forget_case(case_id: str, partition: int) -> None:
        """The client was erased: tombstones for the case in both tables, so that compaction
        removes it from the changelog topics too. Later events for the case id start afresh."""
        await tombstone(cases, case_id, partition)
        sent = escalator.forget(case_id, partition)
        if sent is not None:
            await sent
        log.info("case forgotten after erasure", extra={"case_id": case_id})

    def _feed_escalator(envelope, assignment, partition, traceparent=""):
        try:
            escalator.on_decided(envelope, assignment, partition, traceparent)
        except Exception:  # the assignment is out; a stall-detector bug must not stop the worker
            log.exception("stall detector failed on an event", extra={"case_id": envelope.case_id})

    def _replayed_assignment(envelope, record):
        """The assignment this worker emitted for an already handled event, as sent or else
        (older records) from the history."""
        for raw in sent_for(record, envelope.event_id):
            return envelopes.decode(raw, expect="assignment")
        for entry in reversed(record.get("history", [])):
            if entry.get("caused_by") == envelope.event_id:
                wrapped = events_pb2.EventEnvelope(event_id=entry["event_id"], case_id=envelope.case_id)
                wrapped.assignment.CopyFrom(assignment_from_entry(entry, record))
                return wrapped
        return None

    async def _alert_action(event, envelope):
        with tracing.consuming(
            event.message.topic,
            envelope,
            consumer_group=app.conf.id,
            partition=event.message.partition,
            headers=envelopes.trace_carrier_from_headers(event.headers),
        ):
            try:
                escalator.on_alert_action(
                    envelope, event.message.partition, tracing.inject_current().get("traceparent", "")
                )
            except Refused as problem:
                await dead_letters.send(event, str(problem))
            except Exception as problem:
                log.exception("alert action failed", extra={"case_id": envelope.case_id})
                await dead_letters.send(event, f"internal error: {type(problem).__name__}")

    @app.task
    async def escalation_timer():
        await escalator.run(lambda: app.should_stop)

    sweep = ClosedCaseSweep(
        ClosedCaseRetention.of_days(config.region_closed_case_retention_days, clock), escalator, cases
    )
    app.closed_case_sweep = sweep  # type: ignore[attr-defined]  # for tests

    @app.timer(interval=config.retention_sweep_seconds)
    async def closed_case_retention():
        try:
            await sweep.sweep()
        except Exception:  # a failed sweep is retried at the next interval
            log.exception("retention sweep of closed cases failed")

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok", "service": SERVICE})

    # Ready: Kafka answers, partitions assigned, no rebalance, both tables recovered (the stall
    # detector loaded them); /ready, /live and gRPC health (meshkernel/health.py).
    readiness = ServiceHealth(
        (API_NAME,),
        kafka=KafkaProbe(config),
        checks=faust_worker_checks(app, tables_recovered=lambda: escalator.ready),
    )
    app.readiness = readiness  # type: ignore[attr-defined]  # for tests and the gRPC server
    faust_health_pages(app, readiness)

    @app.task
    async def readiness_probe():
        await readiness.run(lambda: app.should_stop)

    if grpc:
        from services.region.adapters.grpc_api import attach_grpc_server

        attach_grpc_server(
            app,
            config,
            resolver,
            cases,
            incoming_topic=config.topic(declared.REFERRAL_EVENTS.base_name),
            readiness=readiness,
        )
    return app


# RocksDB per table partition, sized for a pod of 512 MiB with 12 of them open (6 partitions, 2
# tables): write buffers of 4 MiB (two at most) and an 8 MiB block cache each; faust's defaults
# (64 MiB buffers, a 2 GiB cache per database) are meant for a machine of its own.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 2**20,
    "max_write_buffer_number": 2,
    "target_file_size_base": 8 * 2**20,
    "block_cache_size": 8 * 2**20,
}


def _table(app: faust.App, config: MeshSettings, name: str):
    # A fresh dict per table: faust's RocksDB store pops keys off the options it is given.
    options = dict(ROCKSDB_OPTIONS) if config.region_table_store == "rocksdb" else None
    return app.Table(name, default=dict, partitions=config.topic_partitions, options=options)


class TableStore:
    """The `escalation-state` table as the escalator's store. Written with an explicit partition
    (the case's partition on the input topics), so the timer task, which runs outside any
    stream event, can write it too; returns the changelog send, awaitable for its ack."""

    def __init__(self, table):
        self.table = table

    def write(self, case_id: str, record: dict, partition: int):
        return tables.write(self.table, case_id, record, partition)

    def delete(self, case_id: str, partition: int):
        return tables.delete(self.table, case_id, partition)


async def tombstone(table, case_id: str, partition: int) -> None:
    """Delete `case_id` from a table and wait until its changelog has the tombstone."""
    await tables.delete(table, case_id, partition)


def _escalator(
    app: faust.App, config: MeshSettings, policy: EscalationPolicy, clock, *, source_topic: str
) -> Escalator:
    table = _table(app, config, ESCALATION_TABLE)
    escalations = topic(app, config, declared.ESCALATIONS)

    async def publish(case_id: str, value: bytes, headers: list) -> None:
        sent = await escalations.send(key=case_id.encode(), value=value, headers=headers)
        await sent  # the broker has it

    escalator = Escalator(
        policy,
        store=TableStore(table),
        publish=publish,
        clock=clock,
        topic_name=escalations.get_topic_name(),
        tick=config.escalation_tick_seconds,
    )

    @table.on_recover
    async def load_escalation_state() -> None:
        try:
            actives = app.assignor.assigned_actives()
        except Exception:
            actives = set()
        partitions = {tp.partition for tp in actives if tp.topic == source_topic}
        escalator.load(table.data.values(), partitions)  # decoded one at a time, not all held at once

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's signature types miss **kwargs
    async def drop_escalation_state(sender, revoked, **kwargs) -> None:
        escalator.drop({tp.partition for tp in revoked if tp.topic == source_topic})

    return escalator
