"""One way to build and bind a gRPC server, the same for all three services: resource limits,
the mutual TLS interceptor, and a secure port (or, in local mode only, a plaintext one)."""

from __future__ import annotations

import grpc

from meshkernel.config import MeshSettings
from meshkernel.tls import AuthInterceptor, PeerVerifier, ServerTls, server_credentials

MAX_SEND_BYTES = 4 * 1024 * 1024


def new_server(
    config: MeshSettings, *, max_receive_bytes: int, verifier: PeerVerifier | None, roles: frozenset[str]
) -> grpc.aio.Server:
    """A server that serves at most `grpc_max_concurrent_rpcs` calls at once and, with a
    verifier, authenticates every call by its certificate (`roles` may call its methods)."""
    interceptors = [AuthInterceptor(verifier, roles)] if verifier is not None else []
    return grpc.aio.server(
        interceptors=interceptors,
        maximum_concurrent_rpcs=config.grpc_max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", max_receive_bytes),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            # Idle or abandoned connections do not hold resources for ever.
            ("grpc.max_connection_idle_ms", 15 * 60 * 1000),
            ("grpc.keepalive_time_ms", 60 * 1000),
            ("grpc.keepalive_timeout_ms", 20 * 1000),
        ],
    )


def bind(server: grpc.aio.Server, address: str, tls: ServerTls | None) -> None:
    """Mutual TLS when configured; plaintext only in local mode, where meshkernel.safety has
    already refused any address that is not loopback."""
    if tls is not None:
        server.add_secure_port(address, server_credentials(tls))
    else:
        server.add_insecure_port(address)
