"""The stall detector, rule by rule, with a fake clock: hours of policy in milliseconds."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from meshkernel.envelope import derived_id
from services.region.domain.escalation import (
    CaseState,
    EscalationEngine,
    build_escalation_policy,
    escalation_id,
    load_escalation_policy,
    on_referral_event,
    state_from_dict,
    state_to_dict,
)
from services.region.domain.escalation.testing import CaseScript, FakeClock

AMS = ZoneInfo("Europe/Amsterdam")
POLICY = load_escalation_policy()
HOUR = 3600.0
START = datetime(2026, 3, 10, 10, 0, tzinfo=AMS)  # a Tuesday


@pytest.fixture
def clock():
    return FakeClock(START)


@pytest.fixture
def engine(clock):
    return EscalationEngine(POLICY, clock=clock)


@pytest.fixture
def case(clock):
    return CaseScript(clock)


def fire_after(engine, clock, hours):
    clock.advance(hours=hours)
    return engine.fire_due()


def levels(escalations):
    return [(e.rule, e.level) for e in escalations]


# ------------------------------------------------------------------------- the rules


def test_requested_not_acknowledged_reminds_the_receiving_agency(engine, clock, case):
    engine.on_referral_event(case.request("agency-a"))
    assert fire_after(engine, clock, 1.99) == []
    [reminder] = fire_after(engine, clock, 0.01)
    assert (reminder.rule, reminder.level) == ("not_acknowledged", "AGENCY_REMINDER")
    assert reminder.agency == "agency-a"
    assert reminder.deadline.timestamp() == START.timestamp() + 2 * HOUR
    assert reminder.late_seconds == 0 and not reminder.late


def test_not_accepted_or_declined_alerts_the_region_coordinator(engine, clock, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request())
    clock.advance(hours=1)
    changes = engine.on_referral_event(case.event("RECEIVED", addressee="agency-a"))
    assert [d.rule for d in changes.cancelled] == ["not_acknowledged"]  # acknowledged in time
    [alert] = fire_after(engine, clock, 7)
    assert (alert.rule, alert.level, alert.region) == ("not_answered", "REGION_COORDINATOR", "GM0363")
    assert [s for s, _ in alert.history] == ["REQUESTED", "RECEIVED"]
    assert alert.history[1][1] == datetime(2026, 3, 10, 10, 0, tzinfo=AMS).replace(hour=11)


def test_accepting_cancels_and_not_starting_is_at_risk_of_losing_contact(engine, clock, case):
    engine.on_referral_event(case.request())
    clock.advance(hours=1)
    changes = engine.on_referral_event(case.event("ACCEPTED"))
    assert sorted(d.rule for d in changes.cancelled) == ["not_acknowledged", "not_answered"]
    assert [d.rule for d in changes.scheduled] == ["not_started"]
    assert fire_after(engine, clock, 23.9) == []
    [risk] = fire_after(engine, clock, 0.1)
    assert (risk.rule, risk.level) == ("not_started", "AT_RISK_OF_LOSING_CONTACT")


def test_starting_in_time_cancels_at_risk(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("ACCEPTED"))
    clock.advance(hours=3)
    engine.on_referral_event(case.event("IN_PROGRESS"))
    assert fire_after(engine, clock, 1000) == []
    assert engine.state(case.case_id).pending == ()


def test_declined_without_next_receiver_goes_to_the_national_coordinator(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    [alert] = fire_after(engine, clock, 8)
    assert (alert.rule, alert.level) == ("no_next_receiver", "NATIONAL_COORDINATOR")


def test_forwarding_after_a_decline_moves_the_deadlines(engine, clock, case):
    engine.on_referral_event(case.request("agency-a"))
    clock.advance(hours=1.5)
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    clock.advance(hours=1)
    changes = engine.on_referral_event(case.forward("agency-b"))
    assert [d.rule for d in changes.cancelled] == ["no_next_receiver"]
    assert sorted(d.rule for d in changes.scheduled) == ["not_acknowledged", "not_answered"]
    assert fire_after(engine, clock, 1.9) == []  # the first reminder would have been due by now
    [reminder] = fire_after(engine, clock, 0.1)
    assert reminder.agency == "agency-b"
    assert reminder.deadline.timestamp() == START.timestamp() + 4.5 * HOUR


def test_refused_handover_goes_to_the_national_coordinator_at_once(engine, clock, case):
    engine.on_referral_event(case.request("agency-a"))
    engine.on_referral_event(case.event("ACCEPTED"))
    engine.on_referral_event(case.event("IN_PROGRESS"))
    clock.advance(hours=2)
    engine.on_referral_event(case.forward("agency-b", handover=True))
    engine.on_referral_event(case.event("DECLINED", handover=True, decline_reason="NOT_ELIGIBLE"))
    [alert] = engine.fire_due()
    assert (alert.rule, alert.level) == ("refused_handover", "NATIONAL_COORDINATOR")
    assert alert.late_seconds == 0
    # and not a second alert for "no next receiver" about the same decline
    assert "no_next_receiver" not in [e.rule for e in fire_after(engine, clock, 9)]


def test_no_programme_accepts_goes_to_the_national_coordinator(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_assignment(case.assignment("GM0363", rule="no_programme_accepts", no_programme_accepts=True))
    [alert] = engine.fire_due()
    assert (alert.rule, alert.level, alert.region) == ("no_programme_accepts", "NATIONAL_COORDINATOR", "GM0363")
    # a redelivered assignment does not alert again
    engine.on_assignment(case.assignment("GM0363", rule="no_programme_accepts", no_programme_accepts=True))
    assert engine.fire_due() == []


def test_contact_lost_alerts_the_region_coordinator_immediately(engine, clock, case):
    engine.on_assignment(case.assignment("GM0599"))
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("ACCEPTED"))
    clock.advance(hours=1)
    changes = engine.on_referral_event(case.event("CONTACT_LOST"))
    assert sorted(d.rule for d in changes.cancelled) == ["not_started"]
    [alert] = engine.fire_due()
    assert (alert.rule, alert.level, alert.region) == ("contact_lost", "REGION_COORDINATOR", "GM0599")


def test_completion_cancels_everything(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("ACCEPTED"))
    engine.on_referral_event(case.event("IN_PROGRESS"))
    engine.on_referral_event(case.event("COMPLETED"))
    assert engine.state(case.case_id).pending == ()
    assert engine.state(case.case_id).is_closed
    assert fire_after(engine, clock, 10_000) == []


# ------------------------------------------------------------------------- ping-pong


def test_passed_between_regions_twice_is_ping_pong(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_assignment(case.assignment("GM0599", previous="GM0363", rule="handover_accepted"))
    assert engine.fire_due() == []  # one pass is a handover, not ping-pong
    engine.on_assignment(case.assignment("GM0363", previous="GM0599", rule="handover_accepted"))
    [alert] = engine.fire_due()
    assert (alert.rule, alert.level) == ("ping_pong", "NATIONAL_COORDINATOR")
    assert alert.regions_involved == ("GM0363", "GM0599")
    engine.on_assignment(case.assignment("GM0599", previous="GM0363", rule="handover_accepted"))
    assert engine.fire_due() == []  # fires once per referral


def test_passed_between_agencies_twice_is_ping_pong(engine, clock, case):
    engine.on_referral_event(case.request("agency-a"))
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    engine.on_referral_event(case.forward("agency-b"))
    assert engine.fire_due() == []
    engine.on_referral_event(case.event("DECLINED", decline_reason="NOT_ELIGIBLE"))
    engine.on_referral_event(case.forward("agency-a"))
    [alert] = engine.fire_due()
    assert alert.rule == "ping_pong" and alert.agency == "agency-a"


def test_acceptance_resolves_ping_pong_before_it_climbs(engine, clock, case):
    engine.on_referral_event(case.request("agency-a"))
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_assignment(case.assignment("GM0599"))
    engine.on_assignment(case.assignment("GM0363"))
    [alert] = engine.fire_due()
    assert alert.rule == "ping_pong"
    assert {d.kind for d in engine.state(case.case_id).pending} >= {"unresolved"}
    engine.on_referral_event(case.event("ACCEPTED"))
    assert [d.rule for d in engine.state(case.case_id).pending] == ["not_started"]
    assert "DISPUTE" not in [e.level for e in fire_after(engine, clock, 1000)]


# ------------------------------------------------------------------------- ladder


def test_unacknowledged_alert_climbs_one_level_at_a_time(engine, clock, case):
    engine.on_referral_event(case.request())
    fired = fire_after(engine, clock, 8)
    assert levels(fired) == [("not_acknowledged", "AGENCY_REMINDER"), ("not_answered", "REGION_COORDINATOR")]
    region_alert = fired[1]
    [climbed] = fire_after(engine, clock, 2)  # URGENT: 2 h to acknowledge
    assert (climbed.level, climbed.cause, climbed.climbed_from) == (
        "NATIONAL_COORDINATOR",
        "not_acknowledged",
        "REGION_COORDINATOR",
    )
    assert climbed.rule == "not_answered"
    assert climbed.escalation_id != region_alert.escalation_id
    [dispute] = fire_after(engine, clock, 4)  # national alert not acknowledged in 4 h
    assert dispute.level == "DISPUTE" and dispute.cause == "not_acknowledged"
    assert fire_after(engine, clock, 1000) == []  # a dispute is the top, and only one


def test_acknowledged_alert_stops_climbing(engine, clock, case):
    engine.on_referral_event(case.request())
    [_, alert] = fire_after(engine, clock, 8)
    clock.advance(hours=1)
    changes = engine.on_alert_acknowledged(case.case_id, alert.escalation_id)
    assert [d.kind for d in changes.cancelled] == ["climb"]
    assert fire_after(engine, clock, 1000) == []


def test_acknowledged_national_alert_still_becomes_a_dispute_when_unresolved(engine, clock, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    [national] = fire_after(engine, clock, 8)
    engine.on_alert_acknowledged(case.case_id, national.escalation_id)
    engine.on_assignment(case.assignment("GM0599", previous="GM0363", handover_to="GM0599"))
    assert fire_after(engine, clock, 23.9) == []
    [dispute] = fire_after(engine, clock, 0.1)
    assert (dispute.level, dispute.cause, dispute.rule) == ("DISPUTE", "unresolved", "no_next_receiver")
    assert dispute.regions_involved == ("GM0363", "GM0599")
    kinds = [(kind, rule) for _, kind, rule, _ in dispute.decisions]
    assert ("assignment", "bound_here") in kinds
    assert ("escalation", "no_next_receiver") in kinds


def test_resolved_national_alert_cancels_its_pending_dispute_deadline(engine, clock, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    [national] = fire_after(engine, clock, 8)
    assert "unresolved" in {d.kind for d in engine.state(case.case_id).pending}

    changes = engine.on_alert_resolved(case.case_id, national.escalation_id)

    assert sorted(d.kind for d in changes.cancelled) == ["climb", "unresolved"]
    assert not {d.parent for d in engine.state(case.case_id).pending} & {national.escalation_id}
    assert "DISPUTE" not in [e.level for e in fire_after(engine, clock, 1000)]


def test_resolving_one_alert_leaves_another_alerts_dispute_deadline(engine, clock, case):
    engine.on_assignment(case.assignment("GM0363"))
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    [_national] = fire_after(engine, clock, 8)

    changes = engine.on_alert_resolved(case.case_id, "another-alert")

    assert changes.cancelled == ()
    assert [e.level for e in fire_after(engine, clock, 1000)][-1] == "DISPUTE"
    assert fire_after(engine, clock, 1000) == []


def test_unacknowledged_national_alert_gives_one_dispute_not_two(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("DECLINED", decline_reason="NO_CAPACITY"))
    fire_after(engine, clock, 8)
    disputes = [e for e in fire_after(engine, clock, 1000) if e.level == "DISPUTE"]
    assert len(disputes) == 1


def test_progress_cancels_pending_climbs(engine, clock, case):
    engine.on_referral_event(case.request())
    fire_after(engine, clock, 8)
    engine.on_referral_event(case.event("ACCEPTED"))
    assert [d.rule for d in engine.state(case.case_id).pending] == ["not_started"]


def test_contact_lost_alert_climbs_when_nobody_acknowledges(engine, clock, case):
    engine.on_referral_event(case.request())
    engine.on_referral_event(case.event("CONTACT_LOST"))
    [_alert] = engine.fire_due()
    [climbed] = fire_after(engine, clock, 2)
    assert climbed.level == "NATIONAL_COORDINATOR" and climbed.rule == "contact_lost"


# ------------------------------------------------------------------------- normal urgency


def test_normal_urgency_counts_working_days():
    clock = FakeClock(datetime(2026, 4, 24, 16, 0, tzinfo=AMS))  # Friday before King's Day
    engine = EscalationEngine(POLICY, clock=clock)
    case = CaseScript(clock, urgency="NORMAL")
    engine.on_referral_event(case.request())
    clock.set(datetime(2026, 4, 29, 15, 59, tzinfo=AMS))
    assert engine.fire_due() == []
    clock.set(datetime(2026, 4, 29, 16, 0, tzinfo=AMS))
    [reminder] = engine.fire_due()
    assert reminder.deadline == datetime(2026, 4, 29, 16, 0, tzinfo=AMS)


# ------------------------------------------------------------------------- at most once


def test_escalation_ids_are_derived_from_case_rule_and_deadline(engine, clock, case):
    engine.on_referral_event(case.request())
    [reminder] = fire_after(engine, clock, 2)
    assert reminder.escalation_id == derived_id("escalation", "case-1", "not_acknowledged", "ref-1|not_acknowledged|1")
    # the same history in another engine gives the same id
    other_clock = FakeClock(START)
    other = EscalationEngine(POLICY, clock=other_clock)
    other.on_referral_event(CaseScript(other_clock).request())
    other_clock.advance(hours=2)
    assert [e.escalation_id for e in other.fire_due()] == [reminder.escalation_id]


def test_redelivered_events_do_not_schedule_a_fired_deadline_again(engine, clock, case):
    request = case.request()
    engine.on_referral_event(request)
    assert len(fire_after(engine, clock, 2)) == 1
    assert engine.on_referral_event(request) == ((), ())
    assert fire_after(engine, clock, 1) == []


def test_restart_fires_what_came_due_while_down_once_and_marked_late(engine, clock, case):
    engine.on_referral_event(case.request())
    other = CaseScript(clock, case_id="case-2", referral_id="ref-2")
    engine.on_referral_event(other.request())
    engine.on_referral_event(other.event("ACCEPTED"))
    [reminder] = fire_after(engine, clock, 2)  # fired and persisted before the crash
    saved = {cid: json.dumps(engine.dump(cid)) for cid in engine.states}

    clock.advance(hours=10)  # the worker is down while not_answered (8 h) comes due
    restarted = EscalationEngine(POLICY, clock=clock)
    assert restarted.load(json.loads(s) for s in saved.values()) == 2
    fired = restarted.fire_due()
    assert levels(fired) == [("not_answered", "REGION_COORDINATOR")]
    [late] = fired
    assert late.late and late.late_seconds == pytest.approx(4 * HOUR)
    assert reminder.escalation_id not in [e.escalation_id for e in fired]
    assert restarted.fire_due() == []

    # a second crash *before* the fired state was persisted: the same id again, so the
    # receivers' deduplication keeps it at most once
    again = EscalationEngine(POLICY, clock=clock)
    again.load(json.loads(s) for s in saved.values())
    assert [e.escalation_id for e in again.fire_due()] == [late.escalation_id]


def test_states_loaded_from_json_share_one_copy_of_each_code_and_of_the_referral_id(engine, clock):
    """A worker holding a million cases loads them from JSON: repeated codes and agency ids must
    not be a million separate strings, and a deadline keeps its track's referral id."""
    for n in (1, 2):
        engine.on_referral_event(CaseScript(clock, case_id=f"case-{n}", referral_id=f"ref-{n}").request())
    restarted = EscalationEngine(POLICY, clock=clock)
    restarted.load(json.loads(json.dumps(engine.dump(cid))) for cid in ("case-1", "case-2"))
    one, two = restarted.state("case-1"), restarted.state("case-2")
    assert one is not None and two is not None
    assert one.tracks[0].status is two.tracks[0].status
    assert one.tracks[0].addressee is two.tracks[0].addressee
    assert one.tracks[0].history[0][0] is two.tracks[0].history[0][0]
    assert one.pending[0].rule is two.pending[0].rule and one.pending[0].level is two.pending[0].level
    assert all(d.referral_id is one.tracks[0].referral_id for d in one.pending)
    assert one == engine.state("case-1") and two == engine.state("case-2"), "and nothing else changed"


