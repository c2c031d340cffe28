"""The stall detector in the region worker: proto <-> facts, durable per-case state, the timer.

`Escalator` drives the pure `EscalationEngine` (services/region/domain/escalation, see
ESCALATION.md). It has no Faust in it, so it can be tested with a fake clock, a dict for a
table and a list for a topic; streams.py wires it to the worker:

- inputs (called by the agent, one case at a time): `on_decided(envelope, assignment, partition)`
  feeds a referral event and the worker's own assignment decision, `on_alert_action(...)` a
  coordinator's ACKNOWLEDGED / TAKEN / RESOLVED (the alert stops climbing); each writes the case's
  record to the state store afterwards;
- time: `run()` sleeps until the next deadline (at most `tick` seconds, woken early when an input
  schedules something), fires what is due and publishes one `EscalationEvent` per escalation on
  the escalations topic, keyed by case id, with `event_id = escalation_id`;
- rebalance: `load(records, partitions)` after the table recovered, `drop(partitions)` on
  revocation;
- erasure: `forget(case_id, partition)` drops the case and deletes its record.

Firing is an outbox in the case's own record, so that a crash at any moment gives at most one
distinct escalation per id and never loses one:
1. fire (in memory), put the encoded envelope into the case's `outbox`, write the record and wait
   until the changelog has it;
2. send the envelope and wait for the broker's ack;
3. clear the outbox entry and write the record again.
A crash before 1 completes loses nothing (the deadline is still pending in the durable state and
fires after restart, marked late if it is). A crash after 1 re-sends the very same bytes from the
outbox after restart (same id, same `fired_at`, same content): receivers deduplicate on the id.

Tracing: the traceparent of the event that scheduled a deadline is kept with the deadline
(`traces` in the record); a fired escalation starts a new trace whose span LINKS to it
(`meshkernel.tracing.linked`). Follow-ups scheduled by a firing (climb, unresolved) keep the
firing span's traceparent, so a climb links to the alert it climbs from.

Record (the `escalation-state` table value, JSON; codes, ids and times only):
`{"format", "partition", "state": engine state (state_to_dict), "traces": {deadline key:
traceparent}, "outbox": {escalation id: {"envelope": base64, "headers": [[name, value]]}}}`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, Protocol, cast

from google.protobuf.timestamp_pb2 import Timestamp

from meshkernel import envelope as envelopes
from meshkernel import tracing
from meshkernel.metrics import meter
from referralmesh.v1 import common_pb2, events_pb2
from services.region.adapters.assigning import SERVICE, Refused
from services.region.domain.escalation import (
    AssignmentFacts,
    Changes,
    Deadline,
    Escalation,
    EscalationEngine,
    EscalationPolicy,
    ReferralFacts,
    escalation_id,
)
from services.region.domain.escalation.calendar import utc

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
ALERT_ACTIONS = frozenset({"ACKNOWLEDGED", "TAKEN", "RESOLVED"})
LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
GC_FREEZE_FROM = 10_000  # states loaded at once before the collector is told to leave them alone

# A referral event without to_status (older producers, tests): its status from the event type.
STATUS_OF_EVENT = {
    "ReferralRequested": "REQUESTED",
    "ReferralForwarded": "REQUESTED",
    "ReferralAcknowledged": "RECEIVED",
    "ReferralReceived": "RECEIVED",
    "ReferralAccepted": "ACCEPTED",
    "ReferralDeclined": "DECLINED",
    "ReferralStarted": "IN_PROGRESS",
    "ReferralCompleted": "COMPLETED",
    "ReferralCancelled": "CANCELLED",
    "ReferralContactLost": "CONTACT_LOST",
    "ReferralFailed": "FAILED",
}


class StateStore(Protocol):
    def write(self, case_id: str, record: dict, partition: int) -> Awaitable[Any] | None:
        """Store the record; return an awaitable that completes once it is durable (or None)."""

    def delete(self, case_id: str, partition: int) -> Awaitable[Any] | None:
        """Forget the record (a tombstone in a changelog), durable like `write`."""


Publisher = Callable[[str, bytes, list], Awaitable[Any]]  # (case id, value, headers) -> broker ack


# --------------------------------------------------------------------------- proto <-> facts


def seconds_of(timestamp: Timestamp) -> float:
    return timestamp.seconds + timestamp.nanos / 1e9


def timestamp_of(seconds: float) -> Timestamp:
    whole = int(seconds // 1)
    return Timestamp(seconds=whole, nanos=round((seconds - whole) * 1e9) % 1_000_000_000)


def _enum_name(enum, value: int, default: str = "") -> str:
    if not value:
        return default
    try:
        return enum.Name(value)
    except ValueError:
        return default


def referral_facts(envelope: events_pb2.EventEnvelope) -> ReferralFacts | None:
    """A ReferralEvent as the engine's facts; None if it names no status the engine knows."""
    r = envelope.referral
    status = _enum_name(common_pb2.ReferralStatus, r.to_status) or STATUS_OF_EVENT.get(r.event_type, "")
    if not status or not r.referral_id:
        return None
    addressee = r.addressee
    if not addressee and status == "REQUESTED":
        addressee = r.pending_receiver or r.receiver  # producers that predate `addressee`
    return ReferralFacts(
        case_id=envelope.case_id,
        referral_id=r.referral_id,
        event_type=r.event_type,
        to_status=status,
        version=r.version,
        occurred_at=seconds_of(envelope.occurred_at),
        urgency=_enum_name(common_pb2.Urgency, r.urgency, "NORMAL"),
        addressee=addressee,
        holder=r.holder,
        handover=r.handover,
        decline_reason=_enum_name(common_pb2.DeclineReason, r.decline_reason),
    )


