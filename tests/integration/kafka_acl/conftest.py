"""A secured Kafka broker of its own for the ACL tests: TLS, SASL/SCRAM, the StandardAuthorizer.

It is `SECURE=1 scripts/kafka.sh start` (what a person runs too) on free ports with a temporary
data folder, so the shared plaintext broker is never touched; it is stopped after the session.
The script provisions topics, credentials and ACLs for one topic prefix as the admin principal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshcli.supervisor import KAFKA_SCRIPT, free_port, settings_from
from meshkernel.config import MeshSettings


@dataclass(frozen=True)
class SecureKafka:
    bootstrap: str
    secrets: Path
    prefix: str

    def env(self, principal: str, **extra: str) -> dict[str, str]:
        """The settings of `principal` (SECURE=1 scripts/kafka.sh env NAME), on this broker's prefix."""
        lines = (self.secrets / "env" / f"{principal}.env").read_text().splitlines()
        env = dict(line.split("=", 1) for line in lines if line)
        env.update({"MESH_TOPIC_PREFIX": self.prefix, **extra})
        return env

    def settings(self, principal: str, **extra: str) -> MeshSettings:
        return settings_from(self.env(principal, **extra))


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory) -> Iterator[SecureKafka]:
    state = tmp_path_factory.mktemp("secure-kafka")
    port, controller_port = free_port(), free_port()
    prefix = f"s{uuid.uuid4().hex[:8]}."
    env = {key: value for key, value in os.environ.items() if key != "KAFKA_BOOTSTRAP"}
    env.update(
        SECURE="1",
        KAFKA_PORT=str(port),
        KAFKA_CONTROLLER_PORT=str(controller_port),
        KAFKA_STATE_DIR=str(state),
        MESH_TOPIC_PREFIX=prefix,
        MESH_PYTHON=sys.executable,
    )
    try:
        subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, check=True, timeout=400)
        yield SecureKafka(bootstrap=f"127.0.0.1:{port}", secrets=state / "secrets", prefix=prefix)
    finally:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, check=False, timeout=120)
