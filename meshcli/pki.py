"""A local certificate authority for the demo and the tests: `mesh pki init DIR`.

Lays out, in DIR (a root CA and two intermediates, as PKIoverheid issues from several):

    ca.crt  ca.key                   trust bundle (root first, then the intermediates); root key
    intermediates/agencies-ca.*      intermediate CA for agencies' certificates
    intermediates/mesh-ca.*          intermediate CA for servers, coordinators and services
    server.crt  server.key           the services' server certificate (127.0.0.1, ::1, localhost
                                     + --host), chain included
    agencies/<agency-id>.crt .key    one client certificate per agency of the directory:
                                     subject serialNumber = the agency's OIN (as PKIoverheid
                                     certificates carry it), O = its name, CN = its agency id
    coordinators/<user>.crt .key     coordinators: URI name urn:referralmesh:coordinator:SCOPE:USER,
                                     one per region (coord-gm0518, scope GM0518) and coord-national
    system/<service>.crt .key        the mesh's own services: urn:referralmesh:system:SERVICE
    operators/<name>.crt .key        the mesh's operators (agency directory admin API):
                                     urn:referralmesh:operator:NAME; `operator` by default
    crl.pem                          one CRL per CA (root, agencies-ca, mesh-ca), in one file
    revoked.json                     the revocations the CRLs are built from

Idempotent: what exists is kept; missing files are added (e.g. a new agency in the directory);
`--revoke NAME` puts that agency's, coordinator's or service's current certificate on its CA's
CRL (permanent, as in any PKI), `--renew NAME` issues a fresh one (the old one stays valid
unless revoked). A CRL is re-signed only when its revocations change or it nears its next update.
A folder from before the intermediates were added is started afresh.

This is a demo/test CA. Production agencies use PKIoverheid certificates; the services need the
trust bundle (MESH_TLS_CA) and the CRL of every issuing CA (MESH_TLS_CRL).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
CRL_DAYS = 30
CRL_REFRESH_BEFORE = timedelta(days=7)


def _now() -> datetime:
    return datetime.now(UTC)


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


def make_ca(
    common_name: str = "Referral Mesh Demo Root CA",
    organisation: str = "Referral Mesh (demo)",
    *,
    issuer: tuple | None = None,
):
    """A CA: (certificate, key); self-signed root, or an intermediate signed by `issuer`
    (certificate, key). Also used by the tests for a foreign CA."""
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0 if issuer else 1), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def _leaf(
    ca_cert,
    ca_key,
    subject: x509.Name,
    *,
    server_names=(),
    client: bool,
    uri: str | None = None,
    server_too: bool = False,
):
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
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                if server_too
                else [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    alt: list[x509.GeneralName] = []
    for name in server_names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    if uri:
        alt.append(x509.UniformResourceIdentifier(uri))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def agency_subject(agency_id: str, name: str, oin: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name[:64]),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, oin),
            x509.NameAttribute(NameOID.COMMON_NAME, agency_id),
        ]
    )


def issue_agency(ca_cert, ca_key, agency_id: str, name: str, oin: str):
    return _leaf(ca_cert, ca_key, agency_subject(agency_id, name, oin), client=True)


def issue_server(ca_cert, ca_key, names=("127.0.0.1", "::1", "localhost")):
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referral Mesh (demo)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "referral-service"),
        ]
    )
    return _leaf(ca_cert, ca_key, subject, server_names=names, client=False)


def coordinator_name(scope: str) -> str:
    """The user name of a region's coordinator (coord-gm0518), or the national one."""
    return f"coord-{scope.lower()}"


def issue_coordinator(ca_cert, ca_key, username: str, scope: str):
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referral Mesh (demo)"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "coordinators"),
            x509.NameAttribute(NameOID.COMMON_NAME, username),
        ]
    )
    return _leaf(ca_cert, ca_key, subject, client=True, uri=f"urn:referralmesh:coordinator:{scope}:{username}")


def issue_system(ca_cert, ca_key, service: str):
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referral Mesh (demo)"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "services"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{service}-service"),
        ]
    )
    return _leaf(ca_cert, ca_key, subject, client=True, uri=f"urn:referralmesh:system:{service}")


