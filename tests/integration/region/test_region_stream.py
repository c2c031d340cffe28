"""The region worker on a real broker: warm handover, override, idempotence, dead letters."""

from __future__ import annotations

import pytest

from meshkernel.topics import OVERRIDES, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2
from tests.integration.region.region_stream_kit import AMSTERDAM, GRONINGEN, ROTTERDAM, UTRECHT, new_case, summary

pytestmark = pytest.mark.kafka


def test_decline_forward_and_accepted_handover_move_responsibility_only_on_accept(mesh, region_worker):
    case = new_case()
    requested = mesh.referral(
        case,
        "ReferralRequested",
        version=1,
        sender="central-amsterdam",
        receiver="shelter-amsterdam",
        holder="central-amsterdam",
    )
    first = mesh.wait_assignments(case, 1)[0]
    assert summary(first) == ("ReferralRequested", AMSTERDAM, "handover_to_better_bound_region", GRONINGEN)
    assert first.assignment.caused_by_event_id == requested.event_id
    assert set(first.assignment.explanation) == {"nl", "en"}  # the case's language, and Dutch

    # Amsterdam's shelter accepts: holder moves, but not to the proposed region -> nothing to decide.
    mesh.referral(
        case,
        "ReferralAccepted",
        version=2,
        sender="central-amsterdam",
        receiver="shelter-amsterdam",
        holder="shelter-amsterdam",
        previous_holder="central-amsterdam",
    )
    # The shelter asks Groningen to take over (warm handover); Groningen refuses.
    mesh.referral(
        case,
        "ReferralForwarded",
        version=3,
        receiver="shelter-amsterdam",
        pending_receiver="shelter-groningen",
        holder="shelter-amsterdam",
        handover=True,
    )
    mesh.referral(
        case,
        "ReferralDeclined",
        version=4,
        receiver="shelter-amsterdam",
        holder="shelter-amsterdam",
        handover=True,
        actor="shelter-groningen",
        decline_reason=common_pb2.NO_CAPACITY,
    )
    # Asked again, Groningen's central desk accepts: responsibility moves now, and only now.
    mesh.referral(
        case,
        "ReferralForwarded",
        version=5,
        receiver="shelter-amsterdam",
        pending_receiver="central-groningen",
        holder="shelter-amsterdam",
        handover=True,
    )
    mesh.referral(
        case,
        "ReferralAccepted",
        version=6,
        receiver="central-groningen",
        holder="central-groningen",
        previous_holder="shelter-amsterdam",
        handover=True,
        actor="central-groningen",
    )
    found = mesh.wait_assignments(case, 5)
    assert [summary(a)[:3] for a in found] == [
        ("ReferralRequested", AMSTERDAM, "handover_to_better_bound_region"),
        ("ReferralForwarded", AMSTERDAM, "handover_to_better_bound_region"),
        ("ReferralDeclined", AMSTERDAM, "handover_refused"),
        ("ReferralForwarded", AMSTERDAM, "handover_to_better_bound_region"),
        ("ReferralAccepted", GRONINGEN, "handover_accepted"),
    ]
    moved = found[-1].assignment
    assert (moved.previous_region, moved.handover_to) == (AMSTERDAM, "")
    assert set(moved.explanation) == {"nl", "en"}

    # Redelivered events (same event ids) emit nothing new: the worker may send the recorded
    # assignment again (it cannot tell a redelivery after a crash from a duplicate), but only
    # under the same id with the same bytes, which receivers drop.
    mesh.send(REFERRAL_EVENTS, requested)
    mesh.referral(
        case,
        "ReferralAccepted",
        version=6,
        receiver="central-groningen",
        holder="central-groningen",
        previous_holder="shelter-amsterdam",
        handover=True,
        actor="central-groningen",
    )
    mesh.settle(3)
    again = mesh.assignments[case]
    by_id: dict[str, set[bytes]] = {}
    for a in again:
        by_id.setdefault(a.event_id, set()).add(a.assignment.SerializeToString(deterministic=True))
    assert len(by_id) == 5, [summary(a) for a in again]
    assert all(len(payloads) == 1 for payloads in by_id.values())
    stack, _config = region_worker
    assert not stack.crashed()


def test_a_coordinator_override_wins_until_lifted_in_whatever_order_the_topics_are_read(mesh):
    # Overrides and referral events travel on two topics, so the worker may read them in either
    # order: everything is sent at once, and the outcome must not depend on the interleaving.
    case = new_case()
    mesh.referral(
        case,
        "ReferralRequested",
        version=1,
        asked_in="GM0599",
        facts=common_pb2.BindingFacts(),
        sender="central-rotterdam",
        receiver="care-rotterdam",
        holder="central-rotterdam",
    )
    mesh.override(case, region=UTRECHT, reason_code="dispute_settled")
    mesh.referral(
        case,
        "ReferralDeclined",
        version=2,
        asked_in="GM0599",
        facts=common_pb2.BindingFacts(),
        sender="central-rotterdam",
        receiver="care-rotterdam",
        holder="central-rotterdam",
        decline_reason=common_pb2.NO_CAPACITY,
    )
    mesh.override(case, lift=True, reason_code="dispute_closed")

    found = mesh.wait_assignments(case, 4)

    assert sorted(a.assignment.trigger for a in found) == [
        "CoordinatorOverride",
        "CoordinatorOverrideLifted",
        "ReferralDeclined",
        "ReferralRequested",
    ]
    [overridden] = [a.assignment for a in found if a.assignment.trigger == "CoordinatorOverride"]
    assert (overridden.responsible_region, overridden.rule, overridden.reason_code) == (
        UTRECHT,
        "coordinator_override",
        "dispute_settled",
    )
    [lifted] = [a.assignment for a in found if a.assignment.trigger == "CoordinatorOverrideLifted"]
    assert lifted.previous_region == UTRECHT
    assert found[-1].assignment.responsible_region == ROTTERDAM  # help was asked there; the override is gone


@pytest.mark.parametrize(
    "produce, reason_part",
    [
        (lambda mesh, case: mesh.referral(case, "ReferralRequested", asked_in="GM9999"), "asked_in"),
        (
            lambda mesh, case: mesh.referral(
                case,
                "ReferralRequested",
                facts=common_pb2.BindingFacts(
                    residence=[
                        common_pb2.Period(
                            municipality="GM0014", from_date="2020-01-01", to_date="2019-01-01", registered=True
                        )
                    ]
                ),
            ),
            "facts.residence[0].to",
        ),
        (lambda mesh, case: mesh.referral(case, "ReferralRequested", asked_in=""), "asked_in"),
        (lambda mesh, case: mesh.override(case, region="GM1234"), "override.region"),
        (lambda mesh, case: mesh.override(case, lift=True), "nothing to lift"),
    ],
)
def test_bad_events_are_dead_lettered_with_the_reason_and_the_worker_goes_on(mesh, region_worker, produce, reason_part):
    case = new_case()
    produce(mesh, case)
    letter = mesh.wait_dead_letter(lambda letter: letter.key == case.encode())
    assert reason_part in letter.reason and letter.consumer == "region"
    assert letter.source_topic in {mesh.config.topic(REFERRAL_EVENTS.base_name), mesh.config.topic(OVERRIDES.base_name)}
    # ...and the next good event of another case is decided as usual.
    other = new_case()
    mesh.referral(other, "ReferralRequested")
    assert summary(mesh.wait_assignments(other, 1)[0])[1] == AMSTERDAM
    assert case not in mesh.assignments
    stack, _config = region_worker
    assert not stack.crashed()
