"""`mesh serve X` in production with its gRPC TLS material but no Kafka security: one line
naming the Kafka setting, exit status 2, before any Kafka connection (nothing listens on the
broker port it is given, so a service that tried would hang instead)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meshcli.supervisor import free_port
from meshkernel.config import PROJECT_ROOT


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    present = tmp_path / "present.pem"
    present.write_text("x")
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("MESH_", "KAFKA_", "DATABASE_", "OTEL_"))
    }
    env.update(
        KAFKA_PORT=str(free_port()),
        MESH_STATE_DIR=str(tmp_path / "state"),
        **{f"MESH_TLS_{name}": str(present) for name in ("CERT", "KEY", "CA", "CRL")},
        **extra,
    )
    return env


def _serve(service: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meshcli.main", "serve", service],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", ["referral", "region", "notify"])
def test_a_production_service_without_kafka_tls_and_credentials_refuses_to_start(service, tmp_path):
    finished = _serve(service, _production_env(tmp_path))
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert lines[0].startswith(f"mesh serve {service}: refusing to start: MESH_KAFKA_SECURITY_PROTOCOL is not set")


def test_a_production_service_with_plaintext_kafka_or_no_password_refuses_to_start(tmp_path):
    plaintext = _serve("region", _production_env(tmp_path, MESH_KAFKA_SECURITY_PROTOCOL="PLAINTEXT"))
    assert plaintext.returncode == 2
    assert "MESH_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in plaintext.stderr
    no_password = _serve(
        "region", _production_env(tmp_path, MESH_KAFKA_SECURITY_PROTOCOL="SASL_SSL", MESH_KAFKA_USERNAME="region")
    )
    assert no_password.returncode == 2
    assert len(no_password.stderr.strip().splitlines()) == 1
    assert "MESH_KAFKA_PASSWORD_FILE is not set" in no_password.stderr