def issue_operator(ca_cert, ca_key, name: str):
    """An operator of the mesh: may call the agency directory's admin API (AgencyAdminService)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referral Mesh (demo)"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "operators"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    return _leaf(ca_cert, ca_key, subject, client=True, uri=f"urn:referralmesh:operator:{name}")


def issue_kafka_broker(ca_cert, ca_key, names=("127.0.0.1", "::1", "localhost")):
    """A broker certificate for TLS listeners; it is a client too, of its own controller listener,
    where Kafka maps the CN to the broker's principal (User:broker)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Referral Mesh (demo)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "broker"),
        ]
    )
    return _leaf(ca_cert, ca_key, subject, server_names=names, client=True, server_too=True)


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


AGENCIES_CA, MESH_CA, ROOT = "agencies-ca", "mesh-ca", "root"
SYSTEM_SERVICES = ("referral", "region", "notify")


def write_chain(path: Path, cert: x509.Certificate, *issuers: x509.Certificate) -> None:
    write_atomic(path, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (cert, *issuers)))


def _ensure_ca(crt: Path, key_path: Path, make, log) -> tuple[Any, Any]:
    if crt.exists() and key_path.exists():
        return load_cert(crt), load_key(key_path)
    cert, key = make()
    write_key(key_path, key)
    write_cert(crt, cert)
    log(f"created CA {cert.subject.rfc4514_string()}")
    return cert, key


