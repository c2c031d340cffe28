"""Certificate expiry as a metric, so operators are warned before a certificate runs out
(deploy/prometheus/alerts.yaml, MeshCertificateExpiresSoon).

`referralmesh_tls_certificate_not_after_seconds{referralmesh_certificate, referralmesh_subject}`:
the notAfter of the server certificate and of every CA in the trust bundle, as a Unix time.
Subjects are the certificates' common names: services and CAs, never a person.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from opentelemetry.metrics import Observation

from meshkernel.metrics import meter

_observed: list[tuple[str, x509.Certificate]] = []


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def certificate_observations(certificates: Iterable[tuple[str, x509.Certificate]]) -> list[Observation]:
    return [
        Observation(
            certificate.not_valid_after_utc.timestamp(),
            {"referralmesh.certificate": kind, "referralmesh.subject": _common_name(certificate)},
        )
        for kind, certificate in certificates
    ]


def observe_certificate_expiry(server_cert: Path, trust_bundle: Path) -> None:
    """Register (once per process) the expiry gauge for these files, as read now."""
    first = not _observed
    _observed[:] = [("server", x509.load_pem_x509_certificates(server_cert.read_bytes())[0])]
    _observed.extend(("ca", ca) for ca in x509.load_pem_x509_certificates(trust_bundle.read_bytes()))
    if first:

        def observe(_options: Any) -> list[Observation]:
            return certificate_observations(_observed)

        meter(__name__).create_observable_gauge(
            "referralmesh.tls.certificate.not_after",
            callbacks=[observe],
            unit="s",
            description="notAfter of the server certificate and the trust bundle's CAs (Unix time)",
        )
