"""A local certificate authority for the demo and the tests: `mesh pki init DIR`.

Lays out, in DIR:

    ca.crt  ca.key                 root CA (the trust root the referral service is given)
    server.crt  server.key         the referral service (127.0.0.1, ::1, localhost + --host)
    crl.pem                        certificate revocation list signed by the CA
    agencies/<agency-id>.crt .key  one client certificate per agency of the directory:
                                   subject serialNumber = the agency's OIN (as PKIoverheid
                                   certificates carry it), O = its name, CN = its agency id
    revoked.json                   the revocations the CRL is built from (serial, agency, when)

Idempotent: what exists is kept; missing files are added (e.g. a new agency in the directory);
`--revoke ID` puts that agency's current certificate on the CRL (permanent, as in any PKI),
`--renew ID` gives an agency a fresh certificate (the old one stays valid unless revoked).
The CRL is re-signed only when the revocations change or it is close to its next update.

This is a demo/test CA. Production agencies use PKIoverheid certificates; the service only
needs the trust root (MESH_TLS_CA) and the CA's CRL (MESH_TLS_CRL).
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
CRL_DAYS = 30
CRL_REFRESH_BEFORE = timedelta(days=7)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_key(path: Path, key) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_key(path: Path):
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def make_ca(common_name: str = "Referral Mesh Demo Root CA", organisation: str = "Referral Mesh (demo)"):
    """A self-signed root: (certificate, key). Also used by the tests for a foreign CA."""
    key = new_key()
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca_cert, ca_key, subject: x509.Name, *, server_names=(), client: bool):
    key = new_key()
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_names:
        alt = []
        for name in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def agency_subject(agency_id: str, name: str, oin: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64]),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, oin),
        x509.NameAttribute(NameOID.COMMON_NAME, agency_id),
    ])


def issue_agency(ca_cert, ca_key, agency_id: str, name: str, oin: str):
    return _leaf(ca_cert, ca_key, agency_subject(agency_id, name, oin), client=True)


def issue_server(ca_cert, ca_key, names=("127.0.0.1", "::1", "localhost")):
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referral Mesh (demo)"),
        x509.NameAttribute(NameOID.COMMON_NAME, "referral-service"),
    ])
    return _leaf(ca_cert, ca_key, subject, server_names=names, client=False)


def make_crl(ca_cert, ca_key, revoked: list[dict]) -> x509.CertificateRevocationList:
    now = _now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry["serial"]))
            .revocation_date(datetime.fromisoformat(entry["revoked_at"]))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(ca_key, hashes.SHA256())


def init(
    directory: Path,
    agencies,
    *,
    revoke: tuple[str, ...] = (),
    renew: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    log=print,
) -> None:
    """Create or complete the PKI in `directory` for `agencies` (Agency objects of the directory)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agencies").mkdir(exist_ok=True)
    known = {agency.agency_id: agency for agency in agencies}
    for agency_id in (*revoke, *renew):
        if agency_id not in known:
            raise SystemExit(f"error: {agency_id!r} is not an agency of the directory")

    ca_crt, ca_key_path = directory / "ca.crt", directory / "ca.key"
    if ca_crt.exists() and ca_key_path.exists():
        ca_cert, ca_key = load_cert(ca_crt), load_key(ca_key_path)
    else:
        ca_cert, ca_key = make_ca()
        write_key(ca_key_path, ca_key)
        write_cert(ca_crt, ca_cert)
        log(f"created root CA {ca_crt}")

    names = ("127.0.0.1", "::1", "localhost", *server_names)
    server_crt = directory / "server.crt"
    if not server_crt.exists() or not _has_names(load_cert(server_crt), names):
        cert, key = issue_server(ca_cert, ca_key, names)
        write_key(directory / "server.key", key)
        write_cert(server_crt, cert)
        log(f"issued server certificate for {', '.join(names)}")

    for agency_id, agency in known.items():
        crt = directory / "agencies" / f"{agency_id}.crt"
        if crt.exists() and agency_id not in renew:
            continue
        cert, key = issue_agency(ca_cert, ca_key, agency_id, agency.name, agency.oin)
        write_key(directory / "agencies" / f"{agency_id}.key", key)
        write_cert(crt, cert)
        log(f"issued certificate for {agency_id} (OIN {agency.oin})")

    state_path = directory / "revoked.json"
    revoked: list[dict] = json.loads(state_path.read_text()) if state_path.exists() else []
    changed = False
    for agency_id in revoke:
        serial = str(load_cert(directory / "agencies" / f"{agency_id}.crt").serial_number)
        if any(entry["serial"] == serial for entry in revoked):
            continue
        revoked.append({"serial": serial, "agency": agency_id, "revoked_at": _now().isoformat()})
        changed = True
        log(f"revoked the current certificate of {agency_id} (serial {serial})")
    if changed:
        write_atomic(state_path, (json.dumps(revoked, indent=2) + "\n").encode())

    crl_path = directory / "crl.pem"
    if changed or not crl_path.exists() or _crl_stale(crl_path):
        crl = make_crl(ca_cert, ca_key, revoked)
        write_atomic(crl_path, crl.public_bytes(serialization.Encoding.PEM))
        log(f"signed CRL with {len(revoked)} revoked certificate(s)")


def _has_names(cert: x509.Certificate, names) -> bool:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = {str(v) for v in alt.get_values_for_type(x509.DNSName)}
    present |= {str(v) for v in alt.get_values_for_type(x509.IPAddress)}
    return all((str(ipaddress.ip_address(n)) if _is_ip(n) else n) in present for n in names)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _crl_stale(path: Path) -> bool:
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError:
        return True
    return crl.next_update_utc is None or crl.next_update_utc - _now() < CRL_REFRESH_BEFORE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="pki_command", required=True)
    init_cmd = commands.add_parser("init", help="create or complete a local CA, server and agency certificates, CRL")
    init_cmd.add_argument("dir", type=Path, help="folder for the PKI (created if missing)")
    init_cmd.add_argument("--revoke", action="append", default=[], metavar="AGENCY_ID",
                          help="put this agency's current certificate on the CRL (repeatable)")
    init_cmd.add_argument("--renew", action="append", default=[], metavar="AGENCY_ID",
                          help="issue this agency a new certificate (repeatable)")
    init_cmd.add_argument("--host", action="append", default=[], metavar="NAME",
                          help="extra DNS name or IP address for the server certificate (repeatable)")
    init_cmd.add_argument("--directory", type=Path, default=None,
                          help="agency directory YAML (default: MESH_AGENCY_DIRECTORY_PATH / built-in)")


def run(options) -> int:
    from meshkernel.config import settings
    from services.referral.domain import load_directory

    directory = load_directory(options.directory or settings().agency_directory_path)
    init(
        options.dir, list(directory), revoke=tuple(options.revoke), renew=tuple(options.renew),
        server_names=tuple(options.host),
    )
    print(f"PKI ready in {options.dir}", file=sys.stderr)
    return 0