def init(
    directory: Path,
    agencies,
    *,
    regions: tuple[str, ...] = (),
    revoke: tuple[str, ...] = (),
    renew: tuple[str, ...] = (),
    server_names: tuple[str, ...] = (),
    operators: tuple[str, ...] = ("operator",),
    log=print,
) -> None:
    """Create or complete the PKI in `directory` for `agencies` (Agency objects of the
    directory), the coordinators of `regions` (region codes) and the national coordinator."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.crt").exists() and not (directory / "intermediates").exists():
        log("a PKI without intermediate CAs: starting afresh")
        for stale in ("ca.crt", "ca.key", "server.crt", "server.key", "crl.pem", "revoked.json"):
            (directory / stale).unlink(missing_ok=True)
        for folder in ("agencies",):
            for stale_file in (directory / folder).glob("*") if (directory / folder).exists() else ():
                stale_file.unlink()
    for folder in ("agencies", "coordinators", "system", "operators", "intermediates"):
        (directory / folder).mkdir(exist_ok=True)

    # Who gets a certificate: name -> (folder, issuing CA, how to issue).
    holders: dict[str, tuple[str, str, Callable[..., Any]]] = {}
    for agency in agencies:
        holders[agency.agency_id] = (
            "agencies",
            AGENCIES_CA,
            lambda ca, a=agency: issue_agency(ca[0], ca[1], a.agency_id, a.name, a.oin),
        )
    for scope in (*regions, "NATIONAL"):
        name = coordinator_name(scope)
        holders[name] = ("coordinators", MESH_CA, lambda ca, n=name, sc=scope: issue_coordinator(ca[0], ca[1], n, sc))
    for service in SYSTEM_SERVICES:
        holders[service] = ("system", MESH_CA, lambda ca, sv=service: issue_system(ca[0], ca[1], sv))
    for operator in operators:
        holders[operator] = ("operators", MESH_CA, lambda ca, op=operator: issue_operator(ca[0], ca[1], op))
    for name in (*revoke, *renew):
        if name not in holders:
            raise SystemExit(f"error: {name!r} is not an agency, coordinator or service of this PKI")

    root = _ensure_ca(directory / "root.crt", directory / "ca.key", make_ca, log)
    cas = {
        ROOT: root,
        AGENCIES_CA: _ensure_ca(
            directory / "intermediates" / "agencies-ca.crt",
            directory / "intermediates" / "agencies-ca.key",
            lambda: make_ca("Referral Mesh Demo Agencies CA", issuer=root),
            log,
        ),
        MESH_CA: _ensure_ca(
            directory / "intermediates" / "mesh-ca.crt",
            directory / "intermediates" / "mesh-ca.key",
            lambda: make_ca("Referral Mesh Demo Services CA", issuer=root),
            log,
        ),
    }
    bundle = b"".join(cas[name][0].public_bytes(serialization.Encoding.PEM) for name in (ROOT, AGENCIES_CA, MESH_CA))
    if not (directory / "ca.crt").exists() or (directory / "ca.crt").read_bytes() != bundle:
        write_atomic(directory / "ca.crt", bundle)

    names = ("127.0.0.1", "::1", "localhost", *server_names)
    server_crt = directory / "server.crt"
    if not server_crt.exists() or not _has_names(load_cert(server_crt), names):
        cert, key = issue_server(*cas[MESH_CA], names)
        write_key(directory / "server.key", key)
        write_chain(server_crt, cert, cas[MESH_CA][0])
        log(f"issued server certificate for {', '.join(names)}")

    for name, (folder, issuer, issue) in holders.items():
        crt = directory / folder / f"{name}.crt"
        if crt.exists() and name not in renew:
            continue
        cert, key = issue(cas[issuer])
        write_key(directory / folder / f"{name}.key", key)
        write_chain(crt, cert, cas[issuer][0])
        log(f"issued certificate for {name} ({folder})")

    state_path = directory / "revoked.json"
    revoked: list[dict] = json.loads(state_path.read_text()) if state_path.exists() else []
    changed = False
    for name in revoke:
        folder, issuer, _issue = holders[name]
        serial = str(load_cert(directory / folder / f"{name}.crt").serial_number)
        if any(entry["serial"] == serial for entry in revoked):
            continue
        revoked.append({"serial": serial, "holder": name, "issuer": issuer, "revoked_at": _now().isoformat()})
        changed = True
        log(f"revoked the current certificate of {name} (serial {serial})")
    if changed:
        write_atomic(state_path, (json.dumps(revoked, indent=2) + "\n").encode())

    crl_path = directory / "crl.pem"
    if changed or not crl_path.exists() or _crl_stale(crl_path, len(cas)):
        crls = [
            make_crl(*cas[name], [e for e in revoked if e.get("issuer", AGENCIES_CA) == name])
            for name in (ROOT, AGENCIES_CA, MESH_CA)
        ]
        write_atomic(crl_path, b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in crls))
        log(f"signed CRLs of {len(crls)} CAs with {len(revoked)} revoked certificate(s)")


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


def _crl_stale(path: Path, expected: int) -> bool:
    data = path.read_bytes()
    blocks = [b"-----BEGIN X509 CRL-----" + part for part in data.split(b"-----BEGIN X509 CRL-----")[1:]]
    try:
        crls = [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError:
        return True
    return len(crls) != expected or any(
        crl.next_update_utc is None or crl.next_update_utc - _now() < CRL_REFRESH_BEFORE for crl in crls
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="pki_command", required=True)
    init_cmd = commands.add_parser(
        "init",
        help="create or complete a local CA with intermediates, certificates for the servers, agencies,"
        " coordinators and services, and CRLs",
    )
    init_cmd.add_argument("dir", type=Path, help="folder for the PKI (created if missing)")
    init_cmd.add_argument(
        "--revoke",
        action="append",
        default=[],
        metavar="NAME",
        help="put this agency's, coordinator's or service's current certificate on the CRL (repeatable)",
    )
    init_cmd.add_argument(
        "--renew",
        action="append",
        default=[],
        metavar="NAME",
        help="issue this agency, coordinator or service a new certificate (repeatable)",
    )
    init_cmd.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP address for the server certificate (repeatable)",
    )
    init_cmd.add_argument(
        "--directory",
        type=Path,
        default=None,
        help="agency directory YAML (default: MESH_AGENCY_DIRECTORY_PATH / built-in)",
    )


def run(options) -> int:
    from meshkernel.config import settings
    from referencedata.agencies import load_directory
    from services.region.domain.policy import load_policy

    directory = load_directory(options.directory or settings().agency_directory_path)
    regions = tuple(region.code for region in load_policy(settings().region_policy_path).regions)
    init(
        options.dir,
        list(directory),
        regions=regions,
        revoke=tuple(options.revoke),
        renew=tuple(options.renew),
        server_names=tuple(options.host),
    )
    print(f"PKI ready in {options.dir}", file=sys.stderr)
    return 0
