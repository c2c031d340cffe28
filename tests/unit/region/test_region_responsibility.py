"""When responsibility moves: table tests and hypothesis properties of the pure state machine."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.region.domain.responsibility import (
    COORDINATOR_OVERRIDE,
    HANDOVER_ACCEPTED,
    HANDOVER_REFUSED,
    OVERRIDE_LIFTED,
    CaseState,
    HandoverAccepted,
    HandoverRefused,
    NotYetResponsible,
    OverrideLifted,
    OverrideSet,
    Redecide,
    propose,
    step,
)

AMS, RTM, GRO, UTR = "GM0363", "GM0599", "GM0014", "GM0344"


def opened(region=AMS, proposed=None) -> CaseState:
    return step(CaseState(), Redecide("ReferralRequested", region, proposed)).after


def test_first_referral_makes_the_asked_in_region_responsible_and_records_the_proposal():
    s = step(CaseState(), Redecide("ReferralRequested", AMS, GRO))
    assert (s.after.responsible, s.after.proposed, s.rule, s.emit) == (AMS, GRO, None, True)


def test_a_second_request_never_moves_responsibility():
    s = step(opened(AMS), Redecide("ReferralRequested", RTM, None))
    assert s.after.responsible == AMS and not s.moved


def test_accept_by_an_agency_of_the_proposed_region_moves_responsibility():
    s = step(opened(AMS, GRO), HandoverAccepted(frozenset({GRO})))
    assert (s.after.responsible, s.rule, s.moved, s.after.proposed) == (GRO, HANDOVER_ACCEPTED, True, None)


def test_accept_by_an_agency_elsewhere_moves_nothing_and_emits_nothing():
    s = step(opened(AMS, GRO), HandoverAccepted(frozenset({RTM, UTR})))
    assert s.after == s.before and not s.emit


def test_accept_without_a_proposal_moves_nothing():
    s = step(opened(AMS, None), HandoverAccepted(frozenset({AMS, GRO})))
    assert not s.moved and not s.emit


def test_a_refused_handover_keeps_responsibility_and_names_the_rule():
    s = step(opened(AMS, GRO), HandoverRefused())
    assert (s.after.responsible, s.rule, s.after.proposed) == (AMS, HANDOVER_REFUSED, GRO)


def test_override_wins_until_lifted_and_an_accept_meanwhile_shows_after_the_lift():
    state = step(opened(AMS, GRO), OverrideSet(UTR, "dispute_settled")).after
    assert state.responsible == UTR
    s = step(state, HandoverAccepted(frozenset({GRO})))
    assert s.after.responsible == UTR and s.rule == COORDINATOR_OVERRIDE
    s = step(step(s.after, Redecide("ReferralDeclined", AMS, None)).after, OverrideLifted())
    assert (s.after.responsible, s.rule) == (GRO, OVERRIDE_LIFTED)


def test_lifting_nothing_emits_nothing():
    s = step(opened(), OverrideLifted())
    assert not s.emit and s.after == s.before


def test_an_override_can_open_a_case_and_survives_a_lift():
    s = step(step(CaseState(), OverrideSet(RTM, "r")).after, OverrideLifted())
    assert s.after.responsible == RTM


@pytest.mark.parametrize("trigger", [HandoverAccepted(frozenset({AMS})), HandoverRefused(), OverrideLifted()])
def test_a_case_cannot_start_with_an_accept_refusal_or_lift(trigger):
    with pytest.raises(NotYetResponsible):
        step(CaseState(), trigger)


def test_state_round_trips_through_a_plain_dict():
    state = propose(step(opened(AMS, GRO), OverrideSet(UTR, "x")).after, RTM)
    assert CaseState.from_dict(state.to_dict()) == state
    assert CaseState.from_dict({}) == CaseState()


# --------------------------------------------------------------------------- properties

regions = st.sampled_from([AMS, RTM, GRO, UTR, "GM0518", "GM0772"])
maybe_region = st.none() | regions
triggers = st.one_of(
    st.builds(
        Redecide,
        st.sampled_from(["ReferralRequested", "ReferralDeclined", "ReferralForwarded", "facts_changed"]),
        regions,
        maybe_region,
    ),
    st.builds(HandoverAccepted, st.frozensets(regions, max_size=3)),
    st.just(HandoverRefused()),
    st.builds(OverrideSet, regions, st.sampled_from(["dispute_settled", "capacity"])),
    st.builds(OverrideLifted),
)


@settings(max_examples=400)
@given(
    first=st.builds(Redecide, st.just("ReferralRequested"), regions, maybe_region)
    | st.builds(OverrideSet, regions, st.just("r")),
    rest=st.lists(triggers, max_size=30),
    proposals=st.lists(maybe_region, min_size=31, max_size=31),
)
def test_exactly_one_responsible_region_and_moves_only_by_accepted_handover_or_override(first, rest, proposals):
    state = CaseState()
    for i, trigger in enumerate([first, *rest]):
        s = step(state, trigger)
        # Exactly one responsible region at every moment after the first event.
        assert isinstance(s.after.responsible, str) and s.after.responsible
        if s.moved and state.known:
            if state.provisional and isinstance(trigger, Redecide):
                # A case first seen through an override: its first referral event names the
                # region where help was asked, underneath (the override, if in force, still wins).
                assert s.after.base_region == trigger.first_region and not s.after.provisional
            elif isinstance(trigger, HandoverAccepted):
                assert state.override is None and state.proposed in trigger.acceptor_regions
                assert s.rule == HANDOVER_ACCEPTED and s.after.responsible == state.proposed
            else:
                assert isinstance(trigger, (OverrideSet, OverrideLifted)), trigger
                assert s.rule in (COORDINATOR_OVERRIDE, OVERRIDE_LIFTED)
        if isinstance(trigger, (Redecide, HandoverRefused)) and state.known and not state.provisional:
            assert not s.moved
        if state.override is not None and not isinstance(trigger, OverrideLifted):
            assert s.after.responsible == s.after.override.region
        # The adapter then records the resolver's proposal for the region now responsible.
        state = propose(s.after, proposals[i]) if s.emit else s.after
        assert state.responsible == s.after.responsible
        assert CaseState.from_dict(state.to_dict()) == state


@given(rest=st.lists(triggers, max_size=20))
def test_deterministic(rest):
    def run():
        state, rules = opened(), []
        for trigger in rest:
            s = step(state, trigger)
            state, rules = s.after, rules + [s.rule]
        return state, rules

    assert run() == run()


referral_triggers = st.one_of(
    st.builds(Redecide, st.sampled_from(["ReferralDeclined", "ReferralForwarded"]), regions, maybe_region),
    st.builds(HandoverAccepted, st.frozensets(regions, max_size=3)),
    st.just(HandoverRefused()),
)
override_triggers = st.one_of(
    st.builds(OverrideSet, regions, st.sampled_from(["dispute_settled", "capacity"])),
    st.builds(OverrideLifted),
)


@settings(max_examples=300)
@given(
    opening=st.builds(Redecide, st.just("ReferralRequested"), regions, maybe_region),
    referral_events=st.lists(referral_triggers, max_size=8),
    overrides=st.lists(override_triggers, min_size=1, max_size=4),
    interleaving=st.randoms(use_true_random=False),
)
def test_the_outcome_does_not_depend_on_how_the_two_topics_interleave(
    opening, referral_events, overrides, interleaving
):
    """Referral events and overrides travel on two topics: each stream keeps its own order, but
    the worker may read them interleaved in any way. The case ends in the same state."""

    def final_state(order):
        state = CaseState()
        for trigger in order:
            try:
                state = step(state, trigger).after
            except NotYetResponsible:  # a lift before anything opened the case: nothing to lift
                continue
        return state

    referral_stream, override_stream = [opening, *referral_events], list(overrides)
    merged = []
    while referral_stream or override_stream:
        source = interleaving.choice([stream for stream in (referral_stream, override_stream) if stream])
        merged.append(source.pop(0))

    assert final_state(merged) == final_state([opening, *referral_events, *overrides])
