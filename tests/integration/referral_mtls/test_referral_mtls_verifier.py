"""The certificate checks without a server: OIN rule, CRL loading and reloading, dev identity limits."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from meshcli import pki
from meshkernel import tls
from meshkernel.config import MeshSettings
from services.referral.adapters import identity
from services.referral.domain import load_directory

AGENCY = "exit-the-hague"


@pytest.fixture(scope="module")
def directory():
    return load_directory(MeshSettings().agency_directory_path)


@pytest.fixture
def ca(tmp_path, directory):
    pki.init(tmp_path, list(directory), log=lambda *_: None)
    return tmp_path


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _agency_pem(ca, agency_id):
    return (ca / "agencies" / f"{agency_id}.crt").read_bytes()


def _verifier(ca, directory):
    return tls.make_verifier(
        tls.ServerTls(ca / "server.crt", ca / "server.key", ca / "ca.crt", ca / "crl.pem"), directory
    )


def test_referral_mtls_oin_in_subject_serial_number_names_the_agency(ca, directory):
    peer = _verifier(ca, directory).identify(_agency_pem(ca, AGENCY))
    assert peer.agency_id == AGENCY and peer.oin == directory.get(AGENCY).oin
    subject = pki.load_cert(ca / "agencies" / f"{AGENCY}.crt").subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == directory.get(AGENCY).name


@pytest.mark.parametrize(
    "oin, reason",
    [
        (None, "organisation number"),
        ("12345", "20-digit"),
        ("99998888777766665555", "directory"),
    ],
)
def test_referral_mtls_certificates_without_a_known_oin_are_refused(ca, directory, oin, reason):
    ca_cert, ca_key = pki.load_cert(ca / "ca.crt"), pki.load_key(ca / "ca.key")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, "someone")]
    if oin:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, oin))
    cert, _key = pki._leaf(ca_cert, ca_key, x509.Name(attributes), client=True)
    verifier = _verifier(ca, directory)
    with pytest.raises(tls.CertificateRefused, match=reason):
        verifier.identify(_pem(cert))
    assert verifier.identify(_pem(cert), require_agency=False).agency_id is None


def test_referral_mtls_server_certificate_is_not_a_client_certificate(ca, directory):
    with pytest.raises(tls.CertificateRefused, match="client authentication"):
        _verifier(ca, directory).identify((ca / "server.crt").read_bytes())


def test_referral_mtls_crl_reload_and_a_broken_crl_keeps_the_last_good_list(ca, directory):
    verifier = _verifier(ca, directory)
    assert verifier.identify(_agency_pem(ca, AGENCY)).agency_id == AGENCY
    pki.init(ca, list(directory), revoke=(AGENCY,), log=lambda *_: None)
    with pytest.raises(tls.CertificateRefused, match="revoked"):
        verifier.identify(_agency_pem(ca, AGENCY))
    (ca / "crl.pem").write_bytes(b"-----BEGIN X509 CRL-----\nhalf written")
    with pytest.raises(tls.CertificateRefused, match="revoked"):
        verifier.identify(_agency_pem(ca, AGENCY))
    # Renewal: a new certificate for the agency is accepted, the old one stays revoked.
    os.remove(ca / "crl.pem")
    pki.init(ca, list(directory), renew=(AGENCY,), log=lambda *_: None)
    assert verifier.identify(_agency_pem(ca, AGENCY)).agency_id == AGENCY
    assert len(verifier.crl) == 1


def test_referral_mtls_crl_of_another_ca_is_refused_at_start(ca, directory, tmp_path_factory):
    other = tmp_path_factory.mktemp("other-ca")
    pki.init(other, list(directory)[:1], log=lambda *_: None)
    with pytest.raises(ValueError, match=r"cannot use the CRL .*not signed by the trust root"):
        tls.make_verifier(
            tls.ServerTls(ca / "server.crt", ca / "server.key", ca / "ca.crt", other / "crl.pem"), directory
        )


def test_referral_mtls_pki_init_is_idempotent(ca, directory):
    before = {p.name: p.read_bytes() for p in ca.rglob("*") if p.is_file()}
    pki.init(ca, list(directory), log=lambda *_: None)
    after = {p.name: p.read_bytes() for p in ca.rglob("*") if p.is_file()}
    assert before == after
    assert oct((ca / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_referral_mtls_partial_tls_settings_are_an_error():
    with pytest.raises(ValueError, match="MESH_TLS_KEY"):
        tls.server_tls_from(MeshSettings(tls_cert="/x.crt", tls_ca="/ca.crt"))
    assert tls.server_tls_from(MeshSettings()) is None


class _Context:
    def __init__(self, peer, metadata, pem=None):
        self._peer, self._metadata, self._pem = peer, metadata, pem

    def peer(self):
        return self._peer

    def invocation_metadata(self):
        return self._metadata

    def auth_context(self):
        return {"x509_pem_cert": [self._pem]} if self._pem else {}


def test_referral_mtls_dev_identity_only_from_loopback_and_only_without_tls(ca, directory):
    header = ((identity.DEV_AGENCY_HEADER, "shelter-utrecht"),)
    assert (
        identity.caller_from(_Context("ipv4:127.0.0.1:5000", header), allow_dev_identity=True).agency_id
        == "shelter-utrecht"
    )
    with pytest.raises(identity.Unauthenticated):
        identity.caller_from(_Context("ipv4:10.1.2.3:5000", header), allow_dev_identity=True)
    with pytest.raises(identity.Unauthenticated):
        identity.caller_from(_Context("ipv4:127.0.0.1:5000", header), allow_dev_identity=False)
    identity.configure(_verifier(ca, directory))
    try:
        with pytest.raises(identity.Unauthenticated, match="no client certificate"):
            identity.caller_from(_Context("ipv4:127.0.0.1:5000", header), allow_dev_identity=True)
        caller = identity.caller_from(
            _Context("ipv4:127.0.0.1:5000", header, _agency_pem(ca, AGENCY)), allow_dev_identity=True
        )
        assert caller.agency_id == AGENCY
    finally:
        identity.configure(None)
