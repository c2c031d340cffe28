"""Who may do what, over mutual TLS with real certificates: every RPC of the three services
against every role.

One private mesh with mutual TLS on every gRPC server (`mesh pki init` certificates, CRLs; with
TLS configured no development identity is honoured, in any mode) on the shared plaintext broker:
MESH_MODE=local only because production would also demand Kafka TLS and credentials, the
notify key-encryption key and dashboard TLS, which are other tests' subject
(tests/integration/kafka_acl, tests/unit/kernel/test_kernel_safety.py). One case:
exit-the-hague refers a client to shelter-utrecht, asked in The Hague (GM0518), so GM0518 is
responsible; the receiver stays silent until the
region coordinator's alert is raised. Then every role calls every RPC.

"allowed" means the call got past authentication and authorisation: it succeeded, or the
application refused it for another reason (a stale version, a step the role may not take in
the lifecycle, which tests/unit/referral covers role by role). "denied" means
UNAUTHENTICATED, PERMISSION_DENIED, or NOT_FOUND where a stranger must not learn that a case
exists.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest

from meshcli import pki
from meshcli.client import consent_for
from meshcli.demo import DEMO_ESCALATION_POLICY, demo_request
from meshcli.supervisor import Stack, private_mesh_env, settings_from
from meshkernel.kafka import prepare_kafka
from meshkernel.tls import ClientIdentity, open_channel
from referencedata.agencies import load_directory
from referralmesh.v1 import (
    agency_admin_service_pb2 as admin_api,
)
from referralmesh.v1 import (
    agency_admin_service_pb2_grpc as admin_grpc,
)
from referralmesh.v1 import (
    common_pb2,
    events_pb2,
)
from referralmesh.v1 import (
    notify_service_pb2 as notify_api,
)
from referralmesh.v1 import (
    notify_service_pb2_grpc as notify_grpc,
)
from referralmesh.v1 import (
    referral_service_pb2 as referral_api,
)
from referralmesh.v1 import (
    referral_service_pb2_grpc as referral_grpc,
)
from referralmesh.v1 import (
    region_service_pb2 as region_api,
)
from referralmesh.v1 import (
    region_service_pb2_grpc as region_grpc,
)
from services.notify.adapters.store import NotifyStore
from services.notify.paths import NotifyPaths
from services.region.domain.policy import load_policy

pytestmark = pytest.mark.kafka

SENDER, RECEIVER, OTHER = "exit-the-hague", "shelter-utrecht", "care-rotterdam"
FOURTH = "legal-eindhoven"  # receives the parties' further referrals, so OTHER never becomes a party
ROLES = {
    "sending agency": ("agencies", SENDER),
    "receiving agency": ("agencies", RECEIVER),
    "other agency": ("agencies", OTHER),
    "region coordinator": ("coordinators", "coord-gm0518"),
    "other region's coordinator": ("coordinators", "coord-gm0344"),
    "national coordinator": ("coordinators", "coord-national"),
    "system": ("system", "region"),
    "operator": ("operators", "operator"),
}
PARTIES = {"sending agency", "receiving agency"}
AGENCIES = PARTIES | {"other agency"}
CASE_READERS = PARTIES | {"region coordinator", "national coordinator", "system"}
ALERT_ACTORS = {"region coordinator", "national coordinator"}
CASE_API_ROLES = set(ROLES) - {"operator"}  # an operator manages the agency directory only
OPERATORS = {"operator"}
DENIED = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}


class Mesh:
    case_id = spare_case_id = referral_id = escalation_id = ""

    def __init__(self, pki_dir: Path, config):
        self.pki_dir, self.config = pki_dir, config
        self.channels: dict[tuple[str, str], grpc.Channel] = {}

    def identity(self, role: str) -> ClientIdentity:
        folder, name = ROLES[role]
        return ClientIdentity(
            self.pki_dir / folder / f"{name}.crt", self.pki_dir / folder / f"{name}.key", self.pki_dir / "ca.crt"
        )

    def channel(self, role: str, service: str) -> grpc.Channel:
        key = (role, service)
        if key not in self.channels:
            address = getattr(self.config, f"{service}_grpc_address")
            self.channels[key] = open_channel(address, self.identity(role))
        return self.channels[key]

    def referral(self, role):
        return referral_grpc.ReferralServiceStub(self.channel(role, "referral"))

    def admin(self, role):
        return admin_grpc.AgencyAdminServiceStub(self.channel(role, "referral"))

    def region(self, role):
        return region_grpc.RegionServiceStub(self.channel(role, "region"))

    def notify(self, role):
        return notify_grpc.NotifyServiceStub(self.channel(role, "notify"))

    def close(self):
        for channel in self.channels.values():
            channel.close()


def _until(what: str, attempt, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = attempt()
            if result:
                return result
        except grpc.RpcError as error:
            last = error
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s (last error: {last})")


@pytest.fixture(scope="module")
def mesh(kafka_bootstrap, tmp_path_factory):
    folder = tmp_path_factory.mktemp("matrix")
    pki_dir = folder / "pki"
    directory = load_directory()
    env = private_mesh_env(folder, kafka_bootstrap)
    regions = tuple(region.code for region in load_policy(settings_from(env).region_policy_path).regions)
    pki.init(pki_dir, list(directory), regions=regions, log=lambda *_: None)
    env.update(
        {
            "MESH_MODE": "local",
            "MESH_TLS_CERT": str(pki_dir / "server.crt"),
            "MESH_TLS_KEY": str(pki_dir / "server.key"),
            "MESH_TLS_CA": str(pki_dir / "ca.crt"),
            "MESH_TLS_CRL": str(pki_dir / "crl.pem"),
            "MESH_ESCALATION_POLICY_PATH": str(DEMO_ESCALATION_POLICY),
            "MESH_REFERRAL_METRICS_PORT": "0",
            "MESH_REGION_METRICS_PORT": "0",
            "MESH_NOTIFY_METRICS_PORT": "0",
        }
    )
    config = settings_from(env)
    prepare_kafka(config, "matrix-test", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    for service in ("referral", "region", "notify"):
        stack.start(service)
    mesh = Mesh(pki_dir, config)
    try:
        for service in ("referral", "region", "notify"):
            try:
                grpc.channel_ready_future(mesh.channel("system", service)).result(timeout=90)
            except grpc.FutureTimeoutError:
                logs = (folder / "logs" / f"{service}.log").read_text()[-3000:]
                pytest.fail(f"the {service} service did not come up:\n{logs}")
        mesh.case_id = f"case-{uuid.uuid4().hex[:12]}"
        mesh.spare_case_id = f"case-{uuid.uuid4().hex[:12]}"
        contact = mesh.notify("sending agency").SealContact(
            notify_api.SealContactRequest(case_id=mesh.case_id, channel=notify_api.SMS, address="+31 6 00000001"),
            timeout=10,
        )
        request = demo_request(mesh.case_id, contact)
        request.consent.CopyFrom(consent_for(SENDER, RECEIVER, OTHER))
        mesh.referral_id = mesh.referral("sending agency").CreateReferral(request, timeout=10).referral_id
        spare = demo_request(mesh.spare_case_id)
        mesh.referral("sending agency").CreateReferral(spare, timeout=10)
        _until(
            "the assignment",
            lambda: mesh.region("system").GetAssignment(
                region_api.GetAssignmentRequest(case_id=mesh.case_id), timeout=5
            ),
        )
        mesh.escalation_id = _until("the region coordinator's alert", lambda: _first_alert(mesh), timeout=150)
        yield mesh
    finally:
        mesh.close()
        stack.stop_all()


def _first_alert(mesh: Mesh) -> str | None:
    stream = mesh.notify("national coordinator").WatchAlerts(
        notify_api.WatchAlertsRequest(regions=["GM0518"], levels=[events_pb2.REGION_COORDINATOR]), timeout=3
    )
    try:
        for alert in stream:
            if alert.case_id == mesh.case_id:
                return alert.escalation.escalation_id
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return None


def _outcome(call, denied=frozenset(DENIED)) -> str:
    try:
        call()
    except grpc.RpcError as error:
        if error.code() in denied:
            return "denied"
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL):
            raise
    return "allowed"


def _expect(role: str, allowed: set[str]) -> str:
    return "allowed" if role in allowed else "denied"


# ----------------------------------------------------------------------------- referral service


def _transition(mesh, role, method, request_type=referral_api.TransitionRequest, **fields):
    request = request_type(referral_id=mesh.referral_id, expected_version=999, **fields)
    return lambda: getattr(mesh.referral(role), method)(request, timeout=10)


# For lifecycle steps a party may be refused a step that is not its role's (PERMISSION_DENIED):
# that is the lifecycle's rule, not the door. Strangers are NOT_FOUND, non-agencies UNAUTHENTICATED.
LIFECYCLE_STEPS = {
    "Acknowledge",
    "Accept",
    "Decline",
    "Start",
    "Complete",
    "Cancel",
    "ReportContactLost",
    "Fail",
    "Forward",
    "UpdateBindingFacts",
}
AT_THE_DOOR = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.NOT_FOUND})


REFERRAL_CALLS = {
    "GetReferral": (
        PARTIES,
        lambda mesh, role: (
            lambda: mesh.referral(role).GetReferral(
                referral_api.GetReferralRequest(referral_id=mesh.referral_id), timeout=10
            )
        ),
    ),
    "ListReferrals": (
        AGENCIES,
        lambda mesh, role: lambda: mesh.referral(role).ListReferrals(referral_api.ListReferralsRequest(), timeout=10),
    ),
    "Acknowledge": (PARTIES, lambda mesh, role: _transition(mesh, role, "Acknowledge")),
    "Accept": (PARTIES, lambda mesh, role: _transition(mesh, role, "Accept")),
    "Decline": (
        PARTIES,
        lambda mesh, role: _transition(
            mesh, role, "Decline", referral_api.DeclineRequest, reason=common_pb2.NO_CAPACITY
        ),
    ),
    "Start": (PARTIES, lambda mesh, role: _transition(mesh, role, "Start")),
    "Complete": (
        PARTIES,
        lambda mesh, role: _transition(mesh, role, "Complete", referral_api.CompleteRequest, outcome=common_pb2.HELPED),
    ),
    "Cancel": (PARTIES, lambda mesh, role: _transition(mesh, role, "Cancel")),
    "ReportContactLost": (PARTIES, lambda mesh, role: _transition(mesh, role, "ReportContactLost")),
    "Fail": (
        PARTIES,
        lambda mesh, role: _transition(mesh, role, "Fail", referral_api.CompleteRequest, outcome=common_pb2.NOT_HELPED),
    ),
    "Forward": (
        PARTIES,
        lambda mesh, role: _transition(mesh, role, "Forward", referral_api.ForwardRequest, next_receiver=FOURTH),
    ),
    "UpdateBindingFacts": (
        PARTIES,
        lambda mesh, role: _transition(
            mesh,
            role,
            "UpdateBindingFacts",
            referral_api.UpdateBindingFactsRequest,
            facts=demo_request(mesh.case_id).facts,
        ),
    ),
    "WatchReferrals": (
        AGENCIES,
        lambda mesh, role: (
            lambda: _first_of(mesh.referral(role).WatchReferrals(referral_api.WatchReferralsRequest(), timeout=2))
        ),
    ),
    "SearchAgencies": (
        AGENCIES,
        lambda mesh, role: lambda: mesh.referral(role).SearchAgencies(referral_api.SearchAgenciesRequest(), timeout=10),
    ),
    "GetAccessLog": (
        PARTIES,
        lambda mesh, role: (
            lambda: mesh.referral(role).GetAccessLog(referral_api.GetAccessLogRequest(case_id=mesh.case_id), timeout=10)
        ),
    ),
    # Another referral on the existing case: only from a current party (the case is bound to them).
    "CreateReferral": (
        PARTIES,
        lambda mesh, role: lambda: mesh.referral(role).CreateReferral(_another_referral(mesh, role), timeout=10),
    ),
    "WithdrawConsent": (
        PARTIES,
        lambda mesh, role: (
            lambda: mesh.referral(role).WithdrawConsent(
                referral_api.WithdrawConsentRequest(case_id=mesh.spare_case_id), timeout=10
            )
        ),
    ),
}


def _first_of(stream):
    try:
        for _change in stream:
            break
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise


def _another_referral(mesh, role):
    request = demo_request(mesh.case_id)
    request.request_key = f"matrix-{uuid.uuid4().hex}"
    request.receiver_agency = FOURTH
    request.consent.CopyFrom(consent_for(SENDER, RECEIVER, OTHER, FOURTH))
    return request


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("rpc", list(REFERRAL_CALLS))
def test_mtls_matrix_referral_service(mesh, rpc, role):
    allowed, call = REFERRAL_CALLS[rpc]
    denied = AT_THE_DOOR if rpc in LIFECYCLE_STEPS else frozenset(DENIED)
    assert _outcome(call(mesh, role), denied) == _expect(role, allowed)


# ----------------------------------------------------------------------- agency directory (admin)

# Requests the application refuses for their content (an empty entry, a stale version, an empty
# reason code), so that the operator's calls prove access without changing the directory.
ADMIN_CALLS = {
    "ListAgencies": (
        OPERATORS,
        lambda mesh, role: lambda: mesh.admin(role).ListAgencies(admin_api.ListAgenciesRequest(), timeout=10),
    ),
    "AddAgency": (
        OPERATORS,
        lambda mesh, role: lambda: mesh.admin(role).AddAgency(admin_api.AddAgencyRequest(), timeout=10),
    ),
    "UpdateAgency": (
        OPERATORS,
        lambda mesh, role: (
            lambda: mesh.admin(role).UpdateAgency(
                admin_api.UpdateAgencyRequest(agency=common_pb2.DirectoryAgency(agency_id=OTHER), expected_version=999),
                timeout=10,
            )
        ),
    ),
    "SuspendAgency": (
        OPERATORS,
        lambda mesh, role: (
            lambda: mesh.admin(role).SuspendAgency(admin_api.SuspendAgencyRequest(agency_id=OTHER), timeout=10)
        ),
    ),
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("rpc", list(ADMIN_CALLS))
def test_mtls_matrix_agency_admin_service(mesh, rpc, role):
    allowed, call = ADMIN_CALLS[rpc]
    assert _outcome(call(mesh, role)) == _expect(role, allowed)


# ----------------------------------------------------------------------------- region service

REGION_CALLS = {
    "Resolve": (
        CASE_API_ROLES,
        lambda mesh, role: (
            lambda: mesh.region(role).Resolve(
                region_api.ResolveRequest(asked_in="GM0363", service="shelter", decision_date="2026-11-01"), timeout=10
            )
        ),
    ),
    "ListRegions": (
        CASE_API_ROLES,
        lambda mesh, role: lambda: mesh.region(role).ListRegions(region_api.ListRegionsRequest(), timeout=10),
    ),
    "GetAssignment": (
        CASE_READERS,
        lambda mesh, role: (
            lambda: mesh.region(role).GetAssignment(region_api.GetAssignmentRequest(case_id=mesh.case_id), timeout=10)
        ),
    ),
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("rpc", list(REGION_CALLS))
def test_mtls_matrix_region_service(mesh, rpc, role):
    allowed, call = REGION_CALLS[rpc]
    assert _outcome(call(mesh, role)) == _expect(role, allowed)


# ----------------------------------------------------------------------------- notify service


def _watch_case_region(mesh, role):
    return lambda: _first_of(
        mesh.notify(role).WatchAlerts(notify_api.WatchAlertsRequest(regions=["GM0518"]), timeout=2)
    )


NOTIFY_CALLS = {
    "WatchAlerts": (ALERT_ACTORS, _watch_case_region),
    "AcknowledgeAlert": (
        ALERT_ACTORS,
        lambda mesh, role: (
            lambda: mesh.notify(role).AcknowledgeAlert(
                notify_api.AcknowledgeAlertRequest(escalation_id=mesh.escalation_id), timeout=10
            )
        ),
    ),
    "SealContact": (
        PARTIES,
        lambda mesh, role: (
            lambda: mesh.notify(role).SealContact(
                notify_api.SealContactRequest(case_id=mesh.case_id, channel=notify_api.SMS, address="+31 6 00000001"),
                timeout=10,
            )
        ),
    ),
    "EraseClient": (
        PARTIES,
        lambda mesh, role: (
            lambda: mesh.notify(role).EraseClient(notify_api.EraseClientRequest(case_id=mesh.case_id), timeout=10)
        ),
    ),
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("rpc", list(NOTIFY_CALLS))
def test_mtls_matrix_notify_service(mesh, rpc, role):
    allowed, call = NOTIFY_CALLS[rpc]
    assert _outcome(call(mesh, role)) == _expect(role, allowed)


def test_mtls_matrix_a_coordinator_watching_everything_sees_only_their_scope(mesh):
    seen: list[str] = []
    stream = mesh.notify("other region's coordinator").WatchAlerts(notify_api.WatchAlertsRequest(), timeout=3)
    try:
        seen.extend(alert.responsible_region or alert.escalation.region for alert in stream)
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert all(region == "GM0344" for region in seen)
    assert "GM0518" not in seen


def test_mtls_matrix_a_bare_coordinator_header_means_nothing_with_tls(mesh):
    stub = mesh.notify("sending agency")
    with pytest.raises(grpc.RpcError) as refused:
        stub.AcknowledgeAlert(
            notify_api.AcknowledgeAlertRequest(escalation_id=mesh.escalation_id),
            metadata=(("x-mesh-coordinator", "coord-gm0518"), ("x-mesh-dev-scope", "GM0518")),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_mtls_matrix_no_client_certificate_no_connection(mesh):
    for service in ("referral", "region", "notify"):
        address = getattr(mesh.config, f"{service}_grpc_address")
        credentials = grpc.ssl_channel_credentials(root_certificates=(mesh.pki_dir / "ca.crt").read_bytes())
        with grpc.secure_channel(address, credentials) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                region_grpc.RegionServiceStub(channel).ListRegions(region_api.ListRegionsRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_matrix_erasure_and_refusals_are_access_logged(mesh):
    erase = notify_api.EraseClientRequest(case_id=mesh.case_id)
    mesh.notify("sending agency").EraseClient(erase, timeout=10)
    mesh.notify("receiving agency").EraseClient(erase, timeout=10)
    with pytest.raises(grpc.RpcError):
        mesh.notify("other agency").EraseClient(erase, timeout=10)
    store = NotifyStore.open(NotifyPaths.of(mesh.config).database_url)
    entries = store.access_entries(mesh.case_id)
    erasures = [entry for entry in entries if entry["action"] == "ERASE_CLIENT"]
    assert {entry["actor"] for entry in erasures if entry["result"] == "ok"} == {SENDER, RECEIVER}
    assert any(entry["actor"] == OTHER and entry["result"].startswith("refused") for entry in erasures)
