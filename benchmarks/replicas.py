"""Several replicas of each service on one machine, as a Deployment with `replicas: N` would run.

Replicas of one service share what a cluster shares (the Kafka topics and consumer groups, the
referral PostgreSQL database, notify's store and key-encryption key) and keep apart what a pod
keeps apart (listen ports, the state folder with the Faust worker's local tables). Processes
are named `<service>-<n>`; the scale-out test (tests/integration/scaleout/) and `make bench-e2e
REPLICAS=N` use this.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from meshcli.supervisor import PARENT_PID_ENV, Stack, free_port, wait_for
from meshkernel.config import PROJECT_ROOT

SERVICES = ("referral", "region", "notify")


def shared_notify_env(folder: Path, notify_database_url: str | None = None) -> dict[str, str]:
    """What notify replicas share: one store, one contact key store, one key-encryption key."""
    from services.notify.adapters.kek_file import LocalKeyFile

    shared = folder / "notify-shared"
    shared.mkdir(parents=True, exist_ok=True)
    shared.chmod(0o700)
    kek = shared / "kek.key"
    if not kek.exists():
        LocalKeyFile.create(kek)
    return {
        "MESH_NOTIFY_DATABASE_URL": notify_database_url or f"sqlite:///{shared / 'notify.db'}",
        "MESH_NOTIFY_KEY_STORE_PATH": str(shared / "keys.db"),
        "MESH_NOTIFY_KEK_PATH": str(kek),
        "MESH_NOTIFY_CLIENT_OUTBOX_PATH": str(shared / "client-outbox.jsonl"),
        # Accounts are an operator's job; replicas racing to create demo accounts is not the test.
        "MESH_NOTIFY_DEMO_COORDINATORS": "false",
    }


def _own_ports(service: str) -> dict[str, str]:
    if service == "referral":
        return {"MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}", "MESH_REFERRAL_METRICS_PORT": "0"}
    if service == "region":
        return {
            "MESH_REGION_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_REGION_WEB_PORT": str(free_port()),
            "MESH_REGION_METRICS_PORT": "0",
        }
    return {
        "MESH_NOTIFY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "MESH_NOTIFY_WEB_PORT": str(free_port()),
        "MESH_NOTIFY_METRICS_PORT": "0",
    }


@dataclass
class ReplicaStack(Stack):
    """A Stack whose processes are replicas: `add("region")` -> "region-1", then start(name)."""

    state_root: Path = field(default_factory=lambda: Path("."))
    replica_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, service: str) -> str:
        index = 1 + sum(1 for name in self.replica_env if name.rsplit("-", 1)[0] == service)
        name = f"{service}-{index}"
        self.replica_env[name] = {**_own_ports(service), "MESH_STATE_DIR": str(self.state_root / name)}
        return name

    def names(self, service: str) -> list[str]:
        return [name for name in self.replica_env if name.rsplit("-", 1)[0] == service]

    def address(self, name: str) -> str:
        return self.replica_env[name]["MESH_REFERRAL_GRPC_ADDRESS"]

    def start(self, service: str) -> subprocess.Popen:
        """Start the replica named `service` (e.g. "referral-2"), with its own ports and folder."""
        name = service
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child writes to it for life
        process = subprocess.Popen(
            [sys.executable, "-m", "meshcli.main", "serve", name.rsplit("-", 1)[0]],
            env={**self.env, **self.replica_env[name], PARENT_PID_ENV: str(os.getpid())},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        log_file.close()
        self.processes[name] = process
        return process

    def start_all(self, replicas: int, timeout: float = 180.0) -> None:
        """The first replica of each service, and once those listen (their schemas are in
        place: a database is set up by one replica, not by several at once), the others."""
        firsts = [self.add(service) for service in SERVICES]
        for name in firsts:
            self.start(name)
        for name in firsts:
            port, process = self.listen_port(name), self.processes[name]
            if port is None:
                continue
            wait_for(lambda p=process, n=port: p.poll() is not None or _listening(n), timeout=timeout, interval=0.5)
            if not _listening(port):
                lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"{name} is not listening after {timeout:g} s: " + " | ".join(lines))
        for service in SERVICES:
            for _ in range(replicas - 1):
                self.start(self.add(service))

    def listen_port(self, name: str) -> int | None:
        """The port that answers once the replica has set up its store: gRPC or the dashboard."""
        own = self.replica_env[name]
        address = own.get("MESH_REFERRAL_GRPC_ADDRESS") or own.get("MESH_NOTIFY_WEB_PORT")
        if address is None:
            return None  # region: no database of its own to set up
        return int(str(address).rsplit(":", 1)[-1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
