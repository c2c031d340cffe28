"""Mutual TLS for every gRPC server and client of the mesh: credentials, the peer behind a certificate, CRLs.

gRPC core (BoringSSL) does the handshake: TLS 1.2 or 1.3 only (its default minimum is 1.2),
the server certificate, and a client certificate that must chain to the configured trust root
(`require_client_auth=True`). What gRPC does not do for Python is identify the organisation
and check revocation; that is here, and runs for every call before any handler logic
(`AuthInterceptor`):

1. the peer certificate from `context.auth_context()['x509_pem_cert']`;
2. its serial number must not be on the CRL (loaded at start, reloaded when the file changes;
   the CRL's signature must verify against the trust root);
3. its subject serialNumber is the organisation's OIN (20 digits, as PKIoverheid certificates
   carry it); `Directory.by_oin` gives the agency. An unknown OIN is refused.

Failures are UNAUTHENTICATED with a short reason and are logged without personal data.
"""
from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

OIN_RE = re.compile(r"^\d{20}$")
# Services a certificate from the trust root may call without being an agency of the directory
# (an operator's monitoring certificate); revoked certificates are refused here too.
INFRASTRUCTURE_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")


class KnownAgency(Protocol):
    agency_id: str


class AgencyLookup(Protocol):
    """The agency directory as the verifier needs it: the agency with an OIN, or None."""

    def by_oin(self, oin: str) -> KnownAgency | None: ...


class CertificateRefused(Exception):
    """The peer certificate does not identify an agency that may call; the text says why."""


@dataclass(frozen=True)
class PeerIdentity:
    agency_id: str | None  # None: a valid, unrevoked certificate that is no agency (infrastructure)
    oin: str | None
    serial: int


