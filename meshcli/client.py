"""A small client library for agencies' systems, used by the `mesh` command and the demo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from meshkernel.callers import DEV_AGENCY_HEADER, DEV_COORDINATOR_HEADER
from meshkernel.tls import ClientIdentity, client_identity_from, open_channel
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc

# Every call has a deadline: a service that does not answer must not hang an agency's system.
CALL_TIMEOUT = 10.0


class ReferralClient:
    """One agency's connection to the referral service.

    With `cert`, `key` and `ca` the channel is mutual TLS and the service knows the agency
    from the certificate (`agency` is then only a label). Without them it is the loopback
    development identity header, which the service honours only when it runs without TLS.
    """

    def __init__(
        self,
        address: str,
        agency: str | None = None,
        *,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        ca: str | Path | None = None,
    ):
        if cert or key:
            if not (cert and key and ca):
                raise ValueError("mutual TLS needs a client certificate, its key and the CA certificate")
            self.channel = open_channel(address, ClientIdentity(Path(cert), Path(key), Path(ca)))
            self.metadata: tuple = ()
        else:
            if not agency:
                raise ValueError("without a client certificate an agency id is needed (development identity)")
            self.channel = open_channel(address, None)  # local mode only: the server refuses it otherwise
            self.metadata = ((DEV_AGENCY_HEADER, agency),)
        self.agency = agency
        self.stub = api_grpc.ReferralServiceStub(self.channel)

    @classmethod
    def for_agency(cls, config, agency: str, address: str | None = None) -> ReferralClient:
        """The client for `agency` as the configuration says: its certificate from
        MESH_TLS_AGENCY_DIR (<agency>.crt/.key), else MESH_TLS_CLIENT_CERT/KEY, else the
        development header. The CA is MESH_TLS_CA."""
        address = address or config.referral_grpc_address
        identity = client_identity_from(config, agency=agency)
        if identity is not None:
            return cls(address, agency, cert=identity.cert, key=identity.key, ca=identity.ca)
        return cls(address, agency)

    def close(self) -> None:
        self.channel.close()

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def create(self, request: api.CreateReferralRequest) -> api.Referral:
        return self.stub.CreateReferral(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    def get(self, referral_id: str) -> api.Referral:
        return self.stub.GetReferral(
            api.GetReferralRequest(referral_id=referral_id), metadata=self.metadata, timeout=CALL_TIMEOUT
        )

    def transition(self, method: str, referral_id: str, expected_version: int, **fields) -> api.Referral:
        request_types = {
            "Decline": api.DeclineRequest,
            "Complete": api.CompleteRequest,
            "Fail": api.CompleteRequest,
            "Forward": api.ForwardRequest,
        }
        request = request_types.get(method, api.TransitionRequest)(
            referral_id=referral_id, expected_version=expected_version, **fields
        )
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    def update_facts(self, referral_id: str, expected_version: int, facts: common_pb2.BindingFacts) -> api.Referral:
        request = api.UpdateBindingFactsRequest(referral_id=referral_id, expected_version=expected_version, facts=facts)
        return self.stub.UpdateBindingFacts(request, metadata=self.metadata, timeout=CALL_TIMEOUT)


def consent_for(*organisations: str, days: int = 90, recorded_at: datetime | None = None) -> common_pb2.Consent:
    consent = common_pb2.Consent(organisations=list(organisations), purpose="referral")
    consent.valid_until.FromDatetime(datetime.now(UTC) + timedelta(days=days))
    if recorded_at is not None:  # needed after a withdrawal: consent the client gave again
        consent.recorded_at.FromDatetime(recorded_at)
    return consent


class NotifyClient:
    """The notify service's gRPC API: seal a client's contact, watch and acknowledge alerts.

    With `identity` (a client certificate) the service knows the caller from it; without, the
    development headers name the agency or coordinator (honoured in MESH_MODE=local only).
    """

    def __init__(
        self,
        address: str,
        *,
        agency: str | None = None,
        coordinator: str | None = None,
        identity: ClientIdentity | None = None,
    ):
        from referralmesh.v1 import notify_service_pb2_grpc

        self.channel = open_channel(address, identity)
        self.stub = notify_service_pb2_grpc.NotifyServiceStub(self.channel)
        metadata = []
        if identity is None and agency:
            metadata.append((DEV_AGENCY_HEADER, agency))
        if identity is None and coordinator:
            metadata.append((DEV_COORDINATOR_HEADER, coordinator))
        self.metadata = tuple(metadata)

    @classmethod
    def for_agency(cls, config, agency: str, address: str | None = None) -> NotifyClient:
        return cls(
            address or config.notify_grpc_address, agency=agency, identity=client_identity_from(config, agency=agency)
        )

    def close(self) -> None:
        self.channel.close()

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        grpc.channel_ready_future(self.channel).result(timeout=timeout)

    def seal_contact(self, case_id: str, channel: str, address: str) -> common_pb2.SealedContact:
        from referralmesh.v1 import notify_service_pb2 as notify_api

        request = notify_api.SealContactRequest(
            case_id=case_id, channel=notify_api.ContactChannel.Value(channel), address=address
        )
        return self.stub.SealContact(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    def acknowledge(self, escalation_id: str):
        from referralmesh.v1 import notify_service_pb2 as notify_api

        return self.stub.AcknowledgeAlert(
            notify_api.AcknowledgeAlertRequest(escalation_id=escalation_id),
            metadata=self.metadata,
            timeout=CALL_TIMEOUT,
        )
