"""One card per case: level, state and handler from the case's alerts; filters; counts per level;
which alerts a case action touches."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from services.notify.domain import alerts as a
from services.notify.domain import cases, timeline

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HAGUE = a.Coordinator("coord-gm0518", "GM0518")
UTRECHT = a.Coordinator("coord-gm0344", "GM0344")
NATIONAL = a.Coordinator("coord-national", a.NATIONAL)


def _alert(eid, case="case-1", level="REGION_COORDINATOR", region="GM0518", fired=T0, rule="not_answered"):
    return a.raise_alert(a.Alert(eid, case, "ref-1", region, level, rule, fired, T0 - timedelta(days=2)))


def test_the_alerts_of_one_case_make_one_card_at_its_most_pressing_level():
    reminder = _alert("e1", level="AGENCY_REMINDER")
    region = _alert("e2", level="REGION_COORDINATOR", fired=T0 + timedelta(hours=4))
    other = _alert("e3", case="case-2", level="AGENCY_REMINDER")
    cards = cases.case_cards([reminder, region, other], HAGUE)
    assert [c.case_id for c in cards] == ["case-1", "case-2"]
    first = cards[0]
    assert first.level == "REGION_COORDINATOR" and len(first.alerts) == 2
    assert first.state is a.AlertState.OPEN and first.handler == ""
    assert first.age_seconds(T0) == 2 * 86400


def test_taking_every_alert_of_a_case_leaves_none_open_and_names_the_handler():
    reminder = _alert("e1", level="AGENCY_REMINDER")
    region = _alert("e2", fired=T0 + timedelta(hours=4))
    card = cases.case_cards([reminder, region], HAGUE)[0]
    assert [x.escalation_id for x in cases.case_actions_for(card, "take")] == ["e1", "e2"]
    taken = [a.take(x, HAGUE, T0 + timedelta(hours=5)) for x in cases.case_actions_for(card, "take")]
    card = cases.case_cards(taken, HAGUE)[0]
    assert card.state is a.AlertState.TAKEN and card.handler == "coord-gm0518"
    assert all(x.state is not a.AlertState.OPEN for x in card.alerts)
    resolved = [a.resolve(x, HAGUE, T0 + timedelta(hours=6), "HELP_STARTED") for x in card.alerts]
    card = cases.case_cards(resolved, HAGUE)[0]
    assert card.state is a.AlertState.RESOLVED
    assert not cases.CaseFilter().matches(card, T0)  # resolved cases leave the default view
    assert cases.CaseFilter(state="RESOLVED").matches(card, T0)


def test_a_new_escalation_on_a_case_being_handled_shows_the_case_as_open_again():
    taken = a.take(_alert("e1", level="AGENCY_REMINDER"), HAGUE, T0)
    climbed = _alert("e2", level="NATIONAL_COORDINATOR", fired=T0 + timedelta(days=1))
    card = cases.case_cards([taken, climbed], NATIONAL)[0]
    assert card.level == "NATIONAL_COORDINATOR" and card.state is a.AlertState.OPEN
    assert card.handler == "coord-gm0518"  # still shown: someone already works on it
    assert [x.escalation_id for x in cases.case_actions_for(card, "acknowledge")] == ["e2"]
    assert [x.escalation_id for x in cases.case_actions_for(card, "reassign")] == ["e2"]


def test_a_region_coordinator_sees_only_the_alerts_of_their_region():
    mine = _alert("e1")
    theirs = _alert("e2", region="GM0344", fired=T0 + timedelta(hours=1))
    assert [len(c.alerts) for c in cases.case_cards([mine, theirs], HAGUE)] == [1]
    assert [len(c.alerts) for c in cases.case_cards([mine, theirs], UTRECHT)] == [1]
    assert [len(c.alerts) for c in cases.case_cards([mine, theirs], NATIONAL)] == [2]


def test_filters_by_level_state_and_age_and_the_counts_per_level():
    old = _alert("e1", case="old", level="DISPUTE")
    young = replace(_alert("e2", case="young"), case_started_at=T0 - timedelta(hours=2))
    taken = a.take(_alert("e3", case="taken", level="AGENCY_REMINDER"), HAGUE, T0)
    cards = cases.case_cards([old, young, taken], HAGUE)
    assert [c.case_id for c in cards] == ["old", "young", "taken"]

    def shown(**choice):
        chosen = cases.CaseFilter.parse(choice.get("level", ""), choice.get("state", ""), choice.get("age", ""))
        return [c.case_id for c in cards if chosen.matches(c, T0)]

    assert shown(level="DISPUTE") == ["old"]
    assert shown(state="TAKEN") == ["taken"]
    assert shown(age="1d") == ["old", "taken"]
    assert shown(level="NO_SUCH_LEVEL", age="forever") == ["old", "young", "taken"]  # unknown values are ignored
    counts = cases.open_cases_per_level(cards, ["DISPUTE", "REGION_COORDINATOR", "AGENCY_REMINDER"])
    assert counts == {"DISPUTE": 1, "REGION_COORDINATOR": 1, "AGENCY_REMINDER": 1}


def test_the_timeline_merges_facts_escalations_and_actions_oldest_first():
    alert = a.take(_alert("e1", fired=T0), HAGUE, T0 + timedelta(hours=1))
    facts = [
        timeline.Entry(T0 - timedelta(days=2), timeline.REFERRAL, "REQUESTED", actor="agency-a"),
        timeline.Entry(T0 - timedelta(days=2), timeline.DECISION, "help_asked_here", region="GM0518"),
    ]
    dispute = timeline.DisputeRecord("e1", ("GM0518", "GM0344"), ())
    entries = timeline.case_timeline(facts, [alert], [dispute])
    assert [(e.kind, e.code) for e in entries] == [
        ("referral", "REQUESTED"),
        ("decision", "help_asked_here"),
        ("escalation", "not_answered"),
        ("action", "TAKEN"),
    ]
    assert entries[2].regions == ("GM0518", "GM0344") and entries[3].actor == "coord-gm0518"