class RevocationList:
    """The CA's CRL, loaded from a file and reloaded when the file changes.

    A CRL whose signature does not verify against the trust root is refused at start; if a
    later version cannot be read or verified (e.g. half written), the last good list stays in
    force and the problem is logged, and it is tried again on the next call.
    """

    def __init__(self, path: Path, issuer: x509.Certificate):
        self.path = Path(path)
        self.issuer = issuer
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._revoked: frozenset[int] = frozenset()
        self.next_update: datetime | None = None
        problem = self._load()
        if problem:
            raise ValueError(f"cannot use the CRL {self.path}: {problem}")

    def _file_stamp(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> str | None:
        """Load the file; the problem if it cannot be used (the last good list then stays)."""
        stamp = self._file_stamp()
        try:
            data = self.path.read_bytes()
            crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
            if crl.issuer != self.issuer.subject or not crl.is_signature_valid(self.issuer.public_key()):
                raise ValueError("not signed by the trust root")
        except (OSError, ValueError) as error:
            log.error("certificate revocation list not usable", extra={"path": str(self.path), "reason": str(error)})
            self._stamp = stamp  # do not retry a broken file on every call; a new write changes the stamp
            return str(error) or type(error).__name__
        self._revoked = frozenset(entry.serial_number for entry in crl)
        self.next_update = crl.next_update_utc
        self._stamp = stamp
        if self.next_update is not None and self.next_update < datetime.now(timezone.utc):
            log.warning("certificate revocation list is past its next update", extra={"path": str(self.path)})
        log.info("certificate revocation list loaded", extra={"revoked": len(self._revoked)})
        return None

    def refresh(self) -> None:
        if self._file_stamp() != self._stamp:
            with self._lock:
                if self._file_stamp() != self._stamp:
                    self._load()

    def is_revoked(self, serial: int) -> bool:
        self.refresh()
        return serial in self._revoked

    def __len__(self) -> int:
        return len(self._revoked)


def oin_of(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1:
        raise CertificateRefused("the certificate carries no single organisation number (subject serialNumber)")
    oin = str(values[0].value).strip()
    if not OIN_RE.match(oin):
        raise CertificateRefused("the subject serialNumber of the certificate is not a 20-digit OIN")
    return oin


@functools.lru_cache(maxsize=1024)
def _parse_certificate(pem: bytes) -> x509.Certificate:
    """Parsed once per distinct certificate (every call of a connection carries the same one)."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateRefused("the client certificate cannot be read") from None


class PeerVerifier:
    """Turns the peer certificate of a call into an agency of the directory, or refuses it."""

    def __init__(self, directory: AgencyLookup, crl: RevocationList | None):
        self.directory = directory
        self.crl = crl

    def identify(self, pem: bytes, *, require_agency: bool = True) -> PeerIdentity:
        certificate = _parse_certificate(bytes(pem))
        if self.crl is not None and self.crl.is_revoked(certificate.serial_number):
            raise CertificateRefused("the client certificate has been revoked")
        now = datetime.now(timezone.utc)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise CertificateRefused("the client certificate is not valid at this time")
        try:
            usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
                raise CertificateRefused("the certificate is not meant for client authentication")
        except x509.ExtensionNotFound:
            pass
        try:
            oin = oin_of(certificate)
        except CertificateRefused:
            if require_agency:
                raise
            return PeerIdentity(agency_id=None, oin=None, serial=certificate.serial_number)
        agency = self.directory.by_oin(oin)
        if agency is None:
            if require_agency:
                raise CertificateRefused("the organisation of this certificate is not in the agency directory")
            return PeerIdentity(agency_id=None, oin=oin, serial=certificate.serial_number)
        return PeerIdentity(agency_id=agency.agency_id, oin=oin, serial=certificate.serial_number)

    def identify_context(self, context, *, require_agency: bool = True) -> PeerIdentity:
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            raise CertificateRefused("no client certificate on this connection")
        return self.identify(pems[0], require_agency=require_agency)


# ----------------------------------------------------------------------------- server side

@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    ca: Path
    crl: Path | None


def server_tls_from(config) -> ServerTls | None:
    """The configured server TLS files, None when none are set; a partial set is an error."""
    paths = {name: getattr(config, name, None) for name in ("tls_cert", "tls_key", "tls_ca")}
    if not any(paths.values()) and not getattr(config, "tls_crl", None):
        return None
    missing = [f"MESH_{name.upper()}" for name, value in paths.items() if not value]
    if missing:
        raise ValueError(f"mutual TLS needs {', '.join(missing)} as well")
    return ServerTls(Path(config.tls_cert), Path(config.tls_key), Path(config.tls_ca),
                     Path(config.tls_crl) if config.tls_crl else None)


def server_credentials(tls: ServerTls) -> grpc.ServerCredentials:
    """mTLS: our certificate, client certificates required and checked against the trust root.

    gRPC core negotiates TLS 1.2 and 1.3 only (its minimum is 1.2; there is no Python option
    to lower it); tests/integration/referral_mtls checks that TLS 1.0/1.1 handshakes fail.
    """
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.ca.read_bytes(),
        require_client_auth=True,
    )


def make_verifier(tls: ServerTls, directory: AgencyLookup) -> PeerVerifier:
    roots = x509.load_pem_x509_certificates(tls.ca.read_bytes())
    crl = None
    if tls.crl is not None:
        issuer = _crl_issuer(tls.crl, roots)
        crl = RevocationList(tls.crl, issuer)
    else:
        log.warning("mutual TLS without a CRL (MESH_TLS_CRL): revoked certificates cannot be refused")
    return PeerVerifier(directory, crl)


def _crl_issuer(path: Path, roots: list[x509.Certificate]) -> x509.Certificate:
    data = path.read_bytes()
    crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    for root in roots:
        if root.subject == crl.issuer:
            return root
    raise ValueError(f"the CRL {path} is not issued by the trust root")


# The authenticated peer of the call being served (set by AuthInterceptor, read by identity.py).
current_peer: contextvars.ContextVar[PeerIdentity | None] = contextvars.ContextVar("mesh_peer", default=None)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call from its client certificate before the handler runs."""

    def __init__(self, verifier: PeerVerifier):
        self.verifier = verifier

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method or ""
        require_agency = not method.lstrip("/").startswith(INFRASTRUCTURE_SERVICES)
        return _wrap(handler, self.verifier, require_agency)


def _authenticate(verifier: PeerVerifier, context, require_agency: bool) -> str | None:
    """The refusal reason, or None after stashing the peer for the handler."""
    try:
        current_peer.set(verifier.identify_context(context, require_agency=require_agency))
        return None
    except CertificateRefused as refused:
        log.warning("call refused: %s", refused, extra={"peer": context.peer()})
        return str(refused)


def _wrap(handler: grpc.RpcMethodHandler, verifier: PeerVerifier, require_agency: bool):
    if handler.unary_unary:
        behaviour, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        behaviour, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler

    if inspect.isasyncgenfunction(behaviour):
        async def guarded(request_or_iterator, context):
            refused = _authenticate(verifier, context, require_agency)
            if refused:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
            async for response in behaviour(request_or_iterator, context):
                yield response
    elif inspect.iscoroutinefunction(behaviour):
        async def guarded(request_or_iterator, context):
            refused = _authenticate(verifier, context, require_agency)
            if refused:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
            return await behaviour(request_or_iterator, context)
    else:  # a synchronous handler (run by gRPC in its thread pool): the same check first
        def guarded(request_or_iterator, context):
            refused = _authenticate(verifier, context, require_agency)
            if refused:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
            return behaviour(request_or_iterator, context)

    return factory(
        guarded,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


# ----------------------------------------------------------------------------- client side

def channel_credentials(ca: Path, cert: Path, key: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes(),
        private_key=Path(key).read_bytes(),
        certificate_chain=Path(cert).read_bytes(),
    )

