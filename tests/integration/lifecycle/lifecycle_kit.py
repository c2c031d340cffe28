"""Helpers of the lifecycle tests: a demo run tagged so that the process table shows every
process it left behind, and private Kafka/Zipkin ports so the shared broker is never touched."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

from meshcli.supervisor import KAFKA_SCRIPT, free_port, private_mesh_env
from meshkernel.config import PROJECT_ROOT

RUN_MARKER = "MESH_LIFECYCLE_TEST_RUN"
ZIPKIN_CACHE = Path(os.environ.get("MESH_CACHE_DIR", PROJECT_ROOT / ".cache")) / "zipkin"


def tagged_env(state_dir: Path, kafka_bootstrap: str | None) -> dict[str, str]:
    """A private mesh whose processes (and their children: Kafka, Zipkin) carry a marker."""
    env = private_mesh_env(state_dir, kafka_bootstrap)
    env[RUN_MARKER] = uuid.uuid4().hex
    env["MESH_TRACING_UI"] = "off"
    env.pop("OTEL_TRACES_EXPORTER", None)
    return env


def with_private_infrastructure(env: dict[str, str], *, zipkin: bool) -> dict[str, str]:
    """The demo starts its own broker (and Zipkin) on free ports, as on a fresh machine."""
    env = dict(env)
    env.pop("KAFKA_BOOTSTRAP", None)
    env.update(
        {
            "KAFKA_PORT": str(free_port()),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "ZIPKIN_PORT": str(free_port()),
            # The broker's data and pid file stay in the test's folder, not in .cache.
            "KAFKA_STATE_DIR": str(Path(env["MESH_STATE_DIR"]).parent / "kafka"),
        }
    )
    if zipkin:
        env["MESH_TRACING_UI"] = "zipkin"
    return env


def forget_private_infrastructure(env: dict[str, str]) -> None:
    """Stop what is left of the private broker and Zipkin; remove Zipkin's state folder (the
    broker's lives in the test's temporary folder)."""
    if "KAFKA_PORT" in env:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True, check=False)
    if "ZIPKIN_PORT" in env:
        subprocess.run([str(PROJECT_ROOT / "scripts" / "zipkin.sh"), "stop"], env=env, capture_output=True)
        shutil.rmtree(ZIPKIN_CACHE / f"node-{env['ZIPKIN_PORT']}", ignore_errors=True)


def left_behind(env: dict[str, str]) -> list[str]:
    """Live processes (zombies do not count) that carry this run's marker."""
    marker = f"{RUN_MARKER}={env[RUN_MARKER]}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(f"{entry.name}: {command}")
    return found


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def log_says(path: Path, text: str) -> bool:
    try:
        return text in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def services_listening(env: dict[str, str], logs: Path | None = None) -> bool:
    """All three services have their gRPC servers up (they install their stop handling first)."""
    logs = logs or Path(env["MESH_STATE_DIR"]) / "logs"
    return log_says(logs / "referral.log", "referral service listening") and all(
        _accepts(env[name]) for name in ("MESH_REGION_GRPC_ADDRESS", "MESH_NOTIFY_GRPC_ADDRESS")
    )


def _accepts(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False
