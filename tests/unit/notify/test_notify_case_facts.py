"""The projection notify keeps for the case view and the insight page: referral states and
decisions per case (once per event), acceptance times per referral, marks per case."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from meshkernel import envelope as envelopes
from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.store import make_engine

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def facts(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'notify.db'}")
    yield CaseFacts(engine)
    engine.dispose()


def _referral(case_id, status, at, *, before=common_pb2.REFERRAL_STATUS_UNSPECIFIED, decline=0):
    payload = events_pb2.ReferralEvent(
        referral_id=f"ref-{case_id}", to_status=status, from_status=before, actor="shelter-a", decline_reason=decline
    )
    envelope = envelopes.new_envelope(case_id=case_id, producer="t", event_id=str(uuid.uuid4()), referral=payload)
    envelope.occurred_at.FromDatetime(at)
    return envelope


def _assignment(case_id, at, *, region="GM0518", rule="help_asked_here", **extra):
    payload = events_pb2.AssignmentEvent(referral_id=f"ref-{case_id}", responsible_region=region, rule=rule, **extra)
    envelope = envelopes.new_envelope(case_id=case_id, producer="t", event_id=str(uuid.uuid4()), assignment=payload)
    envelope.occurred_at.FromDatetime(at)
    return envelope


def test_referral_states_and_decisions_make_the_timeline_once_per_event(facts):
    requested = _referral("c1", common_pb2.REQUESTED, T0)
    facts.record_referral(requested)
    facts.record_referral(requested)  # redelivered
    facts.record_assignment(_assignment("c1", T0 + timedelta(seconds=1), handover_to="GM0344"))
    same_state = _referral("c1", common_pb2.REQUESTED, T0 + timedelta(hours=1), before=common_pb2.REQUESTED)
    facts.record_referral(same_state)  # facts changed, no new state: not a timeline step
    facts.record_referral(
        _referral("c1", common_pb2.DECLINED, T0 + timedelta(hours=2), before=common_pb2.REQUESTED, decline=2)
    )
    entries = facts.timeline("c1")
    assert [(e.kind, e.code, e.detail) for e in entries] == [
        ("referral", "REQUESTED", ""),
        ("decision", "help_asked_here", "GM0344"),
        ("referral", "DECLINED", "NO_CAPACITY"),
    ]
    assert entries[0].actor == "shelter-a" and entries[1].region == "GM0518"
    assert facts.timeline("other") == []


def test_acceptance_time_counts_from_request_to_the_first_acceptance_in_the_responsible_region(facts):
    facts.record_referral(_referral("c1", common_pb2.REQUESTED, T0))
    facts.record_assignment(_assignment("c1", T0, region="GM0344"))
    facts.record_referral(_referral("c1", common_pb2.ACCEPTED, T0 + timedelta(hours=6), before=common_pb2.RECEIVED))
    facts.record_referral(_referral("c1", common_pb2.ACCEPTED, T0 + timedelta(hours=9), before=common_pb2.RECEIVED))
    facts.record_referral(_referral("c2", common_pb2.REQUESTED, T0))  # not accepted yet
    samples = facts.acceptances(None, T0 - timedelta(days=1))
    assert [s.hours for s in samples] == [6.0]
    assert [s.hours for s in facts.acceptances("GM0344", T0 - timedelta(days=1))] == [6.0]
    assert facts.acceptances("GM0518", T0 - timedelta(days=1)) == []
    assert facts.acceptances(None, T0 + timedelta(days=1)) == []


def test_marks_count_bound_nowhere_once_per_case_and_each_handover_step(facts):
    for hours in (0, 1):  # decided twice: still one client bound nowhere, one proposal
        facts.record_assignment(
            _assignment("c1", T0 + timedelta(hours=hours), bound_nowhere=True, handover_to="GM0344")
        )
    facts.record_assignment(
        _assignment("c1", T0 + timedelta(hours=2), region="GM0518", rule="handover_refused", handover_to="GM0344")
    )
    facts.record_assignment(_assignment("c2", T0, region="GM0344", rule="handover_accepted", previous_region="GM0518"))
    kinds = sorted((m.kind, m.region) for m in facts.marks(None, T0 - timedelta(days=1)))
    assert kinds == [
        ("bound_nowhere", "GM0518"),
        ("handover_accepted", "GM0518"),  # counted for the region that handed over
        ("handover_proposed", "GM0518"),
        ("handover_refused", "GM0518"),
    ]
    assert facts.marks("GM0344", T0 - timedelta(days=1)) == []
