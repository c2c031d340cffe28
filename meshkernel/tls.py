"""Mutual TLS for every gRPC server and client of the mesh: credentials, who is behind a
certificate, revocation lists per issuing CA.

gRPC core (BoringSSL) does the handshake: TLS 1.2 or 1.3 only (its default minimum is 1.2),
the server certificate, and a client certificate that must chain to the configured trust
roots (`require_client_auth=True`). What gRPC does not do for Python is identify the caller
and check revocation; that is here, and runs for every call before any handler logic
(`AuthInterceptor`):

1. the peer certificate from `context.auth_context()['x509_pem_cert']`;
2. revocation: the CRL of the certificate's issuing CA (one per CA: PKIoverheid has several
   intermediates), matched on issuer and serial number. Fail closed: a certificate whose
   issuer has no CRL, or whose issuer's CRL is past its nextUpdate by more than the grace
   period (MESH_TLS_CRL_GRACE_SECONDS), is refused. CRLs are reloaded when their file changes;
3. who it is (`PeerIdentity.role`):
   - a coordinator: a URI subject alternative name `urn:referralmesh:coordinator:SCOPE:USER`
     (SCOPE a region code such as GM0518, or NATIONAL);
   - a mesh service ("system"): `urn:referralmesh:system:SERVICE`;
   - an operator of the mesh (the agency directory's admin API): `urn:referralmesh:operator:NAME`;
   - otherwise an agency: its subject serialNumber is the organisation's OIN (20 digits, as
     PKIoverheid certificates carry it), and the agency directory names it.
   Roles are only as good as the CA that signs them: the coordinator and system names are
   trusted because the trust roots are the mesh's own (see README, "Certificates").

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import grpc
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

OIN_RE = re.compile(r"^\d{20}$")
# Services a certificate from the trust root may call without being an agency of the directory
# (an operator's monitoring certificate); revoked certificates are refused here too.
INFRASTRUCTURE_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")


# Per CRL file: path, mtime_ns, size, inode; a change in any means read it again.
_Stamp = tuple[tuple[str, int, int, int], ...]


class KnownAgency(Protocol):
    @property
    def agency_id(self) -> str: ...


class AgencyLookup(Protocol):
    """The agency directory as the verifier needs it: the agency with an OIN, or None."""

    def by_oin(self, oin: str) -> KnownAgency | None: ...


class CertificateRefused(Exception):
    """The peer certificate does not identify an agency that may call; the text says why."""


AGENCY, COORDINATOR, SYSTEM, OPERATOR = "agency", "coordinator", "system", "operator"
# The roles that use the mesh's case APIs. OPERATOR is apart: it calls the referral service's
# AgencyAdminService only, and a server admits it only when it names it.
ROLES = frozenset({AGENCY, COORDINATOR, SYSTEM})
URN = "urn:referralmesh:"
SCOPE_RE = re.compile(r"^(NATIONAL|[A-Z]{2}\d{4})$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class PeerIdentity:
    agency_id: str | None  # None: not an agency (a coordinator, a service, or infrastructure)
    oin: str | None
    serial: int
    role: str | None = None  # AGENCY, COORDINATOR, SYSTEM, OPERATOR; None: a valid certificate of no role
    name: str = ""  # agency id, coordinator user name or service name
    scope: str | None = None  # a coordinator's region code, or NATIONAL


def _read_crls(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN" not in data:
        return [x509.load_der_x509_crl(data)]
    blocks = [b"-----BEGIN X509 CRL-----" + part for part in data.split(b"-----BEGIN X509 CRL-----")[1:]]
    if not blocks:
        raise ValueError("no X509 CRL in the file")
    return [x509.load_pem_x509_crl(block) for block in blocks]


def _crl_files(path: Path) -> list[Path]:
    """A file (one or more PEM CRLs, or one DER CRL), or a folder of them (*.pem, *.crl)."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in (".pem", ".crl") and p.is_file())
    return [path]


@dataclass(frozen=True)
class IssuerRevocations:
    issuer: str  # the issuing CA's name, for messages
    revoked: frozenset[int]
    next_update: datetime | None


