"""Property test: random commands by random actors never break the lifecycle rules."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from services.referral.domain import (
    ROLE_ACTIONS,
    SYSTEM_ACTOR,
    TRANSITIONS,
    Action,
    DeclineReason,
    DomainError,
    IllegalTransition,
    NotPermitted,
    Outcome,
    StaleVersion,
    allowed_actions,
    apply,
    can_read,
    check_invariants,
    role_of,
)
from tests.unit.referral.referral_testkit import (
    NEXT,
    NOT_CONSENTED,
    RECEIVER,
    SENDER,
    STRANGER,
    T0,
    THIRD,
    args_for,
    consent,
    open_,
)

ACTORS = [SENDER, RECEIVER, NEXT, THIRD, STRANGER, NOT_CONSENTED, SYSTEM_ACTOR]
AGENCIES = [a for a in ACTORS if a != SYSTEM_ACTOR]
maybe = st.none().__or__
CLOSING = {Action.CANCEL, Action.REPORT_CONTACT_LOST, Action.FAIL, Action.EXPIRE_CONSENT}


class ReferralLifecycle(RuleBasedStateMachine):
    @initialize(receiver=st.sampled_from([RECEIVER, NEXT, THIRD]))
    def open_referral(self, receiver):
        # A short consent, so runs also see it run out (EXPIRE_CONSENT, ConsentMissing).
        short = consent(valid_until=T0 + timedelta(days=30))
        self.referral = open_(receiver=receiver, consent=short)
        self.now = T0
        self.accepted = 0

    def _step(self, action, actor, version_offset, minutes, **kwargs):
        before = self.referral
        self.now += timedelta(minutes=minutes)
        allowed = allowed_actions(before, actor)
        try:
            after, event = apply(
                before,
                action=action,
                actor=actor,
                expected_version=before.version + version_offset,
                now=self.now,
                **kwargs,
            )
        except DomainError as refusal:
            # A refusal changes nothing (the referral is immutable; we keep `before`) and is
            # consistent with what allowed_actions promised.
            assert self.referral is before
            if before.is_terminal:
                expected = (IllegalTransition, NotPermitted, StaleVersion)
                assert isinstance(refusal, expected if version_offset else expected[:2]), refusal
            if version_offset and action in ROLE_ACTIONS[role_of(before, actor)]:
                assert isinstance(refusal, StaleVersion), refusal
            if not version_offset and isinstance(refusal, (IllegalTransition, NotPermitted)):
                # allowed_actions lists DECLINE for the holder for RECEIVER_UNREACHABLE only.
                other_reason = (
                    action is Action.DECLINE
                    and actor != before.addressee
                    and kwargs.get("decline_reason") is not DeclineReason.RECEIVER_UNREACHABLE
                )
                assert action not in allowed or other_reason, refusal
            return
        assert version_offset == 0, "a stale command was accepted"
        assert not before.is_terminal, "a terminal referral changed"
        assert action in allowed
        assert (before.status, action) in TRANSITIONS
        assert after.status is TRANSITIONS[(before.status, action)]
        assert after.version == before.version + 1
        assert after.history[:-1] == before.history
        assert (event.from_status, event.to_status) == (before.status, after.status)
        assert (event.version, event.actor, event.action) == (after.version, actor, action)
        # Responsibility only moves when the next receiver accepts, and then to that receiver.
        if after.holder != before.holder:
            assert action is Action.ACCEPT and actor == after.holder == after.receiver
            assert event.previous_holder == before.holder
        # Shown by --hypothesis-show-statistics: which transitions the runs exercised.
        note_event(
            f"{before.status.value} -{action.value}-> {after.status.value}"
            + (" (handover)" if before.in_handover or after.in_handover else "")
        )
        self.referral = after
        self.accepted += 1

    @rule(
        action=st.sampled_from(Action),
        actor=st.sampled_from(ACTORS),
        version_offset=st.sampled_from([0, 0, 0, 0, -1, 1]),
        minutes=st.integers(0, 60 * 24 * 20),
        decline_reason=maybe(st.sampled_from(DeclineReason)),
        outcome=maybe(st.sampled_from(Outcome)),
        new_receiver=maybe(st.sampled_from(ACTORS)),
    )
    def random_command(self, action, actor, version_offset, minutes, **kwargs):
        self._step(action, actor, version_offset, minutes, **kwargs)

    @rule(data=st.data(), minutes=st.integers(0, 60 * 24 * 3))
    def plausible_command(self, data, minutes):
        """Mostly-valid commands, so runs get deep into the lifecycle (handovers included)."""
        r = self.referral
        main = r.addressee or r.holder  # the party whose move it usually is
        actor = data.draw(st.sampled_from([main, main, main, r.sender, r.holder, SYSTEM_ACTOR]))
        options = sorted(allowed_actions(r, actor) - {Action.WITHDRAW_CONSENT})
        progress = [a for a in options if a not in CLOSING]
        # Close rarely, so that most runs get deep into the lifecycle and into handovers.
        if progress and data.draw(st.integers(0, 9)) > 0:
            options = progress
            if len(options) > 1 and Action.DECLINE in options and data.draw(st.booleans()):
                options.remove(Action.DECLINE)
        if not options:
            return
        action = data.draw(st.sampled_from(options))
        kwargs = args_for(action, new_receiver=data.draw(st.sampled_from(AGENCIES)))
        if action is Action.DECLINE:
            reasons = (
                [d for d in DeclineReason if d is not DeclineReason.RECEIVER_UNREACHABLE]
                if actor == r.addressee
                else [DeclineReason.RECEIVER_UNREACHABLE]
            )
            kwargs["decline_reason"] = data.draw(st.sampled_from(reasons))
        if action is Action.COMPLETE:
            kwargs["outcome"] = data.draw(st.sampled_from(Outcome))
        self._step(action, actor, 0, minutes, **kwargs)

    @invariant()
    def referral_is_in_a_legal_state(self):
        r = self.referral
        check_invariants(r)
        assert r.version == len(r.history)
        assert all(a.at <= b.at for a, b in zip(r.history, r.history[1:], strict=False))

    @invariant()
    def exactly_one_responsible_holder_who_is_never_stranded(self):
        r = self.referral
        responsible = [p for p in (r.sender, r.receiver) if p == r.holder]
        assert len(responsible) == 1
        assert r.pending_receiver != r.holder
        assert can_read(r, r.holder)
        if r.is_open:
            # The holder can always do something beyond withdrawing consent: nothing is dropped.
            assert allowed_actions(r, r.holder) - {Action.WITHDRAW_CONSENT}


ReferralLifecycle.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestReferralLifecycle = ReferralLifecycle.TestCase
