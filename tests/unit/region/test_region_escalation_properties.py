"""Properties of the stall detector under random event sequences (hypothesis).

For any sequence of referral events (any statuses, in any order, with redeliveries),
assignments, acknowledgements, clock moves and restarts (state through JSON, index rebuilt):

* no escalation fires twice (ids unique; ids are also unique per deadline key);
* every fired escalation was due: deadline <= fired_at, and late_seconds = fired_at - deadline;
* after fire_due(now) nothing that is due is left pending;
* the index and the states agree: every pending deadline is in the index.
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.region.domain.escalation import (
    AssignmentFacts,
    EscalationEngine,
    ReferralFacts,
    load_escalation_policy,
)
from services.region.domain.escalation.testing import FakeClock

POLICY = load_escalation_policy()
START = datetime(2026, 4, 23, 8, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))  # days before King's Day
STATUSES = [
    "REQUESTED",
    "RECEIVED",
    "ACCEPTED",
    "DECLINED",
    "IN_PROGRESS",
    "COMPLETED",
    "CANCELLED",
    "CONTACT_LOST",
    "FAILED",
]
US = 2e-6
CASES = ["case-a", "case-b", "case-c"]
AGENCIES = ["agency-1", "agency-2", "agency-3", ""]
REGIONS = ["GM0363", "GM0599", "GM0518"]

referral_op = st.tuples(
    st.just("event"),
    st.sampled_from(CASES),
    st.sampled_from(["r1", "r2"]),
    st.sampled_from(STATUSES),
    st.sampled_from(AGENCIES),
    st.booleans(),
    st.sampled_from(["URGENT", "NORMAL"]),
    st.integers(0, 1),  # 1 = redeliver the last one
)
assignment_op = st.tuples(
    st.just("assign"),
    st.sampled_from(CASES),
    st.sampled_from(["r1", "r2"]),
    st.sampled_from(REGIONS),
    st.booleans(),
    st.integers(0, 3),
)
ack_op = st.tuples(st.just("ack"), st.integers(0, 50))
tick_op = st.tuples(st.just("tick"), st.floats(0, 3 * 24 * 3600, allow_nan=False))
restart_op = st.tuples(st.just("restart"))
ops = st.lists(st.one_of(referral_op, assignment_op, ack_op, tick_op, tick_op, restart_op), max_size=60)


def restart(engine: EscalationEngine, clock: FakeClock) -> EscalationEngine:
    saved = [json.dumps(engine.dump(cid)) for cid in engine.states]
    fresh = EscalationEngine(POLICY, clock=clock)
    fresh.load(json.loads(s) for s in saved)
    return fresh


def check_fired(batch, now, seen_ids, seen_keys):
    for e in batch:
        assert e.escalation_id not in seen_ids, f"fired twice: {e}"
        seen_ids.add(e.escalation_id)
        # datetimes carry microseconds: compare to within that
        assert e.deadline.timestamp() <= now + US, "fired before it was due"
        assert abs(e.late_seconds - max(0.0, now - e.deadline.timestamp())) < US
        assert abs(e.fired_at.timestamp() - now) < US


def check_nothing_due_left(engine, now):
    for state in engine.states.values():
        for d in state.pending:
            assert d.due > now, f"left unfired: {d}"
    assert engine.next_due() is None or engine.next_due() > now


def check_index_covers_state(engine):
    indexed = {id(entry[2]) for entry in engine.index._heap}
    for state in engine.states.values():
        for d in state.pending:
            assert id(d) in indexed, f"pending but not indexed: {d}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_random_sequences_fire_each_deadline_at_most_once_and_only_when_due(operations):
    clock = FakeClock(START)
    engine = EscalationEngine(POLICY, clock=clock)
    versions: dict[tuple[str, str], int] = {}
    last: dict[tuple[str, str], ReferralFacts] = {}
    fired: list = []
    seen_ids: set[str] = set()
    seen_keys: set[str] = set()
    assignments = 0
    for op in operations:
        kind = op[0]
        if kind == "event":
            _, case, ref, status, agency, handover, urgency, redeliver = op
            key = (case, ref)
            if redeliver and key in last:
                facts = last[key]
            else:
                versions[key] = versions.get(key, 0) + 1
                facts = ReferralFacts(
                    case_id=case,
                    referral_id=ref,
                    event_type="ReferralX",
                    to_status=status,
                    version=versions[key],
                    occurred_at=clock.now,
                    urgency=urgency,
                    addressee=agency,
                    holder="agency-9",
                    handover=handover,
                )
                last[key] = facts
            engine.on_referral_event(facts)
        elif kind == "assign":
            _, case, ref, region, no_programme, replay = op
            assignments += 1
            engine.on_assignment(
                AssignmentFacts(
                    case_id=case,
                    referral_id=ref,
                    responsible_region=region,
                    occurred_at=clock.now,
                    no_programme_accepts=no_programme,
                    event_id=f"a{max(1, assignments - replay)}",
                )
            )
        elif kind == "ack":
            if fired:
                e = fired[op[1] % len(fired)]
                engine.on_alert_acknowledged(e.case_id, e.escalation_id)
        elif kind == "tick":
            clock.advance(op[1])
            batch = engine.fire_due()
            check_fired(batch, clock.now, seen_ids, seen_keys)
            fired.extend(batch)
            check_nothing_due_left(engine, clock.now)
        else:
            engine = restart(engine, clock)
        check_index_covers_state(engine)
    # finally: let everything come due
    for _ in range(8):
        clock.advance(30 * 24 * 3600)
        batch = engine.fire_due()
        check_fired(batch, clock.now, seen_ids, seen_keys)
        check_nothing_due_left(engine, clock.now)
    for state in engine.states.values():
        assert state.pending == ()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(0, 10 * 24 * 3600, allow_nan=False), min_size=1, max_size=30),
    st.floats(0, 20 * 24 * 3600, allow_nan=False),
)
def test_down_time_fires_everything_due_once_on_recovery(offsets, down_for):
    clock = FakeClock(START)
    engine = EscalationEngine(POLICY, clock=clock)
    for i, offset in enumerate(sorted(offsets)):
        engine.on_referral_event(
            ReferralFacts(
                case_id=f"c{i}",
                referral_id="r",
                event_type="ReferralRequested",
                to_status="REQUESTED",
                version=1,
                occurred_at=clock.now + offset,
                urgency="URGENT",
                addressee="agency-1",
            )
        )
    due = sorted(d.due for s in engine.states.values() for d in s.pending)
    clock.advance(down_for)
    recovered = restart(engine, clock)
    batch = recovered.fire_due()
    expected = [t for t in due if t <= clock.now]
    first = [e for e in batch if e.cause == "deadline"]
    got = sorted(e.deadline.timestamp() for e in first)
    assert len(got) == len(expected)
    assert all(abs(a - b) < US for a, b in zip(got, expected, strict=False))
    assert all(e.late == (e.late_seconds > POLICY.late_tolerance) for e in batch)
    assert len({e.escalation_id for e in batch}) == len(batch)
    assert restart(recovered, clock).fire_due() == []
