"""A region worker stopped mid-stream and started again continues from its table."""

from __future__ import annotations

import grpc
import pytest

from referralmesh.v1 import region_service_pb2 as api
from referralmesh.v1 import region_service_pb2_grpc as api_grpc
from tests.integration.region.region_stream_kit import AMSTERDAM, GRONINGEN, new_case, summary, wait_for_health

pytestmark = pytest.mark.kafka


def test_a_restarted_worker_knows_current_and_proposed_regions_and_re_emits_nothing_different(mesh, region_worker):
    stack, config = region_worker
    cases = [new_case() for _ in range(3)]
    for case in cases:
        mesh.referral(
            case,
            "ReferralRequested",
            version=1,
            sender="central-amsterdam",
            receiver="shelter-amsterdam",
            holder="central-amsterdam",
        )
    before = {case: mesh.wait_assignments(case, 1)[0] for case in cases}
    mesh.settle(2)  # let the worker commit its offsets and changelog

    stack.stop("region")  # SIGTERM, mid-stream: more events arrive while it is down
    for case in cases:
        mesh.referral(
            case,
            "ReferralForwarded",
            version=2,
            receiver="shelter-amsterdam",
            pending_receiver="shelter-groningen",
            holder="shelter-amsterdam",
            handover=True,
        )
    stack.start("region")
    wait_for_health(config.region_grpc_address)
    for case in cases:
        mesh.referral(
            case,
            "ReferralAccepted",
            version=3,
            receiver="shelter-groningen",
            holder="shelter-groningen",
            previous_holder="shelter-amsterdam",
            handover=True,
        )

    for case in cases:
        found = mesh.wait_assignments(case, 3, timeout=90)
        assert [summary(a)[:3] for a in found] == [
            ("ReferralRequested", AMSTERDAM, "handover_to_better_bound_region"),
            ("ReferralForwarded", AMSTERDAM, "handover_to_better_bound_region"),
            ("ReferralAccepted", GRONINGEN, "handover_accepted"),
        ]
        assert found[0] == before[case]
        assert found[2].assignment.previous_region == AMSTERDAM
    mesh.settle(2)
    for case in cases:
        # A redelivered event may be sent again, but always under the same id with the same decision.
        by_id = {}
        for a in mesh.assignments[case]:
            by_id.setdefault(a.event_id, set()).add(a.assignment.SerializeToString(deterministic=True))
        assert all(len(payloads) == 1 for payloads in by_id.values())
        assert len(by_id) == 3

    with grpc.insecure_channel(config.region_grpc_address) as channel:
        reply = api_grpc.RegionServiceStub(channel).GetAssignment(
            api.GetAssignmentRequest(case_id=cases[0]), timeout=10
        )
    assert reply.current.responsible_region == GRONINGEN and len(reply.history) == 3
    assert not stack.crashed()


def test_a_killed_worker_continues_too(mesh, region_worker):
    stack, config = region_worker
    case = new_case()
    mesh.referral(case, "ReferralRequested", version=1, sender="central-amsterdam", receiver="shelter-amsterdam")
    mesh.wait_assignments(case, 1)
    mesh.settle(2)
    stack.kill("region")  # SIGKILL: no clean-up at all
    stack.start("region")
    wait_for_health(config.region_grpc_address)
    mesh.referral(
        case,
        "ReferralAccepted",
        version=2,
        receiver="central-groningen",
        holder="central-groningen",
        previous_holder="central-amsterdam",
        handover=True,
    )
    found = mesh.wait_assignments(case, 2, timeout=75)
    assert summary(found[-1])[:3] == ("ReferralAccepted", GRONINGEN, "handover_accepted")
    assert not stack.crashed()
