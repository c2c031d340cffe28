"""A small client library for agencies' systems, used by the `mesh` command and the demo."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc

from referralmesh.v1 import common_pb2, referral_service_pb2 as api, referral_service_pb2_grpc as api_grpc
from services.referral.adapters.identity import DEV_AGENCY_HEADER


class ReferralClient:
    def __init__(self, address: str, agency: str):
        self.channel = grpc.insecure_channel(address)
        self.stub = api_grpc.ReferralServiceStub(self.channel)
        self.metadata = ((DEV_AGENCY_HEADER, agency),)

    def close(self) -> None:
        self.channel.close()

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def create(self, request: api.CreateReferralRequest) -> api.Referral:
        return self.stub.CreateReferral(request, metadata=self.metadata, timeout=10)

    def get(self, referral_id: str) -> api.Referral:
        return self.stub.GetReferral(api.GetReferralRequest(referral_id=referral_id), metadata=self.metadata, timeout=10)

    def transition(self, method: str, referral_id: str, expected_version: int, **fields) -> api.Referral:
        request_types = {
            "Decline": api.DeclineRequest, "Complete": api.CompleteRequest,
            "Fail": api.CompleteRequest, "Forward": api.ForwardRequest,
        }
        request = request_types.get(method, api.TransitionRequest)(
            referral_id=referral_id, expected_version=expected_version, **fields
        )
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=10)


def consent_for(*organisations: str, days: int = 90) -> common_pb2.Consent:
    consent = common_pb2.Consent(organisations=list(organisations), purpose="referral")
    consent.valid_until.FromDatetime(datetime.now(timezone.utc) + timedelta(days=days))
    return consent
