"""`mesh serve X` with no configuration at all refuses to start: one line, naming TLS, exit != 0.

The broker address points at a port nobody listens on, so a service that touched Kafka
before refusing would hang on it rather than exit at once.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meshcli.supervisor import free_port
from meshkernel.config import PROJECT_ROOT


def _unconfigured_env() -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("MESH_", "KAFKA_", "DATABASE_", "OTEL_"))
    }
    env["KAFKA_PORT"] = str(free_port())  # nothing listens there
    return env


@pytest.mark.parametrize("service", ["referral", "region", "notify"])
def test_kernel_safe_start_without_configuration_refuses_in_one_line_naming_tls(service, tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "meshcli.main", "serve", service],
        env=_unconfigured_env(),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert "MESH_TLS_CERT" in lines[0] and "TLS" in lines[0]
    assert f"mesh serve {service}" in lines[0]


def test_kernel_safe_start_local_mode_on_a_public_address_refuses(tmp_path):
    env = _unconfigured_env() | {"MESH_MODE": "local", "MESH_REFERRAL_GRPC_ADDRESS": "0.0.0.0:50551"}
    finished = subprocess.run(
        [sys.executable, "-m", "meshcli.main", "serve", "referral"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode != 0
    assert finished.stderr.strip().splitlines() == [finished.stderr.strip()]
    assert "MESH_REFERRAL_GRPC_ADDRESS=0.0.0.0:50551 is not a loopback address" in finished.stderr


def test_kernel_safe_start_names_an_invalid_mode(tmp_path):
    finished = subprocess.run(
        [sys.executable, "-m", "meshcli.main", "serve", "region"],
        env=_unconfigured_env() | {"MESH_MODE": "developer"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert finished.stderr.strip().startswith("mesh serve region: refusing to start: MESH_MODE")
