from datetime import UTC, datetime, timedelta

import pytest

from services.notify.domain import alerts as a

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
HAGUE = a.Coordinator("coord-gm0518", "GM0518")
UTRECHT = a.Coordinator("coord-gm0344", "GM0344")
NATIONAL = a.Coordinator("coord-national", a.NATIONAL)
REGIONS = frozenset({"GM0518", "GM0344", "GM0363"})


def _alert(eid="e1", region="GM0518", level="REGION_COORDINATOR", fired=T0) -> a.Alert:
    return a.raise_alert(
        a.Alert(eid, "case-1", "ref-1", region, level, "not_accepted_in_time", fired, fired - timedelta(days=2))
    )


def test_a_new_alert_is_open_with_its_raise_in_the_history():
    alert = _alert()
    assert alert.state is a.AlertState.OPEN
    assert [c.action for c in alert.history] == [a.Action.RAISED]
    assert alert.age_seconds(T0) == 2 * 86400


def test_acknowledge_take_resolve_walks_the_states_and_records_each_step():
    alert = a.acknowledge(_alert(), HAGUE, T0)
    alert = a.take(alert, HAGUE, T0 + timedelta(minutes=1))
    alert = a.resolve(alert, HAGUE, T0 + timedelta(minutes=2), "HELP_STARTED")
    assert (alert.state, alert.owner, alert.outcome) == (a.AlertState.RESOLVED, "coord-gm0518", "HELP_STARTED")
    assert [c.action for c in alert.history] == [
        a.Action.RAISED,
        a.Action.ACKNOWLEDGED,
        a.Action.TAKEN,
        a.Action.RESOLVED,
    ]


def test_acknowledging_twice_changes_nothing():
    once = a.acknowledge(_alert(), HAGUE, T0)
    assert a.acknowledge(once, HAGUE, T0) is once


def test_a_coordinator_acts_only_within_their_region_and_the_national_one_everywhere():
    with pytest.raises(a.OutOfScope):
        a.acknowledge(_alert(), UTRECHT, T0)
    assert a.take(_alert(), NATIONAL, T0).owner == "coord-national"


def test_taking_over_from_another_owner_is_for_the_national_coordinator_only():
    taken = a.take(_alert(), HAGUE, T0)
    with pytest.raises(a.NotAllowed):
        a.take(taken, a.Coordinator("coord-2", "GM0518"), T0)
    assert a.take(taken, NATIONAL, T0).owner == "coord-national"


def test_reassign_needs_a_known_region_and_a_reason_code_and_moves_the_alert():
    with pytest.raises(a.AlertError):
        a.reassign(_alert(), HAGUE, T0, "GM0344", "because I say so", REGIONS)
    with pytest.raises(a.AlertError):
        a.reassign(_alert(), HAGUE, T0, "GM9999", "CLIENT_MOVED", REGIONS)
    with pytest.raises(a.AlertError):
        a.reassign(_alert(), HAGUE, T0, "GM0518", "CLIENT_MOVED", REGIONS)
    moved = a.reassign(_alert(), HAGUE, T0, "GM0344", "CLIENT_MOVED", REGIONS)
    assert moved.region == "GM0344"
    assert moved.history[-1] == a.Change(
        a.Action.REASSIGNED, "coord-gm0518", T0, a.AlertState.OPEN, "CLIENT_MOVED", "GM0344"
    )
    # Now it is Utrecht's case: The Hague no longer sees it.
    assert a.visible([moved], HAGUE) == [] and a.visible([moved], UTRECHT) == [moved]


def test_resolve_needs_an_outcome_code_and_a_resolved_alert_takes_no_more_actions():
    with pytest.raises(a.AlertError):
        a.resolve(_alert(), HAGUE, T0, "")
    done = a.resolve(_alert(), HAGUE, T0, "NO_LONGER_NEEDED")
    for act in (
        lambda: a.take(done, HAGUE, T0),
        lambda: a.resolve(done, HAGUE, T0, "OTHER"),
        lambda: a.reassign(done, HAGUE, T0, "GM0344", "OTHER", REGIONS),
    ):
        with pytest.raises(a.NotAllowed):
            act()


def test_the_list_shows_the_most_pressing_level_first_then_the_newest():
    old_region = _alert("e1", fired=T0)
    new_region = _alert("e2", fired=T0 + timedelta(hours=1))
    dispute = _alert("e3", level="DISPUTE", fired=T0 - timedelta(days=1))
    at_risk = _alert("e4", level="AT_RISK_OF_LOSING_CONTACT", fired=T0)
    elsewhere = _alert("e5", region="GM0363", level="NATIONAL_COORDINATOR")
    resolved = a.resolve(_alert("e6", level="DISPUTE"), HAGUE, T0, "OTHER")
    everything = [old_region, new_region, dispute, at_risk, elsewhere, resolved]
    assert [x.escalation_id for x in a.visible(everything, HAGUE)] == ["e3", "e4", "e2", "e1"]
    assert [x.escalation_id for x in a.visible(everything, NATIONAL)] == ["e3", "e5", "e4", "e2", "e1"]


def test_the_stream_filter_matches_regions_and_levels():
    alert = _alert()
    assert a.matches(alert, set(), set())
    assert a.matches(alert, {"GM0518"}, {"REGION_COORDINATOR"})
    assert not a.matches(alert, {"GM0344"}, set())
    assert not a.matches(alert, set(), {"DISPUTE"})
