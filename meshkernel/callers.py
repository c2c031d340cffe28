"""The Principal of a gRPC call: from its verified certificate, or, in local mode only, from
development headers.

With mutual TLS the kernel's AuthInterceptor has verified the certificate and left the peer in
`tls.current_peer`; headers then mean nothing. Without TLS (MESH_MODE=local, loopback only,
meshkernel/safety.py) a caller names itself: `x-mesh-dev-agency: AGENCY`, or
`x-mesh-dev-operator: NAME` (an operator of the mesh), or
`x-mesh-coordinator: USER` (the scope from `x-mesh-dev-scope`, or from the service's own
coordinator list), and a call naming nobody acts as the development system identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshkernel import tls
from meshkernel.principal import AGENCY, COORDINATOR, OPERATOR, SYSTEM, Principal

DEV_AGENCY_HEADER = "x-mesh-dev-agency"
DEV_COORDINATOR_HEADER = "x-mesh-coordinator"
DEV_SCOPE_HEADER = "x-mesh-dev-scope"
DEV_OPERATOR_HEADER = "x-mesh-dev-operator"
LOOPBACK_PEERS = ("ipv4:127.", "ipv6:[::1]", "unix:")
DEVELOPMENT_SYSTEM = Principal(SYSTEM, "development")


class NoIdentity(Exception):
    """The call carries no identity this server accepts."""


def principal_of(
    context: Any, *, development_identities: bool, coordinator_scope: Callable[[str], str | None] = lambda _name: None
) -> Principal:
    peer = tls.current_peer.get()
    if peer is not None and peer.role:
        return Principal(peer.role, peer.name, peer.scope)
    if peer is not None:
        raise NoIdentity("this certificate names no agency, coordinator or mesh service")
    if not development_identities:
        raise NoIdentity("no verified client certificate on this call")
    if not str(context.peer()).startswith(LOOPBACK_PEERS):
        raise NoIdentity("development identities are honoured from loopback only")
    metadata = dict(context.invocation_metadata() or ())
    if metadata.get(DEV_COORDINATOR_HEADER):
        name = metadata[DEV_COORDINATOR_HEADER][:64]
        scope = metadata.get(DEV_SCOPE_HEADER) or coordinator_scope(name)
        if not scope:
            raise NoIdentity(f"{DEV_COORDINATOR_HEADER}: unknown coordinator")
        return Principal(COORDINATOR, name, scope)
    if metadata.get(DEV_AGENCY_HEADER):
        return Principal(AGENCY, metadata[DEV_AGENCY_HEADER][:80])
    if metadata.get(DEV_OPERATOR_HEADER):
        return Principal(OPERATOR, metadata[DEV_OPERATOR_HEADER][:64])
    return DEVELOPMENT_SYSTEM
