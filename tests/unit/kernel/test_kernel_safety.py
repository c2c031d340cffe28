"""Safe by default: what a service needs before it may start, per MESH_MODE."""

from __future__ import annotations

import re

import pytest

from meshkernel.config import MeshSettings
from meshkernel.safety import SERVICES, StartRefused, check_start, is_loopback


def _settings(**values) -> MeshSettings:
    return MeshSettings(_env_file=None, **values)  # type: ignore[call-arg]  # pydantic-settings' own option


def test_kernel_safety_mode_is_production_when_unset(monkeypatch):
    monkeypatch.delenv("MESH_MODE", raising=False)
    assert MeshSettings().mode == "production"
    assert not MeshSettings().development_identities


def test_kernel_safety_mode_refuses_unknown_values(monkeypatch):
    monkeypatch.setenv("MESH_MODE", "dev")
    with pytest.raises(ValueError):
        MeshSettings()


@pytest.mark.parametrize("service", SERVICES)
def test_kernel_safety_production_without_tls_names_the_missing_setting(service):
    with pytest.raises(StartRefused, match="MESH_TLS_CERT is not set") as refused:
        check_start(_settings(mode="production"), service)
    assert "\n" not in str(refused.value)


def test_kernel_safety_production_names_each_missing_file(tmp_path):
    present = tmp_path / "present.pem"
    present.write_text("x")
    with pytest.raises(StartRefused, match="MESH_TLS_CRL is not set"):
        check_start(_settings(mode="production", tls_cert=present, tls_key=present, tls_ca=present), "region")
    with pytest.raises(StartRefused, match=r"MESH_TLS_KEY=.*no such file"):
        check_start(
            _settings(
                mode="production", tls_cert=present, tls_key=tmp_path / "gone.key", tls_ca=present, tls_crl=present
            ),
            "notify",
        )


def _kafka_credentials(tmp_path) -> dict:
    password = tmp_path / "referral.password"
    password.write_text("secret\n")
    return dict(kafka_security_protocol="SASL_SSL", kafka_username="referral", kafka_password_file=password)


def test_kernel_safety_production_with_tls_material_may_start_on_any_address(tmp_path):
    present = tmp_path / "present.pem"
    present.write_text("x")
    check_start(
        _settings(
            mode="production",
            tls_cert=present,
            tls_key=present,
            tls_ca=present,
            tls_crl=present,
            referral_grpc_address="0.0.0.0:50051",
            **_kafka_credentials(tmp_path),
        ),
        "referral",
    )


@pytest.mark.parametrize("service", SERVICES)
def test_kernel_safety_production_without_kafka_tls_and_credentials_names_the_setting(service, tmp_path):
    present = tmp_path / "present.pem"
    present.write_text("x")
    grpc_tls = dict(tls_cert=present, tls_key=present, tls_ca=present, tls_crl=present)
    with pytest.raises(StartRefused, match=r"^MESH_KAFKA_SECURITY_PROTOCOL is not set") as refused:
        check_start(_settings(mode="production", **grpc_tls), service)
    assert "\n" not in str(refused.value)
    without_password = {**_kafka_credentials(tmp_path), "kafka_password_file": None}
    with pytest.raises(StartRefused, match=r"^MESH_KAFKA_PASSWORD_FILE is not set"):
        check_start(_settings(mode="production", **grpc_tls, **without_password), service)


@pytest.mark.parametrize(
    "setting, value, service",
    [
        ("referral_grpc_address", "0.0.0.0:50051", "referral"),
        ("region_grpc_address", "10.0.0.5:50052", "region"),
        ("notify_grpc_address", "[::]:50053", "notify"),
        ("region_web_host", "0.0.0.0", "region"),
        ("notify_web_host", "192.168.1.2", "notify"),
        ("metrics_host", "0.0.0.0", "referral"),
    ],
)
def test_kernel_safety_local_mode_refuses_every_non_loopback_listen_address(setting, value, service):
    with pytest.raises(StartRefused, match=re.escape(f"MESH_{setting.upper()}={value} is not a loopback address")):
        check_start(_settings(mode="local", **{setting: value}), service)


@pytest.mark.parametrize("service", SERVICES)
def test_kernel_safety_local_mode_on_loopback_starts_without_tls(service):
    check_start(_settings(mode="local"), service)


def test_kernel_safety_metrics_host_does_not_matter_when_metrics_are_off():
    check_start(_settings(mode="local", metrics_host="0.0.0.0", referral_metrics_port=0), "referral")


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1:50051", True),
        ("127.8.9.1", True),
        ("localhost:1", True),
        ("[::1]:50051", True),
        ("::1", True),
        ("unix:/tmp/x.sock", True),
        ("0.0.0.0:50051", False),
        ("[::]:1", False),
        ("10.1.2.3", False),
        ("mesh.example.org:443", False),
    ],
)
def test_kernel_safety_is_loopback(address, loopback):
    assert is_loopback(address) is loopback


def test_kernel_safety_development_identities_only_in_local_mode_without_tls(tmp_path):
    assert _settings(mode="local").development_identities
    assert not _settings(mode="production").development_identities
    assert not _settings(mode="local", tls_cert=tmp_path / "c.pem").development_identities
