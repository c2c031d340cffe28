"""Lifecycle table, permissions, versions, codes and consent of the referral domain."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.referral.domain import (
    OPEN_STATUSES,
    ROLE_ACTIONS,
    SYSTEM_ACTOR,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Action,
    CancelReason,
    ConsentMissing,
    DeclineReason,
    IllegalTransition,
    InvalidCommand,
    InvalidReferral,
    NotPermitted,
    Outcome,
    Role,
    StaleVersion,
    Status,
    allowed_actions,
    apply,
    can_read,
    check_invariants,
    open_referral,
)
from tests.unit.referral.referral_testkit import (
    CONSENTED,
    NEXT,
    NOT_CONSENTED,
    RECEIVER,
    SENDER,
    STRANGER,
    T0,
    THIRD,
    act,
    args_for,
    canonical_actor,
    consent,
    open_,
    scenarios,
)

SCENARIOS = scenarios()
A = Action


def _now_for(referral, action):
    # EXPIRE_CONSENT is only accepted once consent has run out.
    if action is A.EXPIRE_CONSENT:
        return referral.consent.valid_until + timedelta(seconds=1)
    return referral.updated_at + timedelta(minutes=1)


# ----------------------------------------------------------------------------- the table


def test_table_shape():
    assert all(s in OPEN_STATUSES for s, _ in TRANSITIONS), "terminal states accept nothing"
    assert {Status.COMPLETED, Status.CANCELLED, Status.CONTACT_LOST, Status.FAILED} == TERMINAL_STATUSES
    reachable = {Status.REQUESTED, *TRANSITIONS.values()}
    assert reachable == set(Status)
    with pytest.raises(TypeError):
        TRANSITIONS[(Status.COMPLETED, A.START)] = Status.IN_PROGRESS  # read-only


LEGAL_TRANSITIONS = sorted(TRANSITIONS, key=lambda k: (k[0].value, k[1].value))


@pytest.mark.parametrize(
    "status,action",
    LEGAL_TRANSITIONS,
    ids=lambda v: v.value,
)
def test_every_legal_transition(status, action):
    """Every table entry can be performed by its canonical actor in some situation."""
    candidates = [r for r in SCENARIOS.values() if r.status is status]
    assert candidates, f"no scenario in {status}"
    done = []
    for referral in candidates:
        actor = canonical_actor(referral, action)
        if action not in allowed_actions(referral, actor):
            continue
        new, event = apply(
            referral,
            action=action,
            actor=actor,
            expected_version=referral.version,
            now=_now_for(referral, action),
            **args_for(action, new_receiver=THIRD),
        )
        assert new.status is TRANSITIONS[(status, action)]
        assert new.version == referral.version + 1
        assert new.history[-1].status is new.status and new.history[-1].action is action
        assert (event.from_status, event.to_status) == (status, new.status)
        assert event.version == new.version
        check_invariants(new)
        done.append(referral)
    assert done, f"{action} from {status} was possible in no scenario"


ILLEGAL = [
    (name, action) for name, r in SCENARIOS.items() for action in Action if (r.status, action) not in TRANSITIONS
]


@pytest.mark.parametrize("name,action", ILLEGAL, ids=[f"{n}-{a.value}" for n, a in ILLEGAL])
def test_everything_outside_the_table_is_illegal(name, action):
    referral = SCENARIOS[name]
    # Pick a party whose role may perform the action in principle, so the refusal is about
    # the lifecycle and not about permission.
    role_actor = {
        Role.SENDER: referral.sender,
        Role.RECEIVER: referral.receiver,
        Role.SYSTEM: SYSTEM_ACTOR,
    }
    actor = next(a for role, a in role_actor.items() if action in ROLE_ACTIONS[role])
    with pytest.raises(IllegalTransition) as err:
        apply(
            referral,
            action=action,
            actor=actor,
            expected_version=referral.version,
            now=_now_for(referral, action),
            **args_for(action, new_receiver=THIRD),
        )
    assert err.value.code == "ILLEGAL_TRANSITION"
    assert referral.status.value in str(err.value)


def test_terminal_states_accept_nothing_from_anyone():
    for name in ("completed", "failed", "cancelled", "contact_lost"):
        r = SCENARIOS[name]
        for actor in (SENDER, RECEIVER, NEXT, SYSTEM_ACTOR):
            assert allowed_actions(r, actor) == frozenset(), (name, actor)


# ----------------------------------------------------------------------------- permissions

NONE: frozenset = frozenset()
W = A.WITHDRAW_CONSENT
PERMISSIONS = {
    # scenario: {actor: allowed actions}
    "requested": {
        SENDER: {A.CANCEL, A.REPORT_CONTACT_LOST, W, A.DECLINE},  # DECLINE = receiver unreachable
        RECEIVER: {A.ACKNOWLEDGE, A.ACCEPT, A.DECLINE, W},
        STRANGER: NONE,
        SYSTEM_ACTOR: {W, A.EXPIRE_CONSENT, A.DECLINE},
    },
    "received": {
        SENDER: {A.CANCEL, A.REPORT_CONTACT_LOST, W, A.DECLINE},
        RECEIVER: {A.ACCEPT, A.DECLINE, W},
        STRANGER: NONE,
    },
    "accepted": {
        SENDER: {A.CANCEL, A.REPORT_CONTACT_LOST, W},
        RECEIVER: {A.START, A.FAIL, A.FORWARD, A.REPORT_CONTACT_LOST, W},
        STRANGER: NONE,
        SYSTEM_ACTOR: {W, A.EXPIRE_CONSENT},
    },
    "in_progress": {
        SENDER: {A.CANCEL, A.REPORT_CONTACT_LOST, W},
        RECEIVER: {A.COMPLETE, A.FAIL, A.FORWARD, A.REPORT_CONTACT_LOST, W},
        STRANGER: NONE,
    },
    "declined": {
        SENDER: {A.FORWARD, A.CANCEL, A.REPORT_CONTACT_LOST, W},
        RECEIVER: {W},  # the agency that declined has nothing left to do
        STRANGER: NONE,
    },
    "handover_requested": {
        SENDER: {A.CANCEL, A.REPORT_CONTACT_LOST, W},
        RECEIVER: {A.REPORT_CONTACT_LOST, W, A.DECLINE},  # holder; DECLINE = target silent
        NEXT: {A.ACKNOWLEDGE, A.ACCEPT, A.DECLINE, W},
        STRANGER: NONE,
    },
    "handover_refused": {
        SENDER: {A.CANCEL, A.REPORT_CONTACT_LOST, W},
        RECEIVER: {A.START, A.FAIL, A.FORWARD, A.REPORT_CONTACT_LOST, W},
        NEXT: NONE,  # refused: no longer a party
        STRANGER: NONE,
    },
}


@pytest.mark.parametrize("name,actor", [(n, a) for n, m in PERMISSIONS.items() for a in m], ids=lambda v: str(v))
def test_permission_matrix(name, actor):
    assert allowed_actions(SCENARIOS[name], actor) == frozenset(PERMISSIONS[name][actor])


@pytest.mark.parametrize("name", PERMISSIONS)
def test_allowed_actions_agree_with_apply(name):
    referral = SCENARIOS[name]
    for actor in (SENDER, RECEIVER, NEXT, THIRD, STRANGER, SYSTEM_ACTOR):
        for action in Action:
            kwargs = args_for(action, new_receiver=THIRD)
            if action is A.DECLINE and actor != referral.addressee:
                kwargs = {"decline_reason": DeclineReason.RECEIVER_UNREACHABLE}
            try:
                apply(
                    referral,
                    action=action,
                    actor=actor,
                    expected_version=referral.version,
                    now=_now_for(referral, action),
                    **kwargs,
                )
                accepted = True
            except (NotPermitted, IllegalTransition):
                accepted = False
            assert accepted == (action in allowed_actions(referral, actor)), (actor, action)


def test_stranger_is_refused_before_anything_is_revealed():
    r = SCENARIOS["accepted"]
    with pytest.raises(NotPermitted) as err:
        apply(r, action=A.START, actor=STRANGER, expected_version=99, now=T0)
    assert err.value.details["party"] is False  # adapter answers NOT_FOUND
    assert "not a party" in str(err.value)


@pytest.mark.parametrize(
    "name,actor,action",
    [
        ("requested", SENDER, A.ACCEPT),
        ("requested", RECEIVER, A.CANCEL),
        ("accepted", SENDER, A.START),
        ("in_progress", SENDER, A.COMPLETE),
        ("handover_requested", RECEIVER, A.ACCEPT),  # only the target answers a handover
        ("handover_refused", SENDER, A.FORWARD),  # the receiver holds it, not the sender
        ("requested", RECEIVER, A.REPORT_CONTACT_LOST),  # not accepted: decline instead
        ("declined", RECEIVER, A.START),
        ("requested", SYSTEM_ACTOR, A.CANCEL),
    ],
)
def test_not_permitted(name, actor, action):
    r = SCENARIOS[name]
    with pytest.raises(NotPermitted):
        apply(
            r,
            action=action,
            actor=actor,
            expected_version=r.version,
            now=_now_for(r, action),
            **args_for(action, new_receiver=THIRD),
        )


def test_can_read():
    r = SCENARIOS["handover_requested"]
    assert all(can_read(r, a) for a in (SENDER, RECEIVER, NEXT))
    assert not can_read(r, STRANGER)
    assert not can_read(r, SYSTEM_ACTOR)
    assert not can_read(SCENARIOS["re_requested"], RECEIVER)  # decliner replaced
    assert can_read(SCENARIOS["re_requested"], THIRD)


# ----------------------------------------------------------------------------- versions


def test_stale_version_is_refused_and_changes_nothing():
    r = SCENARIOS["requested"]
    before = r
    for wrong in (0, 2, 99):
        with pytest.raises(StaleVersion) as err:
            apply(r, action=A.ACCEPT, actor=RECEIVER, expected_version=wrong, now=T0)
        assert err.value.details == {"referral_id": r.referral_id, "expected": wrong, "actual": 1}
    assert r == before


def test_two_concurrent_writers_one_wins():
    r = SCENARIOS["requested"]
    accepted = act(r, A.ACCEPT, RECEIVER)
    with pytest.raises(StaleVersion):  # the sender acted on the version it had read
        apply(accepted, action=A.CANCEL, actor=SENDER, expected_version=r.version, now=T0)


def test_version_must_be_an_integer():
    r = SCENARIOS["requested"]
    with pytest.raises(InvalidCommand):
        apply(r, action=A.ACCEPT, actor=RECEIVER, expected_version="1", now=T0)


# ----------------------------------------------------------------------------- codes


def test_decline_requires_reason():
    r = SCENARIOS["received"]
    with pytest.raises(InvalidCommand) as err:
        act(r, A.DECLINE, RECEIVER)
    assert err.value.field == "decline_reason"


def test_complete_requires_outcome():
    with pytest.raises(InvalidCommand) as err:
        act(SCENARIOS["in_progress"], A.COMPLETE, RECEIVER)
    assert err.value.field == "outcome"


def test_fail_requires_an_unsuccessful_outcome():
    r = SCENARIOS["in_progress"]
    with pytest.raises(InvalidCommand):
        act(r, A.FAIL, RECEIVER)
    with pytest.raises(InvalidCommand):
        act(r, A.FAIL, RECEIVER, outcome=Outcome.HELPED)
    assert act(r, A.FAIL, RECEIVER, outcome="NOT_ELIGIBLE").outcome is Outcome.NOT_ELIGIBLE


def test_codes_accept_strings_and_refuse_unknown_codes():
    r = SCENARIOS["received"]
    declined = act(r, "DECLINE", RECEIVER, decline_reason="NO_CAPACITY")
    assert declined.decline_reason is DeclineReason.NO_CAPACITY
    with pytest.raises(InvalidCommand) as err:
        act(r, A.DECLINE, RECEIVER, decline_reason="too busy, call Maria")  # free text
    assert err.value.field == "decline_reason"
    with pytest.raises(InvalidCommand) as err:
        act(r, "TELEPORT", RECEIVER)
    assert err.value.field == "action"


@pytest.mark.parametrize(
    "action,extra",
    [
        (A.ACCEPT, {"decline_reason": "NO_CAPACITY"}),
        (A.ACCEPT, {"outcome": "HELPED"}),
        (A.ACKNOWLEDGE, {"new_receiver": NEXT}),
        (A.DECLINE, {"decline_reason": "OTHER", "outcome": "HELPED"}),
    ],
)
def test_superfluous_arguments_are_refused(action, extra):
    with pytest.raises(InvalidCommand):
        act(SCENARIOS["requested"], action, RECEIVER, **extra)


def test_receiver_cannot_call_itself_unreachable():
    with pytest.raises(InvalidCommand):
        act(SCENARIOS["requested"], A.DECLINE, RECEIVER, decline_reason="RECEIVER_UNREACHABLE")


def test_sender_may_only_record_receiver_unreachable():
    r = SCENARIOS["requested"]
    with pytest.raises(NotPermitted):
        act(r, A.DECLINE, SENDER, decline_reason=DeclineReason.NO_CAPACITY)
    declined = act(r, A.DECLINE, SENDER, decline_reason=DeclineReason.RECEIVER_UNREACHABLE)
    assert declined.status is Status.DECLINED and declined.holder == SENDER
    nxt = act(declined, A.FORWARD, SENDER, new_receiver=THIRD)
    assert (nxt.status, nxt.receiver, nxt.decline_reason) == (Status.REQUESTED, THIRD, None)


def test_naive_datetime_is_refused():
    r = SCENARIOS["requested"]
    with pytest.raises(InvalidCommand) as err:
        apply(r, action=A.ACCEPT, actor=RECEIVER, expected_version=1, now=T0.replace(tzinfo=None))
    assert err.value.field == "now"


@pytest.mark.parametrize(
    "action,cancel_reason,actor",
    [
        (A.CANCEL, CancelReason.BY_SENDER, SENDER),
        (A.WITHDRAW_CONSENT, CancelReason.CONSENT_WITHDRAWN, SENDER),
        (A.WITHDRAW_CONSENT, CancelReason.CONSENT_WITHDRAWN, SYSTEM_ACTOR),
        (A.WITHDRAW_CONSENT, CancelReason.CONSENT_WITHDRAWN, RECEIVER),
    ],
)
def test_cancel_reasons(action, cancel_reason, actor):
    r = act(SCENARIOS["in_progress"], action, actor)
    assert (r.status, r.cancel_reason) == (Status.CANCELLED, cancel_reason)
    if action is A.WITHDRAW_CONSENT:
        assert r.consent.withdrawn_at == r.updated_at


def test_consent_expiry_is_recorded_by_the_system_only_after_expiry():
    r = SCENARIOS["in_progress"]
    with pytest.raises(InvalidCommand):
        act(r, A.EXPIRE_CONSENT, SYSTEM_ACTOR)
    late = r.consent.valid_until
    expired = act(r, A.EXPIRE_CONSENT, SYSTEM_ACTOR, now=late)
    assert expired.status is Status.CANCELLED
    assert expired.cancel_reason is CancelReason.CONSENT_EXPIRED


# ----------------------------------------------------------------------------- consent


def test_open_refuses_expired_consent():
    with pytest.raises(ConsentMissing, match="expired"):
        open_(consent=consent(valid_until=T0))


def test_open_refuses_withdrawn_consent():
    with pytest.raises(ConsentMissing, match="withdrew"):
        open_(consent=consent(withdrawn_at=T0 - timedelta(days=1)))


def test_open_refuses_consent_not_covering_receiver():
    with pytest.raises(ConsentMissing, match=NOT_CONSENTED) as err:
        open_(receiver=NOT_CONSENTED)
    assert err.value.details["agency"] == NOT_CONSENTED


def test_open_refuses_consent_for_another_purpose():
    with pytest.raises(ConsentMissing, match="purpose"):
        open_(consent=consent(purpose="CASE_COORDINATION"))


def test_consent_withdrawn_in_the_future_still_covers_now():
    assert open_(consent=consent(withdrawn_at=T0 + timedelta(hours=1))).status is Status.REQUESTED


def test_forward_to_an_organisation_without_consent_is_refused():
    with pytest.raises(ConsentMissing):
        act(SCENARIOS["in_progress"], A.FORWARD, RECEIVER, new_receiver=NOT_CONSENTED)


def test_work_needs_consent_but_closing_the_loop_does_not():
    r = SCENARIOS["accepted"]
    late = r.consent.valid_until + timedelta(days=1)
    with pytest.raises(ConsentMissing):
        act(r, A.START, RECEIVER, now=late)
    with pytest.raises(ConsentMissing):
        act(SCENARIOS["requested"], A.ACCEPT, RECEIVER, now=late)
    done = act(SCENARIOS["in_progress"], A.COMPLETE, RECEIVER, outcome="PARTLY_HELPED", now=late)
    assert done.status is Status.COMPLETED


# ----------------------------------------------------------------------------- opening


def test_open_referral_result_and_event():
    r, event = open_referral(
        referral_id="ref-1",
        case_id="case-1",
        sender=SENDER,
        receiver=RECEIVER,
        need_domains=["safety", "shelter", "safety"],
        urgency="NORMAL",
        languages=["es", "nl"],
        consent=consent(),
        purpose="REFERRAL",
        now=T0,
    )
    assert (r.status, r.version) == (Status.REQUESTED, 1)
    assert (r.holder, r.pending_receiver) == (SENDER, None)
    assert [d.value for d in r.need_domains] == ["shelter", "safety"]  # canonical, deduplicated
    assert r.languages == ("es", "nl")  # the client's order of preference
    assert r.created_at == r.updated_at == T0 and len(r.history) == 1
    assert event.event_type == "ReferralRequested" and event.from_status is None
    assert (event.version, event.addressee, event.holder) == (1, RECEIVER, SENDER)
    check_invariants(r)


@pytest.mark.parametrize(
    "field,value",
    [
        ("referral_id", ""),
        ("referral_id", "has spaces in it"),
        ("case_id", None),
        ("sender", "Central Amsterdam"),
        ("sender", "system"),
        ("receiver", ""),
        ("receiver", SENDER),
        ("need_domains", []),
        ("need_domains", ["shelter", "crime"]),
        ("need_domains", "shelter"),
        ("urgency", "VERY"),
        ("languages", []),
        ("languages", ["romanian"]),
        ("purpose", "marketing"),
        ("consent", None),
        ("now", T0.replace(tzinfo=None)),
    ],
)
def test_open_refuses_invalid_fields_naming_them(field, value):
    with pytest.raises(InvalidReferral) as err:
        open_(**{field: value})
    assert err.value.field == field
    assert err.value.code == "INVALID_REFERRAL" and err.value.grpc_status == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"organisations": frozenset()}, "consent.organisations"),
        ({"organisations": ["Not A Slug"]}, "consent.organisations"),
        ({"purpose": "free text purpose"}, "consent.purpose"),
        ({"valid_until": T0.replace(tzinfo=None)}, "consent.valid_until"),
    ],
)
def test_consent_itself_is_validated(overrides, field):
    with pytest.raises(InvalidReferral) as err:
        consent(**overrides)
    assert err.value.field == field


def test_consent_covers():
    c = consent()
    assert c.covers(RECEIVER, "REFERRAL", T0)
    assert not c.covers(RECEIVER, "REFERRAL", c.valid_until)  # valid_until is exclusive
    assert not c.covers(NOT_CONSENTED, "REFERRAL", T0)
    assert c.organisations == CONSENTED


MARKER = "Maria-Jansen-0612345678"


@pytest.mark.parametrize(
    "field,value",
    [
        ("sender", MARKER),
        ("receiver", MARKER),
        ("need_domains", [MARKER]),
        ("urgency", MARKER),
        ("languages", [MARKER]),
        ("purpose", MARKER),
    ],
)
def test_a_refusal_never_repeats_what_the_caller_typed(field, value):
    """Refusals reach logs and spans; a caller may have typed a name or a number anywhere."""
    with pytest.raises(InvalidReferral) as err:
        open_(**{field: value})
    assert MARKER not in str(err.value) and MARKER not in repr(err.value.details)
