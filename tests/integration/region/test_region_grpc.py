"""RegionService over gRPC, served by the region worker itself."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from referralmesh.v1 import common_pb2
from referralmesh.v1 import region_service_pb2 as api
from referralmesh.v1 import region_service_pb2_grpc as api_grpc
from tests.integration.region.region_stream_kit import AMSTERDAM, GRONINGEN, GRONINGEN_BOUND, new_case

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def stub(region_worker):
    _stack, config = region_worker
    with grpc.insecure_channel(config.region_grpc_address) as channel:
        yield api_grpc.RegionServiceStub(channel), channel


def test_resolve_is_a_dry_run_of_the_resolver(stub):
    region, _channel = stub
    reply = region.Resolve(
        api.ResolveRequest(asked_in="GM0363", service="shelter", decision_date="2026-11-01", facts=GRONINGEN_BOUND),
        timeout=10,
    )
    decision = reply.decision
    assert (decision.responsible_region, decision.handover_to) == (AMSTERDAM, GRONINGEN)
    assert decision.rule == "handover_to_better_bound_region"
    assert set(decision.explanation) == {"nl", "en", "es", "pl", "ro"}
    assert any(c.region == GRONINGEN and c.qualifies for c in decision.candidates)


@pytest.mark.parametrize(
    "request_fields, field",
    [
        ({"asked_in": "GM9999", "service": "shelter"}, "asked_in"),
        ({"asked_in": "GM0788", "service": "shelter"}, "asked_in"),  # Haaren: divided in 2021
        (
            {"asked_in": "GM0363", "service": "shelter", "facts": common_pb2.BindingFacts(grew_up_in=["GM0140"])},
            "facts.grew_up_in[0]",
        ),  # Littenseradiel: divided in 2018
        ({"asked_in": "", "service": "shelter"}, "asked_in"),
        ({"asked_in": "GM0363", "service": "haircut"}, "service"),
        ({"asked_in": "GM0363", "service": "shelter", "decision_date": "01-11-2026"}, "decision_date"),
        (
            {
                "asked_in": "GM0363",
                "service": "shelter",
                "facts": common_pb2.BindingFacts(
                    residence=[common_pb2.Period(municipality="GM0014", from_date="2020-01-01", to_date="2019-01-01")]
                ),
            },
            "facts.residence[0].to",
        ),
    ],
)
def test_resolve_refuses_invalid_input_naming_the_field(stub, request_fields, field):
    region, _channel = stub
    with pytest.raises(grpc.RpcError) as refused:
        region.Resolve(api.ResolveRequest(**request_fields), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(f"{field}:")


def test_get_assignment_returns_current_and_history(stub, mesh):
    region, _channel = stub
    case = new_case()
    mesh.referral(case, "ReferralRequested", version=1, sender="central-amsterdam", receiver="shelter-amsterdam")
    mesh.referral(
        case,
        "ReferralAccepted",
        version=2,
        receiver="exit-groningen",
        holder="exit-groningen",
        previous_holder="central-amsterdam",
        handover=True,
    )
    mesh.wait_assignments(case, 2)
    reply = region.GetAssignment(api.GetAssignmentRequest(case_id=case), timeout=10)
    assert (reply.current.responsible_region, reply.current.rule) == (GRONINGEN, "handover_accepted")
    assert [(h.assignment.responsible_region, h.assignment.trigger) for h in reply.history] == [
        (AMSTERDAM, "ReferralRequested"),
        (GRONINGEN, "ReferralAccepted"),
    ]
    assert all(h.at.seconds > 0 for h in reply.history)

    with pytest.raises(grpc.RpcError) as missing:
        region.GetAssignment(api.GetAssignmentRequest(case_id=new_case()), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as empty:
        region.GetAssignment(api.GetAssignmentRequest(case_id=" "), timeout=10)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "case_id" in empty.value.details()


def test_list_regions_describes_the_policy(stub):
    region, _channel = stub
    reply = region.ListRegions(api.ListRegionsRequest(), timeout=10)
    assert reply.policy_version
    codes = {r.code for r in reply.regions}
    assert {"GM0363", "GM0599", "GM0518", "GM0344", "GM0014", "GM0772"} <= codes
    amsterdam = next(r for r in reply.regions if r.code == AMSTERDAM)
    assert AMSTERDAM in amsterdam.municipalities and "shelter" in amsterdam.services


def test_list_regions_lists_the_rules_and_the_national_ranking(stub):
    region, _channel = stub
    reply = region.ListRegions(api.ListRegionsRequest(), timeout=10)
    assert set(reply.ranking) == {"residence", "grew_up", "family", "work"}
    assert all(weight >= 1 for weight in reply.ranking.values())
    for r in reply.regions:
        assert sorted(p.service for p in r.policies) == sorted(r.services)
        assert all(p.rules and all(not rule.required and rule.summary for rule in p.rules) for p in r.policies)
    amsterdam = next(r for r in reply.regions if r.code == AMSTERDAM)
    exit_programme = next(p for p in amsterdam.policies if p.service == "exit_programme")
    [five_years] = exit_programme.requires
    assert (five_years.kind, five_years.required) == ("residence", True)
    assert dict(five_years.params) == {"years": "5", "registered_only": "true"}
    assert five_years.summary == "registered residence of at least 5 years"
    assert {rule.kind for rule in exit_programme.rules} >= {"residence", "grew_up"}
    groningen = next(r for r in reply.regions if r.code == GRONINGEN)
    assert not next(p for p in groningen.policies if p.service == "exit_programme").requires


def test_health_and_reflection(stub):
    _region, channel = stub
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "referralmesh.v1.RegionService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for reply in replies for s in reply.list_services_response.service}
    assert "referralmesh.v1.RegionService" in names


def test_region_web_serves_health_but_not_faust_table_or_router_views(region_worker):
    import urllib.error
    import urllib.request

    _stack, config = region_worker
    base = f"http://127.0.0.1:{config.region_web_port}"
    with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
        assert response.status == 200
    for path in ("/table/", "/table/cases/", "/router/", "/graph/", "/stats/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{base}{path}", timeout=10)
        assert refused.value.code == 404, path
