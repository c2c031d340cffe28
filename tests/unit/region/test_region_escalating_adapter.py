"""The region worker's stall-detector adapter without Kafka: fake clock, dict table, list topic.

Covers proto -> facts, the table record, the outbox (a crash at any moment: at most one distinct
escalation per id, none lost), load/drop on rebalance, alert actions, and the trace link from a
fired escalation to the event that scheduled its deadline.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meshkernel import envelope as envelopes
from meshkernel.tracing import inject_current, setup_tracing
from referralmesh.v1 import common_pb2, events_pb2
from services.region.adapters.assigning import Refused
from services.region.adapters.escalating import Escalator, _Probe, referral_facts
from services.region.domain.escalation import build_escalation_policy, escalation_id, load_escalation_policy
from services.region.domain.escalation.policy import DEFAULT_POLICY_PATH
from services.region.domain.escalation.testing import FakeClock

START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday


def policy():
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    data["rules"]["not_acknowledged"].update(after="2h", working_hours=False)
    data["rules"]["not_answered"].update(after="8h", working_hours=False)
    data["acknowledge"]["REGION_COORDINATOR"] = {"after": "2h", "working_hours": False}
    return build_escalation_policy(data)


class DictStore:
    def __init__(self):
        self.records: dict[str, dict] = {}
        self.writes = 0

    def write(self, case_id, record, partition):
        self.records[case_id] = json.loads(json.dumps(record))  # what the changelog would keep
        self.writes += 1
        return None

    def delete(self, case_id, partition):
        self.records.pop(case_id, None)
        return None


class Topic:
    def __init__(self):
        self.sent: list[tuple[str, bytes, list]] = []
        self.fail = False

    async def publish(self, case_id, value, headers):
        if self.fail:
            raise ConnectionError("broker gone")
        self.sent.append((case_id, value, headers))

    def escalations(self):
        return [envelopes.decode(v, expect="escalation") for _c, v, _h in self.sent]


def escalator(clock, store=None, topic=None):
    store, topic = store or DictStore(), topic or Topic()
    e = Escalator(policy(), store=store, publish=topic.publish, clock=clock, topic_name="esc")
    e.load([], range(6))
    return e, store, topic


def referral(case_id, event_type, version, status, clock, **fields):
    fields.setdefault("urgency", common_pb2.URGENT)
    payload = events_pb2.ReferralEvent(
        referral_id=f"ref-{case_id}", event_type=event_type, version=version, to_status=status, **fields
    )
    return envelopes.new_envelope(
        case_id=case_id,
        producer="t",
        event_id=str(uuid.uuid4()),
        occurred_at=datetime.fromtimestamp(clock.now, UTC),
        referral=payload,
    )


def assignment(cause, **fields):
    return envelopes.new_envelope(
        case_id=cause.case_id,
        producer="region",
        event_id=envelopes.derived_id("assignment", cause.event_id),
        assignment=events_pb2.AssignmentEvent(referral_id=cause.referral.referral_id, **fields),
    )


def alert_action(case_id, eid, action="ACKNOWLEDGED"):
    return envelopes.new_envelope(
        case_id=case_id,
        producer="t",
        event_id=str(uuid.uuid4()),
        alert_action=events_pb2.AlertAction(escalation_id=eid, action=action),
    )


def run(coro):
    return asyncio.run(coro)


def levels(topic):
    return [(events_pb2.EscalationLevel.Name(e.escalation.level), e.escalation.rule) for e in topic.escalations()]


def test_proto_facts_take_codes_and_fall_back_to_the_event_type():
    clock = FakeClock(START)
    facts = referral_facts(
        referral(
            "c",
            "ReferralDeclined",
            3,
            common_pb2.DECLINED,
            clock,
            handover=True,
            decline_reason=common_pb2.NO_CAPACITY,
            addressee="a-1",
            holder="a-0",
        )
    )
    assert (facts.to_status, facts.urgency, facts.decline_reason, facts.refused_handover) == (
        "DECLINED",
        "URGENT",
        "NO_CAPACITY",
        True,
    )
    assert facts.occurred_at == pytest.approx(clock.now)
    old = referral_facts(referral("c", "ReferralRequested", 1, 0, clock, urgency=0, receiver="a-2"))
    assert (old.to_status, old.urgency, old.addressee) == ("REQUESTED", "NORMAL", "a-2")
    assert referral_facts(referral("c", "SomethingElse", 1, 0, clock)) is None


def test_a_request_escalates_on_the_fake_clock_and_each_input_writes_the_record():
    clock = FakeClock(START)
    esc, store, topic = escalator(clock)
    cause = referral("case-1", "ReferralRequested", 1, common_pb2.REQUESTED, clock, addressee="shelter-a")
    esc.on_decided(cause, assignment(cause, responsible_region="GM0363", rule="bound_here"), partition=3)
    record = store.records["case-1"]
    assert record["partition"] == 3 and len(record["state"]["pending"]) == 2 and record["outbox"] == {}
    assert run(esc.tick()) == 0 and topic.sent == []

    clock.advance(hours=2)
    assert run(esc.tick()) == 1
    clock.advance(hours=6)
    assert run(esc.tick()) == 1
    assert levels(topic) == [("AGENCY_REMINDER", "not_acknowledged"), ("REGION_COORDINATOR", "not_answered")]
    first = topic.escalations()[0]
    assert first.event_id == first.escalation.escalation_id and first.case_id == "case-1"
    assert first.escalation.region == "GM0363" and first.escalation.late_seconds == 0
    assert topic.sent[0][0] == "case-1"  # keyed by case id
    assert dict(topic.sent[0][2])["escalation-late"] == b"false"
    assert store.records["case-1"]["outbox"] == {}, "cleared once the broker has it"
    assert run(esc.tick()) == 0


def test_progress_cancels_and_an_acknowledged_alert_stops_climbing():
    clock = FakeClock(START)
    esc, _store, topic = escalator(clock)
    for case in ("acked", "ignored"):
        esc.on_decided(referral(case, "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, 0)
        esc.on_decided(referral(case, "ReferralAcknowledged", 2, common_pb2.RECEIVED, clock), None, 0)
    clock.advance(hours=8)
    run(esc.tick())
    assert levels(topic) == [("REGION_COORDINATOR", "not_answered")] * 2  # no reminders: acknowledged
    acked = next(e for e in topic.escalations() if e.case_id == "acked")
    esc.on_alert_action(alert_action("acked", acked.escalation.escalation_id), 0)
    clock.advance(hours=2)
    run(esc.tick())
    assert [e.case_id for e in topic.escalations()[2:]] == ["ignored"]
    assert levels(topic)[2] == ("NATIONAL_COORDINATOR", "not_answered")
    assert dict(topic.sent[2][2])["escalation-cause"] == b"not_acknowledged"


def test_bad_alert_actions_are_refused():
    esc, _store, _topic = escalator(FakeClock(START))
    with pytest.raises(Refused, match=r"alert_action\.escalation_id"):
        esc.on_alert_action(alert_action("c", ""), 0)
    with pytest.raises(Refused, match=r"alert_action\.action"):
        esc.on_alert_action(alert_action("c", "x", "SHRUGGED"), 0)
    assert esc.on_alert_action(alert_action("unknown-case", "x"), 0) is None


def test_a_crash_after_the_outbox_was_written_resends_the_same_bytes_and_a_down_worker_fires_late():
    clock = FakeClock(START)
    esc, store, topic = escalator(clock)
    esc.on_decided(referral("a", "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, 1)
    esc.on_decided(referral("b", "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, 2)
    clock.advance(hours=2)
    topic.fail = True  # the broker never gets it: the worker dies here
    with pytest.raises(ConnectionError):
        run(esc.tick())
    recorded = store.records["a"]["outbox"]
    assert len(recorded) == 1, "the outbox is durable before the send"

    clock.advance(hours=1)  # down for an hour; then a new worker takes over from the table
    topic2 = Topic()
    again = Escalator(policy(), store=store, publish=topic2.publish, clock=clock)
    again.load(store.records.values(), range(6))
    assert run(again.tick()) == 0  # nothing new due, but the outbox went out
    assert len(topic2.sent) == 2
    eid = next(iter(recorded))
    resent = {envelopes.decode(v).event_id: v for _c, v, _h in topic2.sent}
    assert resent[eid] == base64.b64decode(recorded[eid]["envelope"]), "identical content"
    resent_headers = {envelopes.decode(v).event_id: h for _c, v, h in topic2.sent}
    assert dict(resent_headers[eid])["escalation-late"] == b"false", "headers kept too"
    assert store.records["a"]["outbox"] == {} and store.records["b"]["outbox"] == {}

    clock.advance(hours=5)  # not_answered due at +8h: it fires now, a minute late
    clock.advance(60)
    assert run(again.tick()) == 2
    late = topic2.escalations()[2:]
    assert all(e.escalation.late_seconds == pytest.approx(60) for e in late)
    assert all(dict(h)["escalation-late"] == b"true" for _c, _v, h in topic2.sent[2:])
    ids = [envelopes.decode(v).event_id for _c, v, _h in topic.sent + topic2.sent]
    assert len(ids) == len(set(ids))


def test_load_takes_only_the_owned_partitions_and_drop_forgets_them():
    clock = FakeClock(START)
    esc, store, _topic = escalator(clock)
    esc.on_decided(referral("p1", "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, 1)
    esc.on_decided(referral("p2", "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, 2)
    other = Escalator(policy(), store=store, publish=Topic().publish, clock=clock)
    assert other.load(store.records.values(), {2}) == 2
    assert set(other.partitions) == {"p2"}
    esc.drop({1})
    assert set(esc.partitions) == {"p2"} and not esc.ready
    clock.advance(hours=2)
    assert run(esc.tick()) == 0, "no firing between revocation and the next load"
    esc.load(store.records.values(), {1, 2})
    assert run(esc.tick()) == 2


def test_load_reads_the_table_once_and_turns_each_record_into_state_before_reading_the_next():
    """The table store decodes its values one at a time; load must not hold them all at once
    (a million decoded records would be several times the engine's own states)."""
    clock = FakeClock(START)
    esc, store, _topic = escalator(clock)
    for index, partition in enumerate([1, 2, 1, 3]):
        esc.on_decided(referral(f"c{index}", "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, partition)
    loaded_when_read: list[int] = []
    fresh = Escalator(policy(), store=store, publish=Topic().publish, clock=clock)

    def read_one_by_one():
        for record in store.records.values():
            loaded_when_read.append(len(fresh.engine.states))
            yield json.loads(json.dumps(record))

    assert fresh.load(read_one_by_one(), {1, 2}) == 6  # c0, c1, c2: not_acknowledged and not_answered each
    assert set(fresh.partitions) == {"c0", "c1", "c2"}
    assert loaded_when_read == [0, 1, 2, 3], "each owned record became state before the next was read"


def test_a_redelivered_event_changes_nothing():
    clock = FakeClock(START)
    esc, store, _topic = escalator(clock)
    event = referral("c", "ReferralRequested", 1, common_pb2.REQUESTED, clock)
    esc.on_decided(event, None, 0)
    before = store.records["c"]
    clock.advance(hours=1)
    esc.on_decided(event, None, 0)
    assert store.records["c"]["state"] == before["state"]


@pytest.fixture
def spans():
    setup_tracing("region-test")  # no-op when another test configured tracing already
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        pytest.skip("no SDK tracer provider")
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.clear()
    exporter.shutdown()


def test_a_fired_escalation_starts_a_trace_linked_to_the_event_that_set_the_deadline(spans):
    clock = FakeClock(START)
    esc, store, topic = escalator(clock)
    with trace.get_tracer("test").start_as_current_span("process referral.events") as consuming:
        scheduling = consuming.get_span_context()
        esc.on_decided(
            referral("c", "ReferralRequested", 1, common_pb2.REQUESTED, clock), None, 0, inject_current()["traceparent"]
        )
    assert format(scheduling.trace_id, "032x") in json.dumps(store.records["c"]["traces"])
    clock.advance(hours=8)
    run(esc.tick())
    fired = [s for s in spans.get_finished_spans() if s.name.startswith("escalate ")]
    assert [s.name for s in fired] == ["escalate not_acknowledged", "escalate not_answered"]
    for span in fired:
        assert span.context.trace_id != scheduling.trace_id, "a new trace"
        assert [link.context.span_id for link in span.links] == [scheduling.span_id]
        assert span.attributes["referralmesh.case_id"] == "c"
    # the envelope carries the firing's trace, so the notify service continues it
    sent = topic.escalations()[1]
    assert format(fired[1].context.trace_id, "032x") in sent.trace.traceparent

    clock.advance(hours=2)  # the coordinator alert climbs: linked to the alert it climbs from
    run(esc.tick())
    climb = [s for s in spans.get_finished_spans() if s.name.startswith("escalate ")][-1]
    assert [link.context.span_id for link in climb.links] == [fired[1].context.span_id]


def test_a_dispute_record_carries_the_regions_involved_and_the_decisions_so_far():
    clock = FakeClock(START)
    esc, _store, topic = escalator(clock)
    request = referral("d", "ReferralRequested", 1, common_pb2.REQUESTED, clock, addressee="shelter-a")
    esc.on_decided(request, assignment(request, responsible_region="GM0363", rule="bound_here"), 0)
    requested_at = clock.now
    clock.advance(hours=1)
    decline = referral(
        "d",
        "ReferralDeclined",
        2,
        common_pb2.DECLINED,
        clock,
        decline_reason=common_pb2.NO_CAPACITY,
        holder="shelter-a",
    )
    esc.on_decided(
        decline,
        assignment(
            decline,
            responsible_region="GM0363",
            previous_region="GM0363",
            handover_to="GM0599",
            rule="handover_to_better_bound_region",
        ),
        0,
    )
    declined_at = clock.now
    for _hour in range(40):  # no next receiver: national alert after 8 h, then the dispute
        clock.advance(hours=1)
        run(esc.tick())
    fired = [e.escalation for e in topic.escalations()]
    [dispute] = [e for e in fired if e.level == events_pb2.DISPUTE]
    assert all(not e.decisions for e in fired if e.level != events_pb2.DISPUTE), "only the dispute record"
    assert list(dispute.regions_involved) == ["GM0363", "GM0599"]
    decisions = [(d.kind, d.rule, d.region, events_pb2.EscalationLevel.Name(d.level)) for d in dispute.decisions]
    assert decisions[:2] == [
        ("assignment", "bound_here", "GM0363", "ESCALATION_LEVEL_UNSPECIFIED"),
        ("assignment", "handover_to_better_bound_region", "GM0363", "ESCALATION_LEVEL_UNSPECIFIED"),
    ]
    assert ("escalation", "no_next_receiver", "", "NATIONAL_COORDINATOR") in decisions
    assert decisions[-1] == ("escalation", dispute.rule, "", "DISPUTE"), "the dispute itself is the last decision"
    assert [d.at.seconds for d in dispute.decisions[:2]] == [int(requested_at), int(declined_at)]
    assert [d.at.seconds for d in dispute.decisions] == sorted(d.at.seconds for d in dispute.decisions)


def test_a_resolved_national_alert_never_becomes_a_dispute():
    clock = FakeClock(START)
    esc, _store, topic = escalator(clock)
    request = referral("r", "ReferralRequested", 1, common_pb2.REQUESTED, clock, addressee="shelter-a")
    esc.on_decided(request, assignment(request, responsible_region="GM0363", rule="bound_here"), 0)
    clock.advance(hours=1)
    decline = referral(
        "r",
        "ReferralDeclined",
        2,
        common_pb2.DECLINED,
        clock,
        decline_reason=common_pb2.NO_CAPACITY,
        holder="shelter-a",
    )
    esc.on_decided(decline, assignment(decline, responsible_region="GM0363", rule="bound_here"), 0)
    for _hour in range(9):  # no next receiver: the national alert
        clock.advance(hours=1)
        run(esc.tick())
    [national] = [e.escalation for e in topic.escalations() if e.escalation.level == events_pb2.NATIONAL_COORDINATOR]

    esc.on_alert_action(alert_action("r", national.escalation_id, "RESOLVED"), 0)
    for _hour in range(40):
        clock.advance(hours=1)
        run(esc.tick())

    assert events_pb2.DISPUTE not in [e.escalation.level for e in topic.escalations()]


def test_the_escalation_id_is_the_engines_derived_id():
    clock = FakeClock(START)
    esc, _store, topic = escalator(clock)
    esc.on_decided(referral("c", "ReferralContactLost", 1, common_pb2.CONTACT_LOST, clock), None, 0)
    run(esc.tick())
    [e] = topic.escalations()
    assert e.escalation.escalation_id == envelopes.derived_id("escalation", "c", "contact_lost", "ref-c|contact_lost|1")
    assert e.escalation.escalation_id == escalation_id("c", _Probe("contact_lost", "ref-c|contact_lost|1"))


def test_the_shipped_policy_loads_for_the_worker():
    assert load_escalation_policy(DEFAULT_POLICY_PATH).rules["contact_lost"].level == "REGION_COORDINATOR"


def test_the_timer_sleeps_when_idle_and_wakes_for_an_immediate_deadline():
    import time as real_time

    async def scenario():
        topic = Topic()
        esc = Escalator(policy(), store=DictStore(), publish=topic.publish, clock=real_time.time, tick=0.1)
        esc.load([], range(6))
        ticks = 0
        original = esc.tick

        async def counted():
            nonlocal ticks
            ticks += 1
            return await original()

        esc.tick = counted
        stop = False
        runner = asyncio.create_task(esc.run(lambda: stop))
        await asyncio.sleep(0.55)
        idle_ticks = ticks
        esc.tick_seconds = 5.0  # from now on only a wake-up can make it fire promptly
        await asyncio.sleep(0.15)  # the loop is in its long sleep now
        clock = FakeClock(real_time.time())
        started = real_time.monotonic()
        esc.on_decided(referral("c", "ReferralContactLost", 1, common_pb2.CONTACT_LOST, clock), None, 0)
        while not topic.sent and real_time.monotonic() - started < 2:  # noqa: ASYNC110 - a fake topic has no event
            await asyncio.sleep(0.005)
        woke_after = real_time.monotonic() - started
        stop = True
        runner.cancel()
        return idle_ticks, woke_after, len(topic.sent)

    idle_ticks, woke_after, sent = asyncio.run(scenario())
    assert idle_ticks <= 8, "about one tick per 0.1 s while idle, no busy loop"
    assert sent == 1 and woke_after < 0.5
