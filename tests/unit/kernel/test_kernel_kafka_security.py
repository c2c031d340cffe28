"""Kafka client security from the settings: options for kafka-python, aiokafka and Faust, and
the production check that names the missing setting in one line."""

import ssl

import faust
import pytest

from meshcli import pki
from meshkernel.config import MeshSettings
from meshkernel.kafka_security import KafkaSecurity, KafkaSecurityError, kafka_python_options, production_problem

PASSWORD = "s3cret-never-printed"


@pytest.fixture
def material(tmp_path):
    ca_cert, ca_key = pki.make_ca()
    pki.write_cert(tmp_path / "ca.crt", ca_cert)
    cert, key = pki.issue_server(ca_cert, ca_key)
    pki.write_cert(tmp_path / "client.crt", cert)
    pki.write_key(tmp_path / "client.key", key)
    (tmp_path / "referral.password").write_text(PASSWORD + "\n")
    return tmp_path


def scram(material, **overrides) -> MeshSettings:
    values = dict(
        kafka_security_protocol="SASL_SSL",
        kafka_ca=material / "ca.crt",
        kafka_username="referral",
        kafka_password_file=material / "referral.password",
    )
    values.update(overrides)
    return MeshSettings(**values)


def test_unset_security_is_plaintext_and_adds_no_options():
    config = MeshSettings(kafka_bootstrap="127.0.0.1:9092")
    assert KafkaSecurity.from_settings(config).protocol == "PLAINTEXT"
    assert kafka_python_options(config, group_id="g") == {"bootstrap_servers": "127.0.0.1:9092", "group_id": "g"}
    assert KafkaSecurity.from_settings(config).faust_credentials() is None


def test_scram_over_tls_gives_every_client_library_the_same_principal(material):
    security = KafkaSecurity.from_settings(scram(material))
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("referral", PASSWORD)
    context = options["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    credentials = security.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("referral", PASSWORD)
    assert security.principal == "User:referral"


def test_the_password_never_appears_in_a_repr(material):
    security = KafkaSecurity.from_settings(scram(material))
    assert PASSWORD not in repr(security)
    assert PASSWORD not in repr(security.faust_credentials())
    assert PASSWORD not in security.principal


def test_a_client_certificate_is_the_principal_over_ssl(material):
    security = KafkaSecurity.from_settings(
        MeshSettings(
            kafka_security_protocol="SSL",
            kafka_ca=material / "ca.crt",
            kafka_client_cert=material / "client.crt",
            kafka_client_key=material / "client.key",
        )
    )
    assert security.authenticated
    assert security.client_options()["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in security.client_options()
    assert isinstance(security.faust_credentials(), faust.SSLCredentials)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"kafka_username": None}, "MESH_KAFKA_USERNAME is not set"),
        ({"kafka_password_file": None}, "MESH_KAFKA_PASSWORD_FILE is not set"),
        ({"kafka_password_file": "/nonexistent/referral.password"}, "MESH_KAFKA_PASSWORD_FILE=/nonexistent"),
        ({"kafka_ca": "/nonexistent/ca.crt"}, "MESH_KAFKA_CA=/nonexistent/ca.crt: no such file"),
        ({"kafka_security_protocol": "PLAINTEXT"}, "MESH_KAFKA_USERNAME is set but"),
    ],
)
def test_incomplete_settings_are_refused_naming_the_setting(material, overrides, named):
    with pytest.raises(KafkaSecurityError) as refused:
        KafkaSecurity.from_settings(scram(material, **overrides))
    assert str(refused.value).startswith(named)
    assert "\n" not in str(refused.value)


def test_an_empty_password_file_is_refused(material):
    (material / "empty.password").write_text("\n")
    with pytest.raises(KafkaSecurityError, match="the file is empty"):
        KafkaSecurity.from_settings(scram(material, kafka_password_file=material / "empty.password"))


def test_production_needs_tls_and_the_services_own_credentials(material):
    problem = production_problem(MeshSettings(), "region")
    assert problem.startswith("MESH_KAFKA_SECURITY_PROTOCOL is not set")
    assert "region" in problem and "\n" not in problem
    assert production_problem(MeshSettings(kafka_security_protocol="PLAINTEXT"), "region").startswith(
        "MESH_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"
    )
    assert production_problem(scram(material, kafka_password_file=None), "referral").startswith(
        "MESH_KAFKA_PASSWORD_FILE is not set"
    )
    # TLS alone is no identity: production needs a principal too.
    assert production_problem(
        MeshSettings(kafka_security_protocol="SSL", kafka_ca=material / "ca.crt"), "notify"
    ).startswith("MESH_KAFKA_CLIENT_CERT is not set")
    assert production_problem(scram(material), "referral") is None
