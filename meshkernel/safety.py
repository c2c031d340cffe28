"""Refuse an unsafe start before a service touches Kafka or a database.

Production (MESH_MODE unset) needs the service's mutual TLS material; local mode needs every
listen address on loopback, because it serves without TLS and honours development identities.
A refusal is one line on stderr naming the setting, and exit status 2, within a second or two:
an operator reads what to fix instead of a stack trace, and nothing half-starts.

Other parts of the kernel add their own production needs to `PRODUCTION_NEEDS` (e.g. Kafka
credentials); each is a function (config, service) -> the problem in one line, or None.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from meshkernel.config import MeshSettings
from meshkernel.kafka_security import production_problem as kafka_production_problem

SERVICES = ("referral", "region", "notify")
LOCAL_HINT = "or set MESH_MODE=local for a development mesh on loopback"


class StartRefused(Exception):
    """Why the service may not start, in one line that names the setting."""


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1, localhost and unix sockets, with or without a port."""
    if address.startswith("unix:"):
        return True
    host = address
    if address.startswith("["):
        host = address[1:].split("]", 1)[0]
    elif address.count(":") == 1:
        host = address.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_addresses(config: MeshSettings, service: str) -> dict[str, str]:
    """What `service` binds, by the setting that names it."""
    addresses = {f"MESH_{service.upper()}_GRPC_ADDRESS": getattr(config, f"{service}_grpc_address")}
    if service in ("region", "notify"):
        addresses[f"MESH_{service.upper()}_WEB_HOST"] = getattr(config, f"{service}_web_host")
    if getattr(config, f"{service}_metrics_port"):
        addresses["MESH_METRICS_HOST"] = config.metrics_host
    return addresses


def _server_tls_problem(config: MeshSettings, service: str) -> str | None:
    needs = (
        ("MESH_TLS_CERT", config.tls_cert, "the service's certificate chain"),
        ("MESH_TLS_KEY", config.tls_key, "its private key"),
        ("MESH_TLS_CA", config.tls_ca, "the trust roots for client certificates"),
        ("MESH_TLS_CRL", config.tls_crl, "the revocation lists of the issuing CAs"),
    )
    for setting, value, what in needs:
        if not value:
            return f"{setting} is not set ({what}); production mode needs mutual TLS on the {service} gRPC server"
        if not Path(value).exists():
            return f"{setting}={value}: no such file ({what})"
    return None


PRODUCTION_NEEDS: list[Callable[[MeshSettings, str], str | None]] = [_server_tls_problem, kafka_production_problem]


Need = Callable[[MeshSettings, str], str | None]


def check_start(config: MeshSettings, service: str, service_needs: Sequence[Need] = ()) -> None:
    """Raise StartRefused when `service` may not start with `config`; `service_needs` are the
    service's own production needs (e.g. notify's key-encryption key), checked after the kernel's."""
    if config.local_mode:
        for setting, address in listen_addresses(config, service).items():
            if not is_loopback(address):
                raise StartRefused(
                    f"{setting}={address} is not a loopback address; MESH_MODE=local serves without "
                    "TLS and may bind loopback only (unset MESH_MODE for production with mutual TLS)"
                )
        return
    for need in (*PRODUCTION_NEEDS, *service_needs):
        problem = need(config, service)
        if problem:
            raise StartRefused(f"{problem}; {LOCAL_HINT}")


def refuse_unsafe_start(config: MeshSettings, service: str, service_needs: Sequence[Need] = ()) -> None:
    """The entry points' guard: one line on stderr and exit status 2 when the start is unsafe."""
    try:
        check_start(config, service, service_needs)
    except StartRefused as refused:
        print(f"mesh serve {service}: refusing to start: {refused}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
