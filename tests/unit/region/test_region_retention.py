"""Which closed cases the region worker forgets, and when (services/region/domain/retention.py)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.region.domain.escalation import EscalationEngine, load_escalation_policy
from services.region.domain.escalation.testing import CaseScript, FakeClock
from services.region.domain.retention import DAY, ClosedCaseRetention, closed_at

POLICY = load_escalation_policy()
START = datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))


@pytest.fixture
def clock():
    return FakeClock(START)


@pytest.fixture
def engine(clock):
    return EscalationEngine(POLICY, clock=clock)


def completed_case(engine, clock, case_id="case-1", referral_id="ref-1"):
    case = CaseScript(clock, case_id=case_id, referral_id=referral_id)
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("ACCEPTED"))
    engine.on_referral_event(case.event("IN_PROGRESS"))
    clock.advance(hours=5)
    engine.on_referral_event(case.event("COMPLETED"))
    return case


def test_a_completed_case_closed_when_its_referral_completed(engine, clock):
    completed_case(engine, clock)
    assert closed_at(engine.state("case-1")) == clock.now


def test_a_closed_case_is_kept_for_the_retention_period_and_expires_at_its_end(engine, clock):
    retention = ClosedCaseRetention.of_days(30, clock)
    completed_case(engine, clock)
    clock.advance(days=30, seconds=-1)
    assert retention.expired(engine.states.values()) == []
    clock.advance(seconds=1)
    assert retention.expired(engine.states.values()) == ["case-1"]


def test_an_open_case_never_expires_however_old(engine, clock):
    retention = ClosedCaseRetention.of_days(1, clock)
    case = CaseScript(clock)
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("ACCEPTED"))
    clock.advance(days=3650)
    assert closed_at(engine.state("case-1")) is None
    assert retention.expired(engine.states.values()) == []


def test_a_case_with_one_referral_still_open_is_not_closed(engine, clock):
    completed_case(engine, clock, referral_id="ref-1")
    other = CaseScript(clock, case_id="case-1", referral_id="ref-2")
    engine.on_referral_event(other.request())
    engine.fire_due(clock.advance(days=400))  # its deadlines fired; the referral is still open
    assert closed_at(engine.state("case-1")) is None


def test_a_case_closes_when_its_last_referral_ends(engine, clock):
    first = completed_case(engine, clock, referral_id="ref-1")
    second = CaseScript(clock, case_id=first.case_id, referral_id="ref-2")
    engine.on_referral_event(second.request())
    clock.advance(days=2)
    engine.on_referral_event(second.event("CANCELLED"))
    assert closed_at(engine.state("case-1")) == clock.now


def test_contact_lost_stays_until_its_alert_has_fired(engine, clock):
    retention = ClosedCaseRetention.of_days(1, clock)
    case = CaseScript(clock)
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("ACCEPTED"))
    engine.on_referral_event(case.event("CONTACT_LOST"))
    assert engine.state("case-1").pending  # the "at risk of losing contact" alert
    assert closed_at(engine.state("case-1")) is None
    engine.fire_due(clock.advance(days=2))
    state = engine.state("case-1")
    if state.pending:  # a climb of the alert may follow; the case stays until it is done
        assert retention.expired([state]) == []
    else:
        assert retention.expired([state]) == ["case-1"]


def test_a_case_known_only_from_an_assignment_is_never_closed(engine, clock):
    case = CaseScript(clock)
    engine.on_assignment(case.assignment("GM0363"))
    clock.advance(days=3650)
    assert closed_at(engine.state("case-1")) is None
    assert ClosedCaseRetention.of_days(1, clock).expired(engine.states.values()) == []


def test_the_retention_period_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        ClosedCaseRetention(0)


TERMINALS = ("COMPLETED", "CANCELLED", "FAILED")
OPEN = ("REQUESTED", "RECEIVED", "ACCEPTED", "IN_PROGRESS")
# The statuses on the way from REQUESTED to where a referral ends up (the last one excluded).
PATH = {
    "REQUESTED": [],
    "RECEIVED": ["RECEIVED"],
    "ACCEPTED": ["ACCEPTED"],
    "IN_PROGRESS": ["ACCEPTED", "IN_PROGRESS"],
    "COMPLETED": ["ACCEPTED", "IN_PROGRESS"],
    "CANCELLED": [],
    "FAILED": ["ACCEPTED"],
}


@given(
    cases=st.lists(
        st.tuples(
            st.sampled_from(TERMINALS + OPEN),  # where the referral ends up
            st.floats(min_value=0, max_value=90 * DAY, allow_nan=False),  # when, after the start
        ),
        min_size=1,
        max_size=12,
    ),
    retention_days=st.floats(min_value=0.001, max_value=60),
    elapsed=st.floats(min_value=0, max_value=200 * DAY, allow_nan=False),
    order=st.randoms(use_true_random=False),
)
def test_exactly_the_closed_cases_past_retention_expire_in_any_order(cases, retention_days, elapsed, order):
    clock = FakeClock(START)
    engine = EscalationEngine(POLICY, clock=clock)
    start = clock.now
    for index, (status, after) in enumerate(cases):
        script = CaseScript(clock, case_id=f"case-{index}", referral_id=f"ref-{index}")
        engine.on_referral_event(script.request())
        for step in PATH[status]:
            engine.on_referral_event(script.event(step))
        if status in TERMINALS:
            engine.on_referral_event(script.event(status, at=start + after))
    now = start + elapsed
    retention = ClosedCaseRetention.of_days(retention_days, lambda: now)
    states = list(engine.states.values())
    expected = sorted(
        s.case_id
        for s in states
        if not s.pending
        and all(t.status in TERMINALS for t in s.tracks)
        and now - max(t.history[-1][1] for t in s.tracks) >= retention.retention_seconds
    )
    assert retention.expired(states) == expected
    order.shuffle(states)
    assert retention.expired(states) == expected
    for state in states:
        if any(t.status in OPEN for t in state.tracks):
            assert not retention.is_expired(state)
