"""Who is behind a certificate, and revocation per issuing CA, with the PKI of `mesh pki init`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshcli import pki
from meshkernel import tls
from meshkernel.config import MeshSettings
from referencedata.agencies import load_directory

AGENCY = "shelter-utrecht"


@pytest.fixture(scope="module")
def directory():
    return load_directory(MeshSettings().agency_directory_path)


@pytest.fixture
def ca(tmp_path, directory):
    pki.init(tmp_path, list(directory), regions=("GM0518", "GM0344"), log=lambda *_: None)
    return tmp_path


def _verifier(ca, directory, **crl_options):
    trusted = x509.load_pem_x509_certificates((ca / "ca.crt").read_bytes())
    return tls.PeerVerifier(directory, tls.RevocationList(ca / "crl.pem", trusted, **crl_options))


def _pem(ca, folder, name) -> bytes:
    return (ca / folder / f"{name}.crt").read_bytes()


def test_kernel_tls_roles_from_certificates(ca, directory):
    verifier = _verifier(ca, directory)
    agency = verifier.identify(_pem(ca, "agencies", AGENCY), roles=tls.ROLES)
    assert (agency.role, agency.agency_id, agency.name) == (tls.AGENCY, AGENCY, AGENCY)
    coordinator = verifier.identify(_pem(ca, "coordinators", "coord-gm0518"), roles=tls.ROLES)
    assert (coordinator.role, coordinator.name, coordinator.scope, coordinator.agency_id) == (
        tls.COORDINATOR,
        "coord-gm0518",
        "GM0518",
        None,
    )
    national = verifier.identify(_pem(ca, "coordinators", "coord-national"), roles=tls.ROLES)
    assert (national.role, national.scope) == (tls.COORDINATOR, "NATIONAL")
    system = verifier.identify(_pem(ca, "system", "region"), roles=tls.ROLES)
    assert (system.role, system.name) == (tls.SYSTEM, "region")


def test_kernel_tls_a_role_the_service_does_not_take_is_refused(ca, directory):
    verifier = _verifier(ca, directory)
    with pytest.raises(tls.CertificateRefused, match="coordinator may not call"):
        verifier.identify(_pem(ca, "coordinators", "coord-gm0518"))  # agencies only by default


def test_kernel_tls_revocation_is_per_issuing_ca(ca, directory):
    verifier = _verifier(ca, directory)
    pki.init(ca, list(directory), regions=("GM0518", "GM0344"), revoke=("coord-gm0518", AGENCY), log=lambda *_: None)
    with pytest.raises(tls.CertificateRefused, match="revoked"):
        verifier.identify(_pem(ca, "coordinators", "coord-gm0518"), roles=tls.ROLES)
    with pytest.raises(tls.CertificateRefused, match="revoked"):
        verifier.identify(_pem(ca, "agencies", AGENCY), roles=tls.ROLES)
    assert verifier.identify(_pem(ca, "coordinators", "coord-gm0344"), roles=tls.ROLES).scope == "GM0344"
    # The same serial under another CA is another certificate: matched on issuer and serial.
    revoked = pki.load_cert(ca / "agencies" / f"{AGENCY}.crt")
    mesh_ca = (pki.load_cert(ca / "intermediates" / "mesh-ca.crt"), pki.load_key(ca / "intermediates" / "mesh-ca.key"))
    twin = pki.issue_system(*mesh_ca, "notify")[0]
    assert not verifier.crl.is_revoked(twin)
    assert verifier.crl.is_revoked(revoked)


def test_kernel_tls_a_certificate_whose_issuer_has_no_crl_is_refused(ca, directory, tmp_path_factory):
    only_agencies = tmp_path_factory.mktemp("crl") / "agencies-only.pem"
    blocks = (ca / "crl.pem").read_bytes().split(b"-----BEGIN X509 CRL-----")[1:]
    only_agencies.write_bytes(b"-----BEGIN X509 CRL-----" + blocks[1])  # root, agencies-ca, mesh-ca
    trusted = x509.load_pem_x509_certificates((ca / "ca.crt").read_bytes())
    verifier = tls.PeerVerifier(directory, tls.RevocationList(only_agencies, trusted))
    assert verifier.identify(_pem(ca, "agencies", AGENCY)).agency_id == AGENCY
    with pytest.raises(tls.CertificateRefused, match="no revocation list"):
        verifier.identify(_pem(ca, "coordinators", "coord-gm0518"), roles=tls.ROLES)


def test_kernel_tls_a_crl_past_its_next_update_beyond_the_grace_fails_closed(ca, directory):
    crl_days = pki.CRL_DAYS
    within = datetime.now(UTC) + timedelta(days=crl_days, minutes=30)
    beyond = datetime.now(UTC) + timedelta(days=crl_days, hours=2)
    in_grace = _verifier(ca, directory, grace_seconds=3600, clock=lambda: within)
    in_grace.crl.check(pki.load_cert(ca / "agencies" / f"{AGENCY}.crt"))
    stale = _verifier(ca, directory, grace_seconds=3600, clock=lambda: beyond)
    with pytest.raises(tls.CertificateRefused, match="out of date"):
        stale.crl.check(pki.load_cert(ca / "agencies" / f"{AGENCY}.crt"))


def test_kernel_tls_crls_from_a_folder(ca, directory, tmp_path_factory):
    folder = tmp_path_factory.mktemp("crls")
    for index, block in enumerate((ca / "crl.pem").read_bytes().split(b"-----BEGIN X509 CRL-----")[1:]):
        (folder / f"ca-{index}.pem").write_bytes(b"-----BEGIN X509 CRL-----" + block)
    trusted = x509.load_pem_x509_certificates((ca / "ca.crt").read_bytes())
    verifier = tls.PeerVerifier(directory, tls.RevocationList(folder, trusted))
    assert verifier.identify(_pem(ca, "system", "notify"), roles=tls.ROLES).name == "notify"


def test_kernel_tls_chain_files_carry_the_intermediate(ca):
    chain = (ca / "agencies" / f"{AGENCY}.crt").read_bytes()
    certificates = x509.load_pem_x509_certificates(chain)
    assert len(certificates) == 2
    assert certificates[0].issuer == certificates[1].subject
    assert (
        certificates[1].public_bytes(serialization.Encoding.PEM)
        == (ca / "intermediates" / "agencies-ca.crt").read_bytes()
    )
