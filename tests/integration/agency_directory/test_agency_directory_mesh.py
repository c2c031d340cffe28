"""The agency directory without a redeploy, end to end: the three services over mutual TLS on
PostgreSQL and the shared Kafka, an operator with the operator certificate of `mesh pki init`.

- `mesh agency add --pki` adds an agency and issues its certificate: it can receive referrals
  and call the service with that certificate at once, no restart;
- only the operator role may call AgencyAdminService, and an operator cannot act as an agency;
- `mesh agency suspend --pki` revokes its certificate (refused on its next call, before any
  handler), refuses new referrals to it (FAILED_PRECONDITION, AGENCY_SUSPENDED) and escalates
  its open referral to the coordinator of the responsible region: the alert shows in notify;
- the directory change reaches the other services as an event on mesh.directory.v1.

gRPC's Python server offers no CRL hook inside the TLS handshake, so a revoked certificate is
refused by the kernel's interceptor on the first call of the connection (UNAUTHENTICATED,
before any handler logic), as for every other mesh server (meshkernel/tls.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest

from meshcli import pki
from meshcli.client import consent_for
from meshcli.demo import DEMO_ESCALATION_POLICY, SENDER, demo_request
from meshcli.supervisor import Stack, private_mesh_env, settings_from
from meshkernel.config import PROJECT_ROOT
from meshkernel.directory_feed import DirectoryFeed
from meshkernel.kafka import prepare_kafka
from meshkernel.tls import ClientIdentity, open_channel
from referencedata.agencies import load_directory
from referralmesh.v1 import agency_admin_service_pb2 as admin_api
from referralmesh.v1 import agency_admin_service_pb2_grpc as admin_grpc
from referralmesh.v1 import events_pb2
from referralmesh.v1 import notify_service_pb2 as notify_api
from referralmesh.v1 import notify_service_pb2_grpc as notify_grpc
from referralmesh.v1 import referral_service_pb2 as referral_api
from referralmesh.v1 import referral_service_pb2_grpc as referral_grpc
from services.region.domain.policy import load_policy
from tests.integration.referral.referral_db_kit import fresh_database

pytestmark = pytest.mark.kafka

NEW_AGENCY = "shelter-zwolle"
NEW_OIN = "99990000000000000777"
ERROR_CODE = "mesh-error-code"


def _postgres_url() -> str:
    script = PROJECT_ROOT / "scripts" / "postgres.sh"
    started = subprocess.run([str(script), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL could not be started:\n{started.stderr.strip()}", pytrace=False)
    return subprocess.run([str(script), "url"], capture_output=True, text=True, check=True).stdout.strip()


class Mesh:
    def __init__(self, pki_dir: Path, config, env: dict[str, str]):
        self.pki_dir, self.config, self.env = pki_dir, config, env
        self.channels: dict[tuple[str, str, str], grpc.Channel] = {}

    def channel(self, folder: str, name: str, service: str) -> grpc.Channel:
        key = (folder, name, service)
        if key not in self.channels:
            identity = ClientIdentity(
                self.pki_dir / folder / f"{name}.crt", self.pki_dir / folder / f"{name}.key", self.pki_dir / "ca.crt"
            )
            self.channels[key] = open_channel(getattr(self.config, f"{service}_grpc_address"), identity)
        return self.channels[key]

    def referral(self, agency: str, *, fresh: bool = False):
        if fresh:  # a new connection: a new handshake with the certificate as it is now
            self.channels.pop(("agencies", agency, "referral"), None)
        return referral_grpc.ReferralServiceStub(self.channel("agencies", agency, "referral"))

    def admin(self, folder: str = "operators", name: str = "operator"):
        return admin_grpc.AgencyAdminServiceStub(self.channel(folder, name, "referral"))

    def notify(self):
        return notify_grpc.NotifyServiceStub(self.channel("coordinators", "coord-national", "notify"))

    def mesh_agency(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(self.env)
        env.update(
            {
                "MESH_TLS_CLIENT_CERT": str(self.pki_dir / "operators" / "operator.crt"),
                "MESH_TLS_CLIENT_KEY": str(self.pki_dir / "operators" / "operator.key"),
            }
        )
        return subprocess.run(
            [sys.executable, "-m", "meshcli.main", "agency", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def close(self):
        for channel in self.channels.values():
            channel.close()


def _until(what: str, attempt, timeout: float = 150.0):
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
    folder = tmp_path_factory.mktemp("agency-directory")
    pki_dir = folder / "pki"
    database = fresh_database("postgresql", folder, _postgres_url)
    database_url = next(database)
    env = private_mesh_env(folder, kafka_bootstrap)
    regions = tuple(region.code for region in load_policy(settings_from(env).region_policy_path).regions)
    pki.init(pki_dir, list(load_directory()), regions=regions, log=lambda *_: None)
    env.update(
        {
            "DATABASE_URL": database_url,
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
    prepare_kafka(config, "agency-directory-test", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    for service in ("referral", "region", "notify"):
        stack.start(service)
    mesh = Mesh(pki_dir, config, env)
    try:
        for service, (kind, name) in {
            "referral": ("agencies", SENDER),
            "region": ("system", "region"),
            "notify": ("system", "region"),
        }.items():
            try:
                grpc.channel_ready_future(mesh.channel(kind, name, service)).result(timeout=90)
            except grpc.FutureTimeoutError:
                logs = (folder / "logs" / f"{service}.log").read_text()[-3000:]
                pytest.fail(f"the {service} service did not come up:\n{logs}")
        added = mesh.mesh_agency(
            "add",
            NEW_AGENCY,
            "--name",
            "Harbour Light Shelter Zwolle",
            "--client-display-name",
            "Harbour Light Zwolle",
            "--kind",
            "shelter",
            "--oin",
            NEW_OIN,
            "--regions",
            "GM0518",
            "--domains",
            "shelter,health",
            "--languages",
            "nl,en",
            "--pki",
            str(pki_dir),
        )
        assert added.returncode == 0, added.stderr
        yield mesh
    finally:
        mesh.close()
        stack.stop_all()
        with contextlib.suppress(StopIteration):
            next(database)


def _referral_to(receiver: str, case_id: str | None = None) -> referral_api.CreateReferralRequest:
    request = demo_request(case_id or f"case-{uuid.uuid4().hex[:12]}")
    request.receiver_agency = receiver
    request.consent.CopyFrom(consent_for(SENDER, receiver))
    return request


def _error_code(error: grpc.RpcError) -> str | None:
    metadata: Any = error.trailing_metadata() or ()
    return dict(metadata).get(ERROR_CODE)


def test_an_added_agency_receives_referrals_and_calls_with_its_new_certificate_without_a_restart(mesh):
    assert (mesh.pki_dir / "agencies" / f"{NEW_AGENCY}.crt").exists()
    created = mesh.referral(SENDER).CreateReferral(_referral_to(NEW_AGENCY), timeout=10)
    assert created.receiver == NEW_AGENCY
    seen = mesh.referral(NEW_AGENCY).GetReferral(
        referral_api.GetReferralRequest(referral_id=created.referral_id), timeout=10
    )
    assert seen.referral_id == created.referral_id
    listed = mesh.admin().ListAgencies(admin_api.ListAgenciesRequest(), timeout=10)
    assert NEW_AGENCY in [agency.agency_id for agency in listed.agencies]


@pytest.mark.parametrize(
    ("folder", "name", "refused"),
    [
        ("agencies", SENDER, grpc.StatusCode.PERMISSION_DENIED),
        ("coordinators", "coord-national", grpc.StatusCode.UNAUTHENTICATED),
        ("system", "region", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_only_the_operator_role_may_call_the_admin_api(mesh, folder, name, refused):
    with pytest.raises(grpc.RpcError) as error:
        mesh.admin(folder, name).ListAgencies(admin_api.ListAgenciesRequest(), timeout=10)
    assert error.value.code() == refused


def test_an_operator_cannot_act_as_an_agency(mesh):
    stub = referral_grpc.ReferralServiceStub(mesh.channel("operators", "operator", "referral"))
    with pytest.raises(grpc.RpcError) as error:
        stub.CreateReferral(_referral_to("shelter-utrecht"), timeout=10)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_suspended_agency_is_revoked_refused_as_receiver_and_its_open_referrals_escalated(mesh):
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    open_referral = mesh.referral(SENDER).CreateReferral(_referral_to(NEW_AGENCY, case_id), timeout=10)

    suspended = mesh.mesh_agency("suspend", NEW_AGENCY, "--reason", "CONTRACT_ENDED", "--pki", str(mesh.pki_dir))
    assert suspended.returncode == 0, suspended.stderr
    assert open_referral.referral_id in suspended.stdout  # listed among the escalated ones

    # its certificate is on the CRL the servers reload: refused before any handler runs
    with pytest.raises(grpc.RpcError) as revoked:
        mesh.referral(NEW_AGENCY, fresh=True).GetReferral(
            referral_api.GetReferralRequest(referral_id=open_referral.referral_id), timeout=10
        )
    assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (revoked.value.details() or "")

    # no new referral to it
    with pytest.raises(grpc.RpcError) as refused:
        mesh.referral(SENDER).CreateReferral(_referral_to(NEW_AGENCY), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _error_code(refused.value) == "AGENCY_SUSPENDED"

    # its open referral: the coordinator of the responsible region (GM0518, asked in The Hague)
    alert = _until("the coordinator's alert for the suspended receiver", lambda: _suspension_alert(mesh, case_id))
    assert alert.escalation.level == events_pb2.REGION_COORDINATOR
    assert alert.escalation.region == "GM0518"
    assert alert.escalation.referral_id == open_referral.referral_id
    assert alert.state == notify_api.OPEN


def _suspension_alert(mesh: Mesh, case_id: str):
    stream = mesh.notify().WatchAlerts(
        notify_api.WatchAlertsRequest(regions=["GM0518"], levels=[events_pb2.REGION_COORDINATOR]), timeout=3
    )
    try:
        for alert in stream:
            if alert.case_id == case_id and alert.escalation.rule == "receiver_suspended":
                return alert
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return None


def test_the_directory_changes_reach_other_services_as_events(mesh):
    """A follower as the region and notify services run it reads the added and the suspended
    agency from mesh.directory.v1 (after the suspension test: module order)."""
    seen: dict[str, list[str]] = {}

    async def follow() -> None:
        suspended = asyncio.Event()

        def listener(change: events_pb2.AgencyDirectoryChanged) -> None:
            seen.setdefault(change.agency.agency_id, []).append(change.change)
            if change.agency.agency_id == NEW_AGENCY and change.change == "SUSPENDED":
                suspended.set()

        feed = DirectoryFeed(mesh.config, listener, client_id="agency-directory-test")
        task = asyncio.create_task(feed.run())
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(suspended.wait(), timeout=60)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    asyncio.run(follow())
    assert seen.get(NEW_AGENCY) == ["ADDED", "SUSPENDED"]
