"""The referral service over mutual TLS, started as `make run` starts it, with a demo PKI.

One service for the module (certificates from `mesh pki init` in a temporary folder). Agency
identity comes from the client certificate (OIN in the subject serialNumber); no certificate,
a foreign CA, a revoked certificate, an unknown OIN and old TLS versions are all refused.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshcli import pki
from meshcli.client import ReferralClient
from meshcli.demo import RECEIVER, SENDER, demo_request
from meshcli.supervisor import Stack, free_port
from meshkernel.config import settings as current_settings
from meshkernel.kafka import prepare_kafka
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc
from services.referral.adapters.identity import DEV_AGENCY_HEADER
from services.referral.domain import load_directory
from tests.conftest import settings_from

pytestmark = pytest.mark.kafka

STRANGER = "central-amsterdam"
REVOKED = "advocacy-eindhoven"
LATER_REVOKED = "legal-eindhoven"


def _directory():
    return load_directory(current_settings().agency_directory_path)


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    agencies = list(_directory())
    assert {SENDER, RECEIVER, STRANGER, REVOKED, LATER_REVOKED} <= {a.agency_id for a in agencies}
    pki.init(folder, agencies, revoke=(REVOKED,), log=lambda *_: None)
    return folder


@pytest.fixture(scope="module")
def service(kafka_bootstrap, pki_dir, tmp_path_factory):
    import os

    state = tmp_path_factory.mktemp("referral-mtls")
    env = dict(os.environ)
    env.update(
        {
            # Local mode for the plaintext test broker; with TLS configured the certificate decides.
            "MESH_MODE": "local",
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "MESH_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
            "DATABASE_URL": f"sqlite:///{state / 'referral.db'}",
            "MESH_STATE_DIR": str(state / "state"),
            "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_TLS_CERT": str(pki_dir / "server.crt"),
            "MESH_TLS_KEY": str(pki_dir / "server.key"),
            "MESH_TLS_CA": str(pki_dir / "ca.crt"),
            "MESH_TLS_CRL": str(pki_dir / "crl.pem"),
            "MESH_TLS_AGENCY_DIR": str(pki_dir / "agencies"),
        }
    )
    config = settings_from(env)
    prepare_kafka(config, "mtls-test", give_up_after=60)
    stack = Stack(env=env, log_dir=state / "logs")
    stack.start("referral")
    probe = ReferralClient.for_agency(config, SENDER)
    try:
        probe.wait_until_ready(timeout=60)
    except grpc.FutureTimeoutError:
        stack.stop_all()
        pytest.fail("referral service did not come up:\n" + (state / "logs" / "referral.log").read_text()[-3000:])
    finally:
        probe.close()
    yield config
    crashed = stack.crashed()
    stack.stop_all()
    assert not crashed, (state / "logs" / "referral.log").read_text()[-3000:]


def _client(config, agency: str) -> ReferralClient:
    return ReferralClient.for_agency(config, agency)


def _stub_with(config, cert: bytes | None, key: bytes | None, ca: bytes):
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    channel = grpc.secure_channel(config.referral_grpc_address, credentials)
    return channel, api_grpc.ReferralServiceStub(channel)


def _pem_pair(cert, key) -> tuple[bytes, bytes]:
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def _create(client: ReferralClient, **metadata) -> api.Referral:
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    return client.stub.CreateReferral(
        demo_request(case_id), metadata=tuple(metadata.items()) or client.metadata, timeout=10
    )


def test_referral_mtls_sender_creates_receiver_reads_stranger_sees_nothing(service):
    sender, receiver, stranger = (_client(service, a) for a in (SENDER, RECEIVER, STRANGER))
    try:
        created = _create(sender)
        assert created.sender == SENDER and created.receiver == RECEIVER
        assert created.status == common_pb2.REQUESTED

        seen = receiver.get(created.referral_id)
        assert seen.referral_id == created.referral_id and seen.sender == SENDER
        acknowledged = receiver.transition("Acknowledge", created.referral_id, seen.version)
        assert acknowledged.status == common_pb2.RECEIVED

        with pytest.raises(grpc.RpcError) as error:
            stranger.get(created.referral_id)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as error:
            stranger.transition("Accept", created.referral_id, acknowledged.version)
        assert error.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    finally:
        for client in (sender, receiver, stranger):
            client.close()


def test_referral_mtls_sender_comes_from_the_certificate_not_the_request(service):
    # The request has no sender field at all ...
    assert "sender" not in api.CreateReferralRequest.DESCRIPTOR.fields_by_name
    # ... and the development header naming another agency is ignored once TLS is on.
    stranger = _client(service, STRANGER)
    sender = _client(service, SENDER)
    try:
        created = _create(stranger, **{DEV_AGENCY_HEADER: SENDER})
        assert created.sender == STRANGER
        # Claiming to be the receiver by header does not open the receiver's referrals.
        mine = _create(sender)
        with pytest.raises(grpc.RpcError) as error:
            stranger.stub.GetReferral(
                api.GetReferralRequest(referral_id=mine.referral_id),
                metadata=((DEV_AGENCY_HEADER, RECEIVER),),
                timeout=10,
            )
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        stranger.close()
        sender.close()


def test_referral_mtls_connection_without_client_certificate_fails(service, pki_dir):
    channel, stub = _stub_with(service, None, None, (pki_dir / "ca.crt").read_bytes())
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.GetReferral(api.GetReferralRequest(referral_id="x"), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_referral_mtls_plaintext_with_dev_header_fails(service):
    channel = grpc.insecure_channel(service.referral_grpc_address)
    try:
        stub = api_grpc.ReferralServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.GetReferral(
                api.GetReferralRequest(referral_id="x"), metadata=((DEV_AGENCY_HEADER, SENDER),), timeout=5
            )
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_referral_mtls_certificate_from_another_ca_fails(service, pki_dir):
    agency = _directory().get(SENDER)
    foreign_ca, foreign_key = pki.make_ca("Some Other Root CA", "Elsewhere")
    cert, key = _pem_pair(*pki.issue_agency(foreign_ca, foreign_key, agency.agency_id, agency.name, agency.oin))
    channel, stub = _stub_with(service, cert, key, (pki_dir / "ca.crt").read_bytes())
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.GetReferral(api.GetReferralRequest(referral_id="x"), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()


def test_referral_mtls_revoked_certificate_is_unauthenticated_everywhere(service):
    client = _client(service, REVOKED)
    try:
        with pytest.raises(grpc.RpcError) as error:
            _create(client)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in error.value.details()
        health = health_pb2_grpc.HealthStub(client.channel)
        with pytest.raises(grpc.RpcError) as error:
            health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        client.close()


def test_referral_mtls_unknown_oin_is_unauthenticated_but_may_probe_health(service, pki_dir):
    ca_cert, ca_key = pki.load_cert(pki_dir / "ca.crt"), pki.load_key(pki_dir / "ca.key")
    cert, key = _pem_pair(*pki.issue_agency(ca_cert, ca_key, "not-in-directory", "Unknown Org", "99998888777766665555"))
    channel, stub = _stub_with(service, cert, key, (pki_dir / "ca.crt").read_bytes())
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.GetReferral(api.GetReferralRequest(referral_id="x"), timeout=5)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "directory" in error.value.details()
        # A valid certificate of the trust root that is no agency (an operator's probe) may
        # ask for health, nothing else.
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()


def test_referral_mtls_crl_is_reloaded_when_it_changes(service, pki_dir):
    client = _client(service, LATER_REVOKED)
    try:
        client.stub.CreateReferral(demo_request(f"case-{uuid.uuid4().hex[:12]}"), timeout=10)
    except grpc.RpcError as error:  # refused by the business rules is fine; identity was accepted
        assert error.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE)
    pki.init(pki_dir, list(_directory()), revoke=(LATER_REVOKED,), log=lambda *_: None)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.get("no-such-referral")
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
                    assert "revoked" in error.details()
                    break
            time.sleep(0.2)
    finally:
        client.close()
    still_fine = _client(service, SENDER)
    try:
        assert _create(still_fine).sender == SENDER
    finally:
        still_fine.close()


def _handshake(address: str, pki_dir, version: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = version
    context.maximum_version = version
    if version < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL 3 offer TLS 1.0/1.1 at all
    context.load_verify_locations(pki_dir / "ca.crt")
    folder = pki_dir / "agencies"
    context.load_cert_chain(folder / f"{SENDER}.crt", folder / f"{SENDER}.key")
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        negotiated = tls.version()
    assert negotiated is not None  # the handshake completed
    return negotiated


@contextlib.contextmanager
def _permissive_tls_server(pki_dir):
    """A control server that does accept TLS 1.0/1.1: proves the client really offers them."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(pki_dir / "server.crt", pki_dir / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve():
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_referral_mtls_accepts_tls_1_2_and_1_3(service, pki_dir, version):
    assert (
        _handshake(service.referral_grpc_address, pki_dir, version)
        == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    )


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_referral_mtls_refuses_tls_older_than_1_2(service, pki_dir, version):
    with _permissive_tls_server(pki_dir) as control:
        assert (
            _handshake(control, pki_dir, version)
            == {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1"}[version]
        )
    # The same client against the referral service: gRPC core ends the handshake (it sends a
    # protocol_version alert or just closes; either way no session).
    with pytest.raises(ssl.SSLError) as error:
        _handshake(service.referral_grpc_address, pki_dir, version)
    assert "NO_PROTOCOLS_AVAILABLE" not in str(error.value).upper()
