"""Changed facts (ReferralFactsChanged) make the region worker decide again: the handover
proposal follows the new facts, responsibility stays where it is."""

from __future__ import annotations

import pytest

from referralmesh.v1 import common_pb2
from tests.integration.region.region_stream_kit import AMSTERDAM, GRONINGEN, GRONINGEN_BOUND, new_case, summary

pytestmark = pytest.mark.kafka


def test_changed_facts_propose_a_new_handover_and_keep_responsibility(mesh, region_worker):
    case = new_case()
    parties = dict(sender="central-amsterdam", receiver="shelter-amsterdam")
    mesh.referral(
        case, "ReferralRequested", version=1, facts=common_pb2.BindingFacts(), holder="central-amsterdam", **parties
    )
    first = mesh.wait_assignments(case, 1)[0]
    assert summary(first) == ("ReferralRequested", AMSTERDAM, "bound_nowhere", "")

    # Accepted by Amsterdam's shelter; then the holder learns the client lived in Groningen for years.
    mesh.referral(
        case,
        "ReferralAccepted",
        version=2,
        facts=common_pb2.BindingFacts(),
        holder="shelter-amsterdam",
        previous_holder="central-amsterdam",
        **parties,
    )
    changed = mesh.referral(
        case,
        "ReferralFactsChanged",
        version=3,
        facts=GRONINGEN_BOUND,
        holder="shelter-amsterdam",
        actor="shelter-amsterdam",
        from_status=common_pb2.ACCEPTED,
        to_status=common_pb2.ACCEPTED,
        **parties,
    )
    found = mesh.wait_assignments(case, 2)
    assert len(found) == 2, [summary(a) for a in found]
    decided = found[-1].assignment
    assert summary(found[-1]) == ("ReferralFactsChanged", AMSTERDAM, "handover_to_better_bound_region", GRONINGEN)
    assert decided.previous_region == AMSTERDAM and not decided.bound_nowhere
    assert decided.caused_by_event_id == changed.event_id
    assert set(decided.explanation) == {"nl", "en"}  # the case's language, and Dutch

    # Every facts change is answered with a decision, even one whose outcome is the same.
    mesh.referral(
        case,
        "ReferralFactsChanged",
        version=4,
        facts=GRONINGEN_BOUND,
        holder="shelter-amsterdam",
        actor="central-amsterdam",
        **parties,
    )
    same = mesh.wait_assignments(case, 3)[-1]
    assert summary(same) == summary(found[-1]) and same.assignment.caused_by_event_id != changed.event_id

    # Facts that bind nowhere again withdraw the proposal; Amsterdam stays responsible throughout.
    mesh.referral(
        case,
        "ReferralFactsChanged",
        version=5,
        facts=common_pb2.BindingFacts(),
        holder="shelter-amsterdam",
        actor="shelter-amsterdam",
        **parties,
    )
    last = mesh.wait_assignments(case, 4)[-1]
    assert summary(last) == ("ReferralFactsChanged", AMSTERDAM, "bound_nowhere", "")
    assert all(a.assignment.responsible_region == AMSTERDAM for a in mesh.assignments[case])
    stack, _config = region_worker
    assert not stack.crashed()