def assignment_facts(assignment: events_pb2.EventEnvelope, cause: events_pb2.EventEnvelope) -> AssignmentFacts:
    """The worker's own decision as facts; timed by the causing event, so replays agree."""
    a = assignment.assignment
    return AssignmentFacts(
        case_id=assignment.case_id,
        referral_id=a.referral_id,
        responsible_region=a.responsible_region,
        occurred_at=seconds_of(cause.occurred_at),
        previous_region=a.previous_region,
        handover_to=a.handover_to,
        rule=a.rule,
        no_programme_accepts=a.no_programme_accepts,
        event_id=assignment.event_id,
    )


def escalation_event(e: Escalation) -> events_pb2.EscalationEvent:
    event = events_pb2.EscalationEvent(
        escalation_id=e.escalation_id,
        referral_id=e.referral_id,
        region=e.region,
        level=events_pb2.EscalationLevel.Value(e.level),
        rule=e.rule,
        late_seconds=e.late_seconds,
        late=e.late,
        cause=e.cause,
        agency=e.agency,
        regions_involved=list(e.regions_involved),
        climbed_from=(
            events_pb2.EscalationLevel.Value(e.climbed_from)
            if e.climbed_from
            else events_pb2.ESCALATION_LEVEL_UNSPECIFIED
        ),
    )
    event.deadline.CopyFrom(timestamp_of(e.deadline_ts))
    event.fired_at.CopyFrom(timestamp_of(e.fired_at_ts))
    for status, at in e.history_ts:
        item = event.history.add(status=common_pb2.ReferralStatus.Value(status) if status else 0)
        item.at.CopyFrom(timestamp_of(at))
    for at, kind, rule, value in e.decisions_ts:  # value: the region (assignment) or level (escalation)
        decision = event.decisions.add(kind=kind, rule=rule)
        decision.at.CopyFrom(timestamp_of(at))
        if kind == "escalation":
            decision.level = _enum_name_value(events_pb2.EscalationLevel, value)
        else:
            decision.region = value
    return event


def _enum_name_value(enum: Any, name: str) -> Any:
    try:
        return enum.Value(name)
    except ValueError:
        return 0


def escalation_headers(envelope: events_pb2.EventEnvelope, escalation: Escalation | None = None) -> list:
    """Envelope headers plus late/cause/agency, so a consumer can route without decoding."""
    headers = envelopes.kafka_headers(envelope)
    if escalation is not None:
        headers += [
            ("escalation-late", b"true" if escalation.late else b"false"),
            ("escalation-cause", escalation.cause.encode()),
        ]
        if escalation.climbed_from:
            headers.append(("escalation-climbed-from", escalation.climbed_from.encode()))
        if escalation.agency:
            headers.append(("escalation-agency", escalation.agency.encode()))
    return headers


def _escalation_attributes(e: Escalation) -> dict[str, str]:
    """Codes only; `cause` not_acknowledged with `climbed_from` is an alert that waited past its
    acknowledge deadline (deploy/prometheus/alerts.yaml, MeshEscalationNotAcknowledged)."""
    return {
        "referralmesh.level": e.level,
        "referralmesh.rule": e.rule,
        "referralmesh.cause": e.cause,
        "referralmesh.climbed_from": e.climbed_from or "",
    }


