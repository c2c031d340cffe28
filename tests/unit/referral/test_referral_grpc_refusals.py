"""Refusals the fault runs found ending in UNKNOWN: a call while the referral database is down
(`make chaos`, PostgreSQL killed under load) ends in UNAVAILABLE; a Timestamp outside
protobuf's range (`make fuzz`) in INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy.exc import OperationalError

from meshcli.demo import demo_request
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from services.referral.adapters.grpc_api import ReferralApi


class Aborted(Exception):
    pass


class Context:
    def __init__(self):
        self.status = None

    async def abort(self, code, details, trailing_metadata=()):
        self.status = (code, details)
        raise Aborted


async def test_a_database_outage_is_refused_as_unavailable():
    api = ReferralApi.__new__(ReferralApi)
    api._caller = lambda context: "exit-the-hague"
    context = Context()

    def create(_caller):
        raise OperationalError("INSERT", {}, Exception("the database system is starting up"))

    with pytest.raises(Aborted):
        await api._run(context, create)

    assert context.status[0] == grpc.StatusCode.UNAVAILABLE
    assert "starting up" not in context.status[1]


async def test_a_timestamp_out_of_range_is_an_invalid_argument():
    api = ReferralApi.__new__(ReferralApi)
    request = demo_request("case-1")
    request.consent.valid_until.seconds = 85778089901586048
    context = Context()

    with pytest.raises(Aborted):
        await api.CreateReferral(request, context)

    assert context.status == (grpc.StatusCode.INVALID_ARGUMENT, "consent.valid_until: not a valid timestamp")


UNDEFINED_REASON = common_pb2.DeclineReason.ValueType(974)
UNDEFINED_OUTCOME = common_pb2.Outcome.ValueType(201)


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        ("Decline", api.DeclineRequest(referral_id="r-1", expected_version=1, reason=UNDEFINED_REASON)),
        ("Complete", api.CompleteRequest(referral_id="r-1", expected_version=1, outcome=UNDEFINED_OUTCOME)),
        ("Fail", api.CompleteRequest(referral_id="r-1", expected_version=1, outcome=UNDEFINED_OUTCOME)),
    ],
)
async def test_an_enum_value_the_contract_does_not_define_is_an_invalid_argument(method, request_):
    referral_api = ReferralApi.__new__(ReferralApi)
    context = Context()

    with pytest.raises(Aborted):
        await getattr(referral_api, method)(request_, context)

    assert context.status[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown value" in context.status[1]


async def test_an_unknown_urgency_is_an_invalid_argument():
    referral_api = ReferralApi.__new__(ReferralApi)
    request = demo_request("case-1")
    request.urgency = common_pb2.Urgency.ValueType(77)
    context = Context()

    with pytest.raises(Aborted):
        await referral_api.CreateReferral(request, context)

    assert context.status == (grpc.StatusCode.INVALID_ARGUMENT, "urgency: unknown value 77")
