"""Who is calling: the agency is taken from the connection, never from a request field.

Production path: mutual TLS. The agency is the organisation whose OIN is in the subject
serialNumber of its client certificate (as PKIoverheid certificates carry it), checked against
the trust root, the CRL and the agency directory by `meshkernel.tls`. The
server installs `tls.AuthInterceptor`, which authenticates every call before any handler runs
and leaves the peer in a context variable; `caller_from` reads it.

Development path, only when no TLS is configured: a `x-mesh-dev-agency` header, accepted
from loopback peers only, so the embedded default (`make run`) needs no certificates. When
TLS is configured the header is ignored, whatever `allow_dev_identity` says.

The user and on-behalf-of headers are what the agency's own system declares about its user
(for the access log); they never decide which organisation acts.
"""

from __future__ import annotations

from typing import cast

import grpc

from meshkernel import tls
from meshkernel.callers import DEV_AGENCY_HEADER
from services.referral.application import Caller

USER_HEADER = "x-mesh-user"
ON_BEHALF_HEADER = "x-mesh-on-behalf-of"
LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "unix:")
MAX_HEADER_CHARS = 200

_verifier: tls.PeerVerifier | None = None


class Unauthenticated(Exception):
    pass


def configure(verifier: tls.PeerVerifier | None) -> None:
    """Switch this process to certificate identity (None switches back; tests only)."""
    global _verifier
    _verifier = verifier


def certificate_identity_enabled() -> bool:
    return _verifier is not None


def caller_from(context: grpc.aio.ServicerContext, *, allow_dev_identity: bool) -> Caller:
    metadata = dict(context.invocation_metadata() or ())
    agency = _agency_from_certificate(context)
    if agency is None and _verifier is None and allow_dev_identity and context.peer().startswith(LOOPBACK_PEERS):
        agency = cast(str | None, metadata.get(DEV_AGENCY_HEADER))
    if not agency:
        raise Unauthenticated("no agency identity on this connection")
    return Caller(
        agency_id=agency,
        user=_header(metadata, USER_HEADER, "system"),
        on_behalf_of=_header(metadata, ON_BEHALF_HEADER, "client"),
    )


def _agency_from_certificate(context) -> str | None:
    peer = tls.current_peer.get()
    if peer is not None and peer.agency_id:
        return peer.agency_id
    if _verifier is None:
        return None
    # Certificate identity is on but the interceptor did not run for this call: check here.
    try:
        return _verifier.identify_context(context).agency_id
    except tls.CertificateRefused as refused:
        raise Unauthenticated(str(refused)) from None


def _header(metadata: dict, name: str, default: str) -> str:
    value = metadata.get(name)
    if not isinstance(value, str) or not value.strip():
        return default
    return value.strip()[:MAX_HEADER_CHARS]
