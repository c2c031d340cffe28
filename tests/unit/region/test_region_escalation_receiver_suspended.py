"""Rule receiver_suspended: an operator suspended the agency an open referral waits on; the
coordinator of the responsible region is alerted at once, once per referral and agency."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from services.region.domain.escalation import EscalationEngine, build_escalation_policy, load_escalation_policy
from services.region.domain.escalation.engine import RECEIVER_SUSPENDED_EVENT
from services.region.domain.escalation.testing import CaseScript, FakeClock

POLICY = load_escalation_policy()
START = datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))


@pytest.fixture
def clock():
    return FakeClock(START)


@pytest.fixture
def engine(clock):
    return EscalationEngine(POLICY, clock=clock)


@pytest.fixture
def case(clock):
    return CaseScript(clock)


def suspended(case: CaseScript, status: str, agency: str):
    """What the referral service sends: the current status and version, the suspended agency."""
    facts = case.event(status, addressee=agency)
    case.version -= 1  # no lifecycle change: the version stays
    return dataclasses.replace(facts, event_type=RECEIVER_SUSPENDED_EVENT, version=case.version)


def test_a_suspended_receiver_alerts_the_region_coordinator_at_once(engine, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request("shelter-a"))
    engine.on_referral_event(suspended(case, "REQUESTED", "shelter-a"))
    fired = engine.fire_due()
    assert [(e.rule, e.level, e.region) for e in fired] == [("receiver_suspended", "REGION_COORDINATOR", "GM0363")]


def test_a_redelivered_suspension_alerts_once(engine, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request("shelter-a"))
    event = suspended(case, "REQUESTED", "shelter-a")
    engine.on_referral_event(event)
    assert len(engine.fire_due()) == 1
    engine.on_referral_event(event)
    assert engine.fire_due() == []


def test_the_suspension_leaves_the_lifecycle_deadlines_as_they_were(engine, case, clock):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request("shelter-a"))
    engine.on_referral_event(suspended(case, "REQUESTED", "shelter-a"))
    engine.fire_due()
    clock.advance(hours=2)  # URGENT: not acknowledged after 2 h still reminds as before
    fired = {(e.rule, e.level) for e in engine.fire_due()}
    assert ("not_acknowledged", "AGENCY_REMINDER") in fired
    # and the coordinator's alert, not acknowledged within its 2 h, climbs the ladder as any other
    assert ("receiver_suspended", "NATIONAL_COORDINATOR") in fired


def test_a_closed_referral_is_not_escalated(engine, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request("shelter-a"))
    engine.on_referral_event(case.event("CANCELLED"))
    engine.on_referral_event(suspended(case, "CANCELLED", "shelter-a"))
    assert engine.fire_due() == []


def test_a_referral_the_worker_never_saw_is_escalated_with_the_status_it_names(engine, case):
    engine.on_assignment(case.assignment("GM0599"))
    case.version = 4
    engine.on_referral_event(suspended(case, "ACCEPTED", "exit-b"))
    [alert] = engine.fire_due()
    assert (alert.rule, alert.region) == ("receiver_suspended", "GM0599")


def test_a_policy_file_without_the_rule_gets_its_default():
    data = {
        "version": "t",
        "working_hours": {"timezone": "Europe/Amsterdam", "days": ["MON"], "start": "09:00", "end": "17:00"},
        "ladder": {},
        "acknowledge": {},
        "rules": {
            name: {"level": "REGION_COORDINATOR", "after": 0} for name in POLICY.rules if name != "receiver_suspended"
        },
    }
    policy = build_escalation_policy(data)
    spec = policy.rules["receiver_suspended"]
    assert (spec.level, spec.after.seconds["NORMAL"], spec.enabled) == ("REGION_COORDINATOR", 0.0, True)
