"""Changed binding facts on a referral: who may record them, when, and what that changes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from services.referral.domain import (
    ALL_EVENT_TYPES,
    FACTS_CHANGED_EVENT,
    Action,
    IllegalTransition,
    InvalidReferral,
    NotPermitted,
    StaleVersion,
    change_facts,
    check_invariants,
    referral_from_dict,
    referral_to_dict,
)
from services.referral.domain.binding import FactPeriod
from tests.unit.referral.referral_testkit import NEXT, RECEIVER, SENDER, STRANGER, T0, act, scenarios

GRONINGEN_HOME = [FactPeriod("GM0014", "2015-01-01", "2024-10-01")]


def change(referral, actor, **overrides):
    values = dict(
        actor=actor,
        expected_version=referral.version,
        now=referral.updated_at + timedelta(minutes=1),
        asked_in="GM0363",
        residence=GRONINGEN_HOME,
        grew_up_in=["GM0599"],
    )
    values.update(overrides)
    return change_facts(referral, **values)


@pytest.mark.parametrize(
    "name, actor",
    [
        ("requested", SENDER),  # the sender holds until a receiver accepts
        ("accepted", RECEIVER),  # the holder
        ("accepted", SENDER),  # the sender still knows the client
        ("declined", SENDER),
        ("handover_requested", RECEIVER),  # the holder during a warm handover
    ],
)
def test_the_sender_or_holder_records_changed_facts(name, actor):
    before = scenarios()[name]
    after, event = change(before, actor)
    assert after.version == before.version + 1 and after.status is before.status
    assert after.history == before.history and after.facts_changes == before.facts_changes + 1
    assert (after.holder, after.receiver, after.pending_receiver) == (
        before.holder,
        before.receiver,
        before.pending_receiver,
    )
    check_invariants(after)
    assert referral_from_dict(json.loads(json.dumps(referral_to_dict(after)))) == after
    assert event.event_type == FACTS_CHANGED_EVENT and FACTS_CHANGED_EVENT in ALL_EVENT_TYPES
    assert (event.action, event.from_status, event.to_status) == (None, before.status, before.status)
    assert event.version == after.version and event.event_id == f"{before.referral_id}:{after.version}"
    assert event.actor == actor and event.holder == before.holder and event.previous_holder is None
    assert event.languages == () and not event.handover


def test_the_lifecycle_goes_on_after_a_facts_change():
    changed, _ = change(scenarios()["received"], SENDER)
    accepted = act(changed, Action.ACCEPT, RECEIVER)
    assert accepted.version == changed.version + 1 == len(accepted.history) + 1
    check_invariants(accepted)


def test_a_stranger_learns_nothing():
    r = scenarios()["accepted"]
    with pytest.raises(NotPermitted) as refused:
        change(r, STRANGER, expected_version=99)  # checked before the version
    assert refused.value.details["party"] is False


@pytest.mark.parametrize(
    "name, actor",
    [
        ("requested", RECEIVER),  # asked, not holding
        ("handover_requested", NEXT),  # the handover target does not hold yet
    ],
)
def test_a_party_that_neither_sent_nor_holds_is_refused(name, actor):
    with pytest.raises(NotPermitted) as refused:
        change(scenarios()[name], actor)
    assert refused.value.details["party"] is True


@pytest.mark.parametrize("name", ["completed", "cancelled"])
def test_a_closed_referral_keeps_its_facts(name):
    r = scenarios()[name]
    assert r.is_terminal
    with pytest.raises(IllegalTransition):
        change(r, SENDER)


def test_a_stale_version_is_refused():
    r = scenarios()["accepted"]
    with pytest.raises(StaleVersion):
        change(r, RECEIVER, expected_version=r.version - 1)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"residence": [FactPeriod("Amsterdam <script>", "2015-01-01", "")]}, "facts.residence[0].municipality"),
        ({"work": [FactPeriod("GM0363", "first of May", "")]}, "facts.work[0].from_date"),
        ({"residence": [FactPeriod("GM0363", "2020-01-01", "2019-01-01")]}, "facts.residence[0].to_date"),
        ({"family_in": ["BSN 123456782"]}, "facts.family_in[0]"),
        (
            {"residence": [FactPeriod("GM0363", (T0 + timedelta(days=30)).date().isoformat(), "")]},
            "facts.residence[0].from_date",
        ),
    ],
)
def test_invalid_facts_are_named_never_echoed(overrides, field):
    r = scenarios()["accepted"]
    with pytest.raises(InvalidReferral) as refused:
        change(r, RECEIVER, **overrides)
    assert refused.value.field == field
    for typed in ("Amsterdam", "<script>", "first of May", "123456782"):
        assert typed not in str(refused.value)
