"""Warm handover: the holder stays responsible until the next receiver accepts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.referral.domain import (
    SYSTEM_ACTOR,
    Action,
    DeclineReason,
    InvalidCommand,
    NotPermitted,
    Outcome,
    Status,
    apply,
    can_read,
    check_invariants,
)
from tests.unit.referral.referral_testkit import NEXT, RECEIVER, SENDER, THIRD, act, scenarios

A = Action


@pytest.fixture
def working():
    return scenarios()["in_progress"]


def _apply(r, action, actor, **kw):
    return apply(
        r, action=action, actor=actor, expected_version=r.version, now=r.updated_at + timedelta(minutes=1), **kw
    )


def test_forward_keeps_the_holder_until_the_next_receiver_accepts(working):
    asked, event = _apply(working, A.FORWARD, RECEIVER, new_receiver=NEXT)
    assert asked.status is Status.REQUESTED
    assert (asked.receiver, asked.pending_receiver, asked.holder) == (RECEIVER, NEXT, RECEIVER)
    assert event.event_type == "ReferralForwarded" and event.handover
    assert (event.addressee, event.previous_holder) == (NEXT, None)
    assert event.languages == working.languages  # the target needs them to match
    for party in (SENDER, RECEIVER, NEXT):
        assert can_read(asked, party)

    received = act(asked, A.ACKNOWLEDGE, NEXT)
    assert (received.status, received.holder) == (Status.RECEIVED, RECEIVER)

    taken, event = _apply(received, A.ACCEPT, NEXT)
    assert taken.status is Status.ACCEPTED
    assert (taken.receiver, taken.pending_receiver, taken.holder) == (NEXT, None, NEXT)
    assert event.handover and event.previous_holder == RECEIVER and event.holder == NEXT
    assert not can_read(taken, RECEIVER), "the previous holder is off the referral"
    with pytest.raises(NotPermitted):
        act(taken, A.COMPLETE, RECEIVER, outcome=Outcome.HELPED)
    done = act(act(taken, A.START, NEXT), A.COMPLETE, NEXT, outcome=Outcome.HELPED)
    assert done.status is Status.COMPLETED and can_read(done, SENDER)
    check_invariants(done)


def test_refused_handover_leaves_the_referral_with_the_previous_holder(working):
    asked = act(working, A.FORWARD, RECEIVER, new_receiver=NEXT)
    refused, event = _apply(asked, A.DECLINE, NEXT, decline_reason=DeclineReason.NOT_ELIGIBLE)
    assert refused.status is Status.DECLINED
    assert (refused.receiver, refused.pending_receiver) == (RECEIVER, None)
    assert refused.holder == RECEIVER
    assert refused.decline_reason is DeclineReason.NOT_ELIGIBLE
    assert event.refused_handover and event.previous_holder is None
    assert not can_read(refused, NEXT)
    check_invariants(refused)

    # The holder carries on ...
    resumed = act(refused, A.START, RECEIVER)
    assert (resumed.status, resumed.holder, resumed.decline_reason) == (
        Status.IN_PROGRESS,
        RECEIVER,
        None,
    )
    # ... or tries another agency, which can take it over.
    retry = act(refused, A.FORWARD, RECEIVER, new_receiver=THIRD)
    taken = act(retry, A.ACCEPT, THIRD)
    assert (taken.holder, taken.receiver) == (THIRD, THIRD)


def test_the_same_target_can_be_asked_again_after_refusing(working):
    refused = act(
        act(working, A.FORWARD, RECEIVER, new_receiver=NEXT), A.DECLINE, NEXT, decline_reason=DeclineReason.NO_CAPACITY
    )
    again = act(refused, A.FORWARD, RECEIVER, new_receiver=NEXT)
    assert again.pending_receiver == NEXT


def test_holder_or_system_can_free_a_handover_from_a_silent_target(working):
    asked = act(working, A.FORWARD, RECEIVER, new_receiver=NEXT)
    for actor in (RECEIVER, SYSTEM_ACTOR):
        freed = act(asked, A.DECLINE, actor, decline_reason=DeclineReason.RECEIVER_UNREACHABLE)
        assert (freed.status, freed.holder, freed.pending_receiver) == (
            Status.DECLINED,
            RECEIVER,
            None,
        )
    with pytest.raises(NotPermitted):  # other reasons are the target's own call
        act(asked, A.DECLINE, RECEIVER, decline_reason=DeclineReason.NO_CAPACITY)
    with pytest.raises(NotPermitted):  # the sender is not the holder any more
        act(asked, A.DECLINE, SENDER, decline_reason=DeclineReason.RECEIVER_UNREACHABLE)


def test_holder_can_report_contact_lost_during_a_handover(working):
    asked = act(working, A.FORWARD, RECEIVER, new_receiver=NEXT)
    lost = act(asked, A.REPORT_CONTACT_LOST, RECEIVER)
    assert lost.status is Status.CONTACT_LOST
    assert can_read(lost, NEXT), "the target keeps seeing how the request ended"
    assert act(asked, A.CANCEL, SENDER).pending_receiver == NEXT


def test_sender_forwards_to_the_next_receiver_after_a_decline():
    declined = scenarios()["declined"]
    assert declined.holder == SENDER
    nxt, event = _apply(declined, A.FORWARD, SENDER, new_receiver=THIRD)
    assert (nxt.status, nxt.receiver, nxt.pending_receiver, nxt.holder) == (
        Status.REQUESTED,
        THIRD,
        None,
        SENDER,
    )
    assert not event.handover and event.addressee == THIRD
    assert not can_read(nxt, RECEIVER), "the agency that declined is no longer a party"
    # The sender may ask the same agency again later (e.g. capacity came free).
    again = act(act(nxt, A.DECLINE, THIRD, decline_reason="NO_CAPACITY"), A.FORWARD, SENDER, new_receiver=RECEIVER)
    assert again.receiver == RECEIVER


@pytest.mark.parametrize("target", [SENDER, RECEIVER, "Not A Slug", SYSTEM_ACTOR])
def test_forward_target_must_be_a_third_agency(working, target):
    with pytest.raises(InvalidCommand) as err:
        act(working, A.FORWARD, RECEIVER, new_receiver=target)
    assert err.value.field == "new_receiver"


def test_forward_needs_a_target(working):
    with pytest.raises(InvalidCommand):
        act(working, A.FORWARD, RECEIVER)


def test_a_long_chain_of_handovers_never_loses_the_holder(working):
    r = working
    chain = [NEXT, THIRD, RECEIVER, NEXT]
    holder = RECEIVER
    for target in chain:
        r = act(r, A.FORWARD, holder, new_receiver=target)
        r = act(r, A.DECLINE, target, decline_reason="NO_CAPACITY")
        assert r.holder == holder
        r = act(r, A.FORWARD, holder, new_receiver=target)
        r = act(r, A.ACCEPT, target)
        assert r.holder == target
        holder = target
        r = act(r, A.START, holder)
        check_invariants(r)
    assert r.version == len(r.history) == working.version + 5 * len(chain)
