"""Before the supervisor starts anything: is every port it needs free, and if not, who holds it?

A service that finds its port taken fails inside its own log ("address already in use"), long
after the supervisor said it started. Checking first turns that into one clear line per port:
the port, the setting that moves it, and the process holding it.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from meshkernel.config import MeshSettings

PROC = Path("/proc")


@dataclass(frozen=True)
class PortNeed:
    host: str
    port: int
    setting: str  # the environment variable that moves it
    user: str  # who needs it, in words


def service_ports(config: MeshSettings) -> list[PortNeed]:
    """The ports the three services listen on (metrics port 0 means off)."""
    needs = [
        _address(config.referral_grpc_address, "MESH_REFERRAL_GRPC_ADDRESS", "referral gRPC API"),
        _address(config.region_grpc_address, "MESH_REGION_GRPC_ADDRESS", "region gRPC API"),
        _address(config.notify_grpc_address, "MESH_NOTIFY_GRPC_ADDRESS", "notify gRPC API"),
        PortNeed("127.0.0.1", config.notify_web_port, "MESH_NOTIFY_WEB_PORT", "coordinator dashboard"),
        PortNeed("127.0.0.1", config.region_web_port, "MESH_REGION_WEB_PORT", "region web server"),
        PortNeed("127.0.0.1", config.referral_metrics_port, "MESH_REFERRAL_METRICS_PORT", "referral metrics"),
        PortNeed("127.0.0.1", config.region_metrics_port, "MESH_REGION_METRICS_PORT", "region metrics"),
        PortNeed("127.0.0.1", config.notify_metrics_port, "MESH_NOTIFY_METRICS_PORT", "notify metrics"),
    ]
    return [need for need in needs if need.port]


def kafka_ports(env: dict[str, str]) -> list[PortNeed]:
    """The ports a broker started by scripts/kafka.sh listens on."""
    port = int(env.get("KAFKA_PORT", "9092"))
    controller = int(env.get("KAFKA_CONTROLLER_PORT", port + 1))
    return [
        PortNeed("127.0.0.1", port, "KAFKA_PORT", "Kafka broker"),
        PortNeed("127.0.0.1", controller, "KAFKA_CONTROLLER_PORT", "Kafka controller"),
    ]


def zipkin_ports(env: dict[str, str]) -> list[PortNeed]:
    return [PortNeed("127.0.0.1", int(env.get("ZIPKIN_PORT", "9411")), "ZIPKIN_PORT", "Zipkin")]


def taken(needs: list[PortNeed]) -> list[str]:
    """One line per port that cannot be bound: which port, which setting moves it, who holds it."""
    problems = []
    for need in needs:
        if _can_bind(need.host, need.port):
            continue
        holder = port_holder(need.port)
        problems.append(
            f"port {need.port} ({need.user}) is already in use"
            f"{f' by {holder}' if holder else ''}; stop that process or set {need.setting} to another port"
        )
    return problems


def _address(address: str, setting: str, user: str) -> PortNeed:
    host, _, port = address.rpartition(":")
    return PortNeed(host.strip("[]") or "0.0.0.0", int(port), setting, user)


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the servers do (SO_REUSEADDR): a port in TIME_WAIT is free, a listener is not.
        # Without SO_REUSEPORT, so a gRPC server (which sets it) still counts as a holder.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_holder(port: int) -> str | None:
    """'pid 1234 (java kafka.Kafka ...)' for the process listening on the port, if it can be seen."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return f"pid {entry.name} ({_command_line(entry)})"
        except OSError:  # gone meanwhile, or another user's process
            continue
    return "a process this user cannot see"


def _listening_inodes(port: int) -> set[str]:
    wanted = f"{port:04X}"
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local.rsplit(":", 1)[1] == wanted:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def _command_line(process: Path, limit: int = 80) -> str:
    try:
        words = (process / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    text = " ".join(word.decode(errors="replace") for word in words if word)
    return text if len(text) <= limit else text[: limit - 3] + "..."