class RevocationList:
    """The CRLs of the issuing CAs, from a file or folder, reloaded when a file changes.

    Every CRL must be signed by a CA of the trust bundle (roots and intermediates), or the
    list is refused at start; if a later version cannot be read or verified (e.g. half
    written), the last good lists stay in force, the problem is logged, and the file is tried
    again when it changes.
    """

    def __init__(
        self,
        path: Path,
        issuers: list[x509.Certificate],
        *,
        grace_seconds: float = 3600.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.path = Path(path)
        self.issuers = {issuer.subject: issuer for issuer in issuers}
        self.grace = timedelta(seconds=grace_seconds)
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        self._by_issuer: dict[x509.Name, IssuerRevocations] = {}
        problem = self._load()
        if problem:
            raise ValueError(f"cannot use the CRL {self.path}: {problem}")

    def _file_stamp(self) -> _Stamp | None:
        try:
            return tuple(
                (str(p), os.stat(p).st_mtime_ns, os.stat(p).st_size, os.stat(p).st_ino) for p in _crl_files(self.path)
            )
        except OSError:
            return None

    def _load(self) -> str | None:
        """Load the lists; the problem if they cannot be used (the last good lists then stay)."""
        stamp = self._file_stamp()
        loaded: dict[x509.Name, IssuerRevocations] = {}
        try:
            files = _crl_files(self.path)
            if not files:
                raise ValueError("no CRL files")
            for file in files:
                for crl in _read_crls(file.read_bytes()):
                    issuer = self.issuers.get(crl.issuer)
                    issuer_key: Any = issuer.public_key() if issuer is not None else None  # any CA key kind
                    if issuer is None or not crl.is_signature_valid(issuer_key):
                        raise ValueError("not signed by the trust root or an intermediate of the trust bundle")
                    loaded[crl.issuer] = IssuerRevocations(
                        issuer=crl.issuer.rfc4514_string(),
                        revoked=frozenset(entry.serial_number for entry in crl),
                        next_update=crl.next_update_utc,
                    )
        except (OSError, ValueError) as error:
            log.error("certificate revocation list not usable", extra={"path": str(self.path), "reason": str(error)})
            self._stamp = stamp  # do not retry a broken file on every call; a new write changes the stamp
            return str(error) or type(error).__name__
        self._by_issuer = loaded
        self._stamp = stamp
        for entry in loaded.values():
            if entry.next_update is not None and entry.next_update < self.clock():
                log.warning("certificate revocation list is past its next update", extra={"issuer": entry.issuer})
        log.info("certificate revocation lists loaded", extra={"issuers": len(loaded), "revoked": len(self)})
        return None

    def refresh(self) -> None:
        if self._file_stamp() != self._stamp:
            with self._lock:
                if self._file_stamp() != self._stamp:
                    self._load()

    def check(self, certificate: x509.Certificate) -> None:
        """Refuse a revoked certificate, and any certificate whose issuer's CRL is missing or stale."""
        self.refresh()
        entry = self._by_issuer.get(certificate.issuer)
        if entry is None:
            raise CertificateRefused("no revocation list for the CA that issued this certificate")
        if entry.next_update is not None and entry.next_update + self.grace < self.clock():
            raise CertificateRefused("the revocation list of the issuing CA is out of date")
        if certificate.serial_number in entry.revoked:
            raise CertificateRefused("the client certificate has been revoked")

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        self.refresh()
        entry = self._by_issuer.get(certificate.issuer)
        return entry is not None and certificate.serial_number in entry.revoked

    def __len__(self) -> int:
        return sum(len(entry.revoked) for entry in self._by_issuer.values())


def oin_of(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1:
        raise CertificateRefused("the certificate carries no single organisation number (subject serialNumber)")
    oin = str(values[0].value).strip()
    if not OIN_RE.match(oin):
        raise CertificateRefused("the subject serialNumber of the certificate is not a 20-digit OIN")
    return oin


def mesh_role_of(certificate: x509.Certificate) -> tuple[str, str, str | None] | None:
    """(role, name, scope) from a urn:referralmesh: URI name, or None for no such name."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = [uri for uri in names.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith(URN)]
    if not uris:
        return None
    if len(uris) > 1:
        raise CertificateRefused("the certificate names more than one mesh role")
    parts = uris[0][len(URN) :].split(":")
    if len(parts) == 3 and parts[0] == COORDINATOR and SCOPE_RE.match(parts[1]) and NAME_RE.match(parts[2]):
        return COORDINATOR, parts[2], parts[1]
    if len(parts) == 2 and parts[0] in (SYSTEM, OPERATOR) and NAME_RE.match(parts[1]):
        return parts[0], parts[1], None
    raise CertificateRefused("the certificate's mesh role name is not understood")


@functools.lru_cache(maxsize=1024)
def _parse_certificate(pem: bytes) -> x509.Certificate:
    """Parsed once per distinct certificate (every call of a connection carries the same one)."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise CertificateRefused("the client certificate cannot be read") from None


class PeerVerifier:
    """Turns the peer certificate of a call into an identity (agency, coordinator, system), or refuses it."""

    def __init__(self, directory: AgencyLookup, crl: RevocationList | None):
        self.directory = directory
        self.crl = crl

    def identify(self, pem: bytes, *, require_agency: bool = True, roles: frozenset[str] | None = None) -> PeerIdentity:
        """The identity behind `pem`. `roles` are the roles accepted (default: agencies only when
        `require_agency`, else any valid certificate of the trust roots, even one of no role)."""
        if roles is None and require_agency:
            roles = frozenset({AGENCY})
        certificate = _parse_certificate(bytes(pem))
        if self.crl is not None:
            self.crl.check(certificate)
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise CertificateRefused("the client certificate is not valid at this time")
        try:
            usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if (
                ExtendedKeyUsageOID.CLIENT_AUTH not in usages
                and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages
            ):
                raise CertificateRefused("the certificate is not meant for client authentication")
        except x509.ExtensionNotFound:
            pass
        identity = self._identity(certificate, roles)
        if roles is not None and identity.role not in roles:
            raise CertificateRefused(f"a {identity.role or 'certificate without a role'} may not call this service")
        return identity

    def _identity(self, certificate: x509.Certificate, roles: frozenset[str] | None) -> PeerIdentity:
        serial = certificate.serial_number
        mesh_role = mesh_role_of(certificate)
        if mesh_role is not None:
            role, name, scope = mesh_role
            return PeerIdentity(agency_id=None, oin=None, serial=serial, role=role, name=name, scope=scope)
        try:
            oin = oin_of(certificate)
        except CertificateRefused:
            if roles is not None and AGENCY in roles:
                raise
            return PeerIdentity(agency_id=None, oin=None, serial=serial)
        agency = self.directory.by_oin(oin)
        if agency is None:
            if roles is not None and AGENCY in roles:
                raise CertificateRefused("the organisation of this certificate is not in the agency directory")
            return PeerIdentity(agency_id=None, oin=oin, serial=serial)
        return PeerIdentity(agency_id=agency.agency_id, oin=oin, serial=serial, role=AGENCY, name=agency.agency_id)

    def identify_context(
        self, context: Any, *, require_agency: bool = True, roles: frozenset[str] | None = None
    ) -> PeerIdentity:
        auth = context.auth_context() or {}
        pems = auth.get("x509_pem_cert") or []
        if not pems:
            raise CertificateRefused("no client certificate on this connection")
        return self.identify(pems[0], require_agency=require_agency, roles=roles)


# ----------------------------------------------------------------------------- server side


@dataclass(frozen=True)
class ServerTls:
    cert: Path
    key: Path
    ca: Path  # trust bundle: roots and the intermediates whose CRLs are checked
    crl: Path | None  # a file of CRLs (one per issuing CA) or a folder of them
    crl_grace_seconds: float = 3600.0


def server_tls_from(config: Any) -> ServerTls | None:
    """The configured server TLS files, None when none are set; a partial set is an error."""
    paths = {name: getattr(config, name, None) for name in ("tls_cert", "tls_key", "tls_ca")}
    if not any(paths.values()) and not getattr(config, "tls_crl", None):
        return None
    missing = [f"MESH_{name.upper()}" for name, value in paths.items() if not value]
    if missing:
        raise ValueError(f"mutual TLS needs {', '.join(missing)} as well")
    return ServerTls(
        Path(config.tls_cert),
        Path(config.tls_key),
        Path(config.tls_ca),
        Path(config.tls_crl) if config.tls_crl else None,
        getattr(config, "tls_crl_grace_seconds", 3600.0),
    )


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
    from meshkernel.certificate_metrics import observe_certificate_expiry

    observe_certificate_expiry(tls.cert, tls.ca)
    trusted = x509.load_pem_x509_certificates(tls.ca.read_bytes())
    crl = None
    if tls.crl is not None:
        crl = RevocationList(tls.crl, trusted, grace_seconds=tls.crl_grace_seconds)
    else:
        log.warning("mutual TLS without a CRL (MESH_TLS_CRL): revoked certificates cannot be refused")
    return PeerVerifier(directory, crl)


# The authenticated peer of the call being served (set by AuthInterceptor, read by identity.py).
current_peer: contextvars.ContextVar[PeerIdentity | None] = contextvars.ContextVar("mesh_peer", default=None)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call from its client certificate before the handler runs.

    `roles`: who may call the service's own methods at all (which of them may do what is the
    application's decision); health and reflection take any valid certificate of the trust roots.
    """

    def __init__(self, verifier: PeerVerifier, roles: frozenset[str] = frozenset({AGENCY})):
        self.verifier = verifier
        self.roles = roles

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method or ""
        infrastructure = method.lstrip("/").startswith(INFRASTRUCTURE_SERVICES)
        return _wrap(handler, self.verifier, None if infrastructure else self.roles)


def _authenticate(verifier: PeerVerifier, context: Any, roles: frozenset[str] | None) -> str | None:
    """The refusal reason, or None after stashing the peer for the handler."""
    try:
        current_peer.set(verifier.identify_context(context, require_agency=False, roles=roles))
        return None
    except CertificateRefused as refused:
        log.warning("call refused: %s", refused, extra={"peer": context.peer()})
        return str(refused)


def _wrap(handler: grpc.RpcMethodHandler[Any, Any], verifier: PeerVerifier, roles: frozenset[str] | None) -> Any:
    behaviour: Any
    factory: Any
    if handler.unary_unary:
        behaviour, factory = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        behaviour, factory = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary:
        behaviour, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        behaviour, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler

    async def guarded_stream(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
        refused = _authenticate(verifier, context, roles)
        if refused:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        async for response in behaviour(request_or_iterator, context):
            yield response

    async def guarded_call(request_or_iterator: Any, context: Any) -> Any:
        refused = _authenticate(verifier, context, roles)
        if refused:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        return await behaviour(request_or_iterator, context)

    # a synchronous handler (run by gRPC in its thread pool): the same check first
    def guarded_sync(request_or_iterator: Any, context: Any) -> Any:
        refused = _authenticate(verifier, context, roles)
        if refused:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, refused)
        return behaviour(request_or_iterator, context)

    guarded: Callable[[Any, Any], Any]
    if inspect.isasyncgenfunction(behaviour):
        guarded = guarded_stream
    elif inspect.iscoroutinefunction(behaviour):
        guarded = guarded_call
    else:
        guarded = guarded_sync
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


@dataclass(frozen=True)
class ClientIdentity:
    """The certificate a client presents (with the trust bundle it checks the server against)."""

    cert: Path
    key: Path
    ca: Path

    def credentials(self) -> grpc.ChannelCredentials:
        return channel_credentials(self.ca, self.cert, self.key)


def client_identity_from(config: Any, *, agency: str | None = None) -> ClientIdentity | None:
    """The configured client certificate: an agency's from MESH_TLS_AGENCY_DIR (<agency>.crt/.key)
    when `agency` is given and that folder is set, else MESH_TLS_CLIENT_CERT/KEY; None when neither."""
    if agency and config.tls_agency_dir:
        folder = Path(config.tls_agency_dir)
        if not config.tls_ca:
            raise ValueError("a client certificate needs MESH_TLS_CA as well")
        return ClientIdentity(folder / f"{agency}.crt", folder / f"{agency}.key", Path(config.tls_ca))
    if config.tls_client_cert or config.tls_client_key:
        if not (config.tls_client_cert and config.tls_client_key and config.tls_ca):
            raise ValueError("a client certificate needs MESH_TLS_CLIENT_CERT, MESH_TLS_CLIENT_KEY and MESH_TLS_CA")
        return ClientIdentity(Path(config.tls_client_cert), Path(config.tls_client_key), Path(config.tls_ca))
    return None


def open_channel(address: str, identity: ClientIdentity | None, *, aio: bool = False) -> Any:
    """A channel to a mesh server: mutual TLS with `identity`, plaintext without (local mode)."""
    module = grpc.aio if aio else grpc
    if identity is None:
        return module.insecure_channel(address)
    return module.secure_channel(address, identity.credentials())
