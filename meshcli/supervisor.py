"""Starts and stops the local stack (Kafka through its script, services as child processes).

Each child runs in its own process group so that stopping it also stops anything it
spawned, and nothing is left behind after Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from meshkernel.config import PROJECT_ROOT, MeshSettings

KAFKA_SCRIPT = PROJECT_ROOT / "scripts" / "kafka.sh"
ZIPKIN_SCRIPT = PROJECT_ROOT / "scripts" / "zipkin.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_mesh_env(state_dir: Path, kafka_bootstrap: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a private mesh beside others on one broker and machine: its own topic
    prefix, database, state folder and free ports (tests, benchmarks, parallel demos). It runs
    in MESH_MODE=local (plaintext on loopback) unless `extra` says otherwise."""
    env = dict(os.environ)
    if kafka_bootstrap:
        env["KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env.update({
        "MESH_MODE": "local",
        "MESH_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "DATABASE_URL": f"sqlite:///{state_dir / 'referral.db'}",
        "MESH_STATE_DIR": str(state_dir / "state"),
        "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "MESH_REGION_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "MESH_NOTIFY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "MESH_REGION_WEB_PORT": str(free_port()),
        "MESH_NOTIFY_WEB_PORT": str(free_port()),
        "MESH_REFERRAL_METRICS_PORT": str(free_port()),
        "MESH_REGION_METRICS_PORT": str(free_port()),
        "MESH_NOTIFY_METRICS_PORT": str(free_port()),
    })
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> MeshSettings:
    """The settings a child process started with `env` will read."""
    keys = {key: value for key, value in env.items() if key.startswith(("MESH_", "KAFKA_", "DATABASE_"))}
    saved = dict(os.environ)
    try:
        os.environ.update(keys)
        return MeshSettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def kafka_answers(env: dict[str, str] | None = None) -> bool:
    return subprocess.run([str(KAFKA_SCRIPT), "status"], env=env, capture_output=True).returncode == 0


def start_kafka(env: dict[str, str] | None = None) -> None:
    subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, check=True)


def stop_kafka(env: dict[str, str] | None = None) -> None:
    subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, check=False)


def zipkin_answers(env: dict[str, str] | None = None) -> bool:
    return subprocess.run([str(ZIPKIN_SCRIPT), "status"], env=env, capture_output=True).returncode == 0


def start_zipkin_in_background(env: dict[str, str] | None = None) -> subprocess.Popen:
    """Zipkin takes a while to boot; start it beside Kafka and wait for it later."""
    return subprocess.Popen([str(ZIPKIN_SCRIPT), "start"], env=env, stdin=subprocess.DEVNULL)


def stop_zipkin(env: dict[str, str] | None = None) -> None:
    subprocess.run([str(ZIPKIN_SCRIPT), "stop"], env=env, check=False)


def zipkin_url(env: dict[str, str] | None = None) -> str:
    return subprocess.run([str(ZIPKIN_SCRIPT), "url"], env=env, capture_output=True, text=True).stdout.strip()


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, service: str) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{service}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "meshcli.main", "serve", service],
            env=self.env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT, start_new_session=True,
        )
        log_file.close()
        self.processes[service] = process
        return process

    def stop(self, service: str, timeout: float = 20.0) -> None:
        process = self.processes.pop(service, None)
        if process is None or process.poll() is not None:
            return
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait()

    def kill(self, service: str) -> None:
        """Stop without any chance to clean up, as a crash would."""
        process = self.processes.pop(service)
        _signal_group(process, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for service in reversed(list(self.processes)):
            self.stop(service)

    def crashed(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
