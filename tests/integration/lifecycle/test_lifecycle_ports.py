"""Before starting anything the supervisor checks its ports: a taken one is named, with the
setting that moves it and the process holding it, and nothing starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from meshcli import ports
from meshkernel.config import PROJECT_ROOT
from tests.integration.lifecycle.lifecycle_kit import left_behind, tagged_env


def test_a_taken_port_is_named_with_its_setting_and_holder_and_nothing_starts(kafka_bootstrap, tmp_path):
    env = tagged_env(tmp_path, kafka_bootstrap)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        env["MESH_REFERRAL_GRPC_ADDRESS"] = f"127.0.0.1:{port}"
        result = subprocess.run(
            [sys.executable, "-m", "meshcli.main", "demo"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert result.returncode == 2
    assert f"port {port} (referral gRPC API) is already in use by pid {os.getpid()}" in result.stdout
    assert "set MESH_REFERRAL_GRPC_ADDRESS to another port" in result.stdout
    assert left_behind(env) == []


def test_a_free_port_is_not_reported():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert ports.taken([ports.PortNeed("127.0.0.1", port, "MESH_X_PORT", "x")]) == []


def test_the_holder_of_a_listening_port_is_this_process():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert ports.port_holder(listener.getsockname()[1]).startswith(f"pid {os.getpid()} (")