# --------------------------------------------------------------------------- the escalator


class Escalator:
    def __init__(
        self,
        policy: EscalationPolicy,
        *,
        store: StateStore,
        publish: Publisher,
        topic_name: str = "region.escalations.v1",
        clock: Callable[[], float] = time.time,
        tick: float = 0.1,
        batch: int = 500,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.store = store
        self.publish = publish
        self.topic_name = topic_name
        self.tick_seconds = tick
        self.batch = batch
        self.engine = EscalationEngine(policy, clock=clock)
        self.partitions: dict[str, int] = {}  # case id -> partition (owned cases only)
        self.traces: dict[str, dict[str, str]] = {}  # case id -> deadline key -> traceparent
        self.outbox: dict[str, dict[str, tuple[bytes, list]]] = {}  # case id -> escalation id -> (envelope, headers)
        self.ready = False  # the engine holds the state of every assigned partition
        self._wake: asyncio.Event | None = None
        m = meter(__name__)
        self._escalations = m.create_counter(
            "referralmesh.escalations", unit="{escalation}", description="escalations emitted, by level and rule"
        )
        self._lateness = m.create_histogram(
            "referralmesh.escalation.lateness",
            unit="s",
            description="seconds between a deadline and its escalation being sent",
            explicit_bucket_boundaries_advisory=LATENESS_BUCKETS,
        )
        m.create_observable_gauge(
            "referralmesh.escalation.open_deadlines",
            callbacks=[self._observe_open],
            unit="{deadline}",
            description="pending deadlines held by this worker",
        )

    def _observe_open(self, _options):
        from opentelemetry.metrics import Observation

        return [Observation(self.engine.pending_count)]

    # ------------------------------------------------------------------ inputs

    def on_decided(
        self,
        envelope: events_pb2.EventEnvelope,
        assignment: events_pb2.EventEnvelope | None,
        partition: int,
        traceparent: str = "",
    ) -> Awaitable[Any] | None:
        """A referral event (or override) and the assignment the worker decided for it, if any."""
        case_id = envelope.case_id
        touched = False
        if envelope.WhichOneof("payload") == "referral":
            facts = referral_facts(envelope)
            if facts is not None:
                self._noted(case_id, self.engine.on_referral_event(facts), traceparent)
                touched = True
        if assignment is not None:
            self._noted(case_id, self.engine.on_assignment(assignment_facts(assignment, envelope)), traceparent)
            touched = True
        if not touched:
            return None
        return self.save(case_id, partition)

    def on_alert_action(
        self, envelope: events_pb2.EventEnvelope, partition: int, traceparent: str = ""
    ) -> Awaitable[Any] | None:
        """ACKNOWLEDGED, TAKEN or RESOLVED: somebody acts on the alert, so it stops climbing;
        RESOLVED also cancels a national alert's pending *unresolved* (dispute) deadline."""
        action = envelope.alert_action
        if not action.escalation_id.strip():
            raise Refused("alert_action.escalation_id: must not be empty")
        if action.action not in ALERT_ACTIONS:
            raise Refused(f"alert_action.action: {action.action!r} is not one of {sorted(ALERT_ACTIONS)}")
        case_id = envelope.case_id
        if self.engine.state(case_id) is None:
            log.info(
                "alert action for a case without escalation state",
                extra={"case_id": case_id, "escalation_id": action.escalation_id},
            )
            return None
        if action.action == "RESOLVED":  # settled: no dispute record will follow
            changes = self.engine.on_alert_resolved(case_id, action.escalation_id)
        else:
            changes = self.engine.on_alert_acknowledged(case_id, action.escalation_id)
        self._noted(case_id, changes, traceparent)
        log.info(
            "alert acted on",
            extra={
                "case_id": case_id,
                "escalation_id": action.escalation_id,
                "action": action.action,
                "cancelled": [d.key for d in changes.cancelled],
            },
        )
        return self.save(case_id, partition)

    def _noted(self, case_id: str, changes: Changes, traceparent: str) -> None:
        if changes.scheduled:
            if traceparent:
                traces = self.traces.setdefault(case_id, {})
                for d in changes.scheduled:
                    traces[d.key] = traceparent
            if self._wake is not None:
                self._wake.set()

    # ------------------------------------------------------------------ durable state

    def record(self, case_id: str) -> dict | None:
        state = self.engine.dump(case_id)
        if state is None:
            return None
        pending = {d["key"] for d in state["pending"]}
        traces = {k: v for k, v in self.traces.get(case_id, {}).items() if k in pending}
        if traces:
            self.traces[case_id] = traces
        else:
            self.traces.pop(case_id, None)
        return {
            "format": RECORD_FORMAT,
            "partition": self.partitions[case_id],
            "state": state,
            "traces": traces,
            "outbox": {
                eid: {"envelope": base64.b64encode(data).decode(), "headers": [[k, v.decode()] for k, v in headers]}
                for eid, (data, headers) in self.outbox.get(case_id, {}).items()
            },
        }

    def save(self, case_id: str, partition: int | None = None) -> Awaitable[Any] | None:
        if partition is not None:
            self.partitions[case_id] = partition
        record = self.record(case_id)
        if record is None:
            return None
        return self.store.write(case_id, record, record["partition"])

    def load(self, records: Iterable[Mapping], partitions: Iterable[int]) -> int:
        """Start over with the records of `partitions` (the table after recovery); returns the
        number of pending deadlines. Deadlines that came due meanwhile fire on the next tick."""
        owned = set(partitions)
        self.engine = EscalationEngine(self.policy, clock=self.clock)
        self.partitions, self.traces, self.outbox = {}, {}, {}
        loaded = 0

        def owned_states() -> Iterator[dict]:
            # One record at a time (`records` may decode lazily from the table store): holding
            # every decoded record at once would cost several times the engine's own states.
            nonlocal loaded
            for record in records:
                if not record or record.get("format") != RECORD_FORMAT or record.get("partition") not in owned:
                    continue
                case_id = record["state"]["case_id"]
                self.partitions[case_id] = record["partition"]
                if record.get("traces"):
                    self.traces[case_id] = dict(record["traces"])
                if record.get("outbox"):
                    self.outbox[case_id] = {
                        eid: (base64.b64decode(item["envelope"]), [(k, v.encode()) for k, v in item["headers"]])
                        for eid, item in record["outbox"].items()
                    }
                loaded += 1
                yield record["state"]

        pending = self.engine.load(owned_states())
        if loaded >= GC_FREEZE_FROM:
            gc.collect()
            gc.freeze()
        self.ready = True
        if self._wake is not None:
            self._wake.set()
        log.info(
            "escalation state loaded",
            extra={
                "cases": loaded,
                "pending_deadlines": pending,
                "partitions": sorted(owned),
                "unsent": sum(len(v) for v in self.outbox.values()),
            },
        )
        return pending

    def forget(self, case_id: str, partition: int) -> Awaitable[Any] | None:
        """The client was erased: no more deadlines for the case, and its record is deleted."""
        self.engine.drop([case_id])
        self.partitions.pop(case_id, None)
        self.traces.pop(case_id, None)
        self.outbox.pop(case_id, None)
        return self.store.delete(case_id, partition)

    def drop(self, partitions: Iterable[int] | None = None) -> None:
        """Partitions revoked (None: all): forget their cases and stop firing until `load`."""
        self.ready = False
        gone = set(partitions) if partitions is not None else None
        cases = [c for c, p in self.partitions.items() if gone is None or p in gone]
        self.engine.drop(cases)
        for case_id in cases:
            self.partitions.pop(case_id, None)
            self.traces.pop(case_id, None)
            self.outbox.pop(case_id, None)

    # ------------------------------------------------------------------ time

    async def tick(self) -> int:
        """Send what an earlier run left in the outbox, then fire what is due. Returns the count fired."""
        if not self.ready:
            return 0
        if self.outbox:
            await self._send_outbox()
        escalations = self.engine.fire_due(limit=self.batch)
        if not escalations:
            return 0
        sent: list[tuple[str, Escalation, bytes, list]] = []
        for e in escalations:
            data, headers = self._build(e)
            self.outbox.setdefault(e.case_id, {})[e.escalation_id] = (data, headers)
            sent.append((e.case_id, e, data, headers))
        # 1. the outbox (and the fired state) is durable before anything leaves
        await _all(self.save(case_id) for case_id in {s[0] for s in sent})
        # 2. send, wait for the broker
        await asyncio.gather(*(self.publish(case_id, data, headers) for case_id, _e, data, headers in sent))
        # 3. done: clear the outbox
        now = self.clock()
        for case_id, e, _data, _headers in sent:
            self.outbox.get(case_id, {}).pop(e.escalation_id, None)
            self._escalations.add(1, _escalation_attributes(e))
            self._lateness.record(max(0.0, now - e.deadline_ts), {"referralmesh.level": e.level})
            log.info(
                "escalation emitted",
                extra={
                    "case_id": case_id,
                    "escalation_id": e.escalation_id,
                    "level": e.level,
                    "rule": e.rule,
                    "region": e.region,
                    "late": e.late,
                    "late_seconds": round(e.late_seconds, 3),
                    "cause": e.cause,
                },
            )
        self._clear_empty_outboxes()
        for case_id in {s[0] for s in sent}:
            if case_id in self.partitions:  # still ours (not revoked meanwhile)
                self.save(case_id)
        return len(escalations)

    def _build(self, e: Escalation) -> tuple[bytes, list]:
        """The envelope of one escalation, made inside a new trace linked to the scheduling event."""
        traceparent = self._scheduling_trace(e)
        attributes: dict[str, Any] = {
            tracing.CASE_ID: e.case_id,
            tracing.REFERRAL_ID: e.referral_id,
            "referralmesh.escalation.id": e.escalation_id,
            "referralmesh.escalation.level": e.level,
            "referralmesh.escalation.rule": e.rule,
            "referralmesh.escalation.late": e.late,
            "referralmesh.escalation.late_seconds": e.late_seconds,
        }
        with tracing.linked(f"escalate {e.rule}", traceparent, **attributes):
            firing = tracing.inject_current().get("traceparent", "")
            # follow-ups of this alert (climb, unresolved) link to this firing
            state = self.engine.state(e.case_id)
            if state is not None and firing:
                traces = self.traces.setdefault(e.case_id, {})
                for d in state.pending:
                    if d.parent == e.escalation_id and d.key not in traces:
                        traces[d.key] = firing
            with tracing.publishing(self.topic_name, case_id=e.case_id, event_id=e.escalation_id):
                envelope = envelopes.new_envelope(
                    case_id=e.case_id,
                    producer=SERVICE,
                    event_id=e.escalation_id,
                    occurred_at=utc(e.fired_at_ts),
                    escalation=escalation_event(e),
                )
        return envelopes.encode(envelope), escalation_headers(envelope, e)

    def _scheduling_trace(self, e: Escalation) -> str:
        """The traceparent of the event that scheduled the deadline that fired as `e`."""
        for key, traceparent in self.traces.get(e.case_id, {}).items():
            if escalation_id(e.case_id, cast(Deadline, _Probe(e.rule, key))) == e.escalation_id:
                return traceparent
        return ""

    async def _send_outbox(self) -> None:
        """Re-send escalations a previous run recorded but may not have sent: the same bytes."""
        items = [(case_id, eid, sent) for case_id, box in self.outbox.items() for eid, sent in box.items()]
        await asyncio.gather(*(self.publish(case_id, data, headers) for case_id, _eid, (data, headers) in items))
        for case_id, eid, _data in items:
            self.outbox.get(case_id, {}).pop(eid, None)
        self._clear_empty_outboxes()
        for case_id in {i[0] for i in items}:
            if case_id in self.partitions:
                self.save(case_id)
        log.info("unsent escalations of an earlier run sent", extra={"count": len(items)})

    def _clear_empty_outboxes(self) -> None:
        for case_id in [c for c, box in self.outbox.items() if not box]:
            del self.outbox[case_id]

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Fire deadlines until stopped: sleep until the next one is due (at most `tick`
        seconds; an input that schedules something wakes the loop early)."""
        wake = self._wake = asyncio.Event()
        while not should_stop():
            wake.clear()
            try:
                fired = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation tick failed; retrying")
                fired = 0
            if fired >= self.batch:
                await asyncio.sleep(0)  # more is due: go on, but let the agent in
                continue
            delay = self.tick_seconds
            due = self.engine.next_due() if self.ready else None
            if due is not None:
                delay = max(0.001, min(delay, due - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)


class _Probe(NamedTuple):
    """What `escalation_id` reads of a deadline."""

    rule: str
    key: str


async def _all(awaitables: Iterable[Awaitable[Any] | None]) -> None:
    pending = [a for a in awaitables if a is not None]
    if pending:
        await asyncio.gather(*pending)
