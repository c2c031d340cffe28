"""The operator role (certificate URI name, development header) and the directory feed's
record handling; both without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshkernel import envelope as envelopes
from meshkernel.callers import DEV_OPERATOR_HEADER, principal_of
from meshkernel.directory_feed import apply_record
from meshkernel.principal import OPERATOR
from meshkernel.tls import ROLES, CertificateRefused, mesh_role_of
from referralmesh.v1 import common_pb2, events_pb2


def _certificate(uri: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def test_an_operator_certificate_names_the_operator_role():
    assert mesh_role_of(_certificate("urn:referralmesh:operator:ops-anna")) == (OPERATOR, "ops-anna", None)


@pytest.mark.parametrize(
    "uri", ["urn:referralmesh:operator:", "urn:referralmesh:operator:A B", "urn:referralmesh:operator:x:y"]
)
def test_a_malformed_operator_name_is_refused(uri):
    with pytest.raises(CertificateRefused):
        mesh_role_of(_certificate(uri))


def test_the_case_apis_do_not_admit_operators_by_default():
    assert OPERATOR not in ROLES


class _Context:
    def __init__(self, metadata, peer="ipv4:127.0.0.1:5000"):
        self._metadata, self._peer = metadata, peer

    def invocation_metadata(self):
        return self._metadata

    def peer(self):
        return self._peer


def test_the_development_operator_header_is_honoured_in_local_mode_only():
    context = _Context(((DEV_OPERATOR_HEADER, "ops"),))
    principal = principal_of(context, development_identities=True)
    assert (principal.role, principal.name, principal.is_operator) == (OPERATOR, "ops", True)
    from meshkernel.callers import NoIdentity

    with pytest.raises(NoIdentity):
        principal_of(context, development_identities=False)
    with pytest.raises(NoIdentity):
        principal_of(_Context(((DEV_OPERATOR_HEADER, "ops"),), peer="ipv4:10.0.0.9:5000"), development_identities=True)


def _directory_record(agency_id: str = "shelter-zwolle") -> bytes:
    change = events_pb2.AgencyDirectoryChanged(
        change="ADDED", agency=common_pb2.DirectoryAgency(agency_id=agency_id, client_display_name="Harbour Light")
    )
    wrapped = envelopes.new_envelope(
        case_id=agency_id or "x", producer="referral", event_id="e1", agency_directory_changed=change
    )
    return envelopes.encode(wrapped)


def test_the_directory_feed_hands_each_change_to_its_listener():
    seen: list[str] = []
    assert apply_record(_directory_record(), lambda change: seen.append(change.agency.agency_id))
    assert seen == ["shelter-zwolle"]


@pytest.mark.parametrize("raw", [b"", b"\x00garbage", None])
def test_an_unreadable_directory_record_is_skipped(raw):
    seen: list[object] = []
    assert not apply_record(raw, seen.append)
    assert seen == []


def test_a_directory_record_without_an_agency_id_is_skipped():
    seen: list[object] = []
    assert not apply_record(_directory_record(""), seen.append)
    assert seen == []