def test_state_round_trips_through_json(engine, clock, case):
    engine.on_assignment(case.assignment("GM0363", no_programme_accepts=True))
    engine.on_referral_event(case.request())
    fire_after(engine, clock, 9)
    state = engine.state(case.case_id)
    assert state_from_dict(json.loads(json.dumps(state_to_dict(state)))) == state


def test_escalations_carry_no_personal_data(engine, clock, case):
    engine.on_referral_event(case.request())
    [reminder] = fire_after(engine, clock, 2)
    data = reminder.to_dict()
    assert set(data) == {
        "escalation_id",
        "case_id",
        "referral_id",
        "region",
        "level",
        "rule",
        "deadline",
        "fired_at",
        "late_seconds",
        "late",
        "agency",
        "cause",
        "climbed_from",
        "history",
        "regions_involved",
        "decisions",
    }
    assert data["history"] == [{"status": "REQUESTED", "at": "2026-03-10T09:00:00+00:00"}]


def test_pure_function_leaves_the_input_state_untouched():
    clock = FakeClock(START)
    case = CaseScript(clock)
    before = CaseState(case_id="case-1")
    after, scheduled, cancelled = on_referral_event(POLICY, before, case.request(), clock.now)
    assert before == CaseState(case_id="case-1")
    assert len(scheduled) == 2 and cancelled == ()
    assert {d.key for d in after.pending} == {"ref-1|not_acknowledged|1", "ref-1|not_answered|1"}
    assert escalation_id("case-1", after.pending[0]).count("-") == 4


def test_disabled_rule_schedules_nothing(clock, case):
    import yaml

    from services.region.domain.escalation import DEFAULT_POLICY_PATH

    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    data["rules"]["not_acknowledged"]["enabled"] = False
    engine = EscalationEngine(build_escalation_policy(data), clock=clock)
    engine.on_referral_event(case.request())
    assert levels(fire_after(engine, clock, 8)) == [("not_answered", "REGION_COORDINATOR")]


@pytest.mark.parametrize(
    "case_id,key", [("case-1", "ref-1|not_acknowledged|1"), ("c/ä", "r|ping_pong|regions>NATIONAL_COORDINATOR")]
)
def test_fast_escalation_id_equals_meshkernel_derived_id(case_id, key):
    from services.region.domain.escalation import Deadline

    d = Deadline(key=key, referral_id="r", rule="ping_pong", level="DISPUTE", due=0.0, episode=1)
    assert escalation_id(case_id, d) == derived_id("escalation", case_id, "ping_pong", key)
