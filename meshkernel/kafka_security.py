"""Kafka security for every client of the mesh: TLS to the brokers and this process's principal.

One description, `KafkaSecurity`, built from the settings, gives the options of all three
client libraries the mesh uses: kafka-python (admin, event watchers, replay, benchmarks),
aiokafka (the referral service's outbox relay) and Faust (the region and notify workers).

- `PLAINTEXT` (unset): no TLS, no principal; for `MESH_MODE=local` on loopback only.
- `SASL_SSL`: TLS, and the principal by SASL/SCRAM: MESH_KAFKA_USERNAME and a password read
  once from MESH_KAFKA_PASSWORD_FILE. The password is kept out of every repr, log and error.
- `SSL`: TLS, and the principal from a client certificate (MESH_KAFKA_CLIENT_CERT/KEY).

MESH_KAFKA_CA names the trust roots for the brokers' certificates (unset: the system's).
Hostnames are always verified against the broker certificates.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshkernel.config import MeshSettings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

ALTERNATIVES = (
    "SASL_SSL with MESH_KAFKA_USERNAME and MESH_KAFKA_PASSWORD_FILE, "
    "or SSL with MESH_KAFKA_CLIENT_CERT and MESH_KAFKA_CLIENT_KEY"
)


class KafkaSecurityError(ValueError):
    """The Kafka security settings are incomplete or unreadable; one line naming the setting."""


def _readable_file(setting: str, path: Path | None, what: str) -> Path:
    if path is None:
        raise KafkaSecurityError(f"{setting} is not set ({what})")
    if not path.is_file():
        raise KafkaSecurityError(f"{setting}={path}: no such file ({what})")
    return path


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    ca: Path | None = None
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_cert: Path | None = None
    client_key: Path | None = None

    @classmethod
    def from_settings(cls, config: MeshSettings) -> KafkaSecurity:
        """Read and check the settings; raise KafkaSecurityError naming the first problem."""
        protocol = config.kafka_security_protocol or "PLAINTEXT"
        if protocol == "PLAINTEXT":
            for setting, value in (
                ("MESH_KAFKA_USERNAME", config.kafka_username),
                ("MESH_KAFKA_PASSWORD_FILE", config.kafka_password_file),
                ("MESH_KAFKA_CLIENT_CERT", config.kafka_client_cert),
            ):
                if value:
                    raise KafkaSecurityError(
                        f"{setting} is set but MESH_KAFKA_SECURITY_PROTOCOL is not SASL_SSL or SSL; "
                        "credentials are never sent without TLS"
                    )
            return cls()
        ca = (
            _readable_file("MESH_KAFKA_CA", config.kafka_ca, "trust roots for the brokers") if config.kafka_ca else None
        )
        if protocol == "SASL_SSL":
            if not config.kafka_username:
                raise KafkaSecurityError("MESH_KAFKA_USERNAME is not set (this service's Kafka principal)")
            password_file = _readable_file(
                "MESH_KAFKA_PASSWORD_FILE", config.kafka_password_file, f"the password of {config.kafka_username}"
            )
            password = password_file.read_text(encoding="utf-8").strip()
            if not password:
                raise KafkaSecurityError(f"MESH_KAFKA_PASSWORD_FILE={password_file}: the file is empty")
            return cls(protocol, ca, config.kafka_sasl_mechanism, config.kafka_username, password)
        client_cert = client_key = None
        if config.kafka_client_cert or config.kafka_client_key:
            client_cert = _readable_file(
                "MESH_KAFKA_CLIENT_CERT", config.kafka_client_cert, "this service's certificate for Kafka"
            )
            client_key = _readable_file("MESH_KAFKA_CLIENT_KEY", config.kafka_client_key, "its private key")
        return cls(protocol, ca, client_cert=client_cert, client_key=client_key)

    @property
    def authenticated(self) -> bool:
        return self.protocol == "SASL_SSL" or self.client_cert is not None

    @property
    def principal(self) -> str:
        """Who this process is on Kafka, for log lines (never the password)."""
        if self.protocol == "SASL_SSL":
            return f"User:{self.username}"
        return "client certificate" if self.client_cert else "anonymous"

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.protocol == "PLAINTEXT":
            return None
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.client_cert and self.client_key:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def client_options(self) -> dict[str, Any]:
        """Options for kafka-python's and aiokafka's clients (they share the names)."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol, "ssl_context": self.ssl_context()}
        if self.protocol == "SASL_SSL":
            options.update(
                sasl_mechanism=self.mechanism, sasl_plain_username=self.username, sasl_plain_password=self.password
            )
        return options

    def faust_credentials(self) -> CredentialsT | None:
        """The `broker_credentials` of a Faust app, or None for plaintext."""
        import faust

        if self.protocol == "PLAINTEXT":
            return None
        if self.protocol == "SASL_SSL":
            return faust.SASLCredentials(
                username=self.username, password=self.password, ssl_context=self.ssl_context(), mechanism=self.mechanism
            )
        return faust.SSLCredentials(self.ssl_context())


def kafka_security(config: MeshSettings) -> KafkaSecurity:
    return KafkaSecurity.from_settings(config)


def kafka_python_options(config: MeshSettings, **options: Any) -> dict[str, Any]:
    """`bootstrap_servers` and the security options for a kafka-python client, plus `options`."""
    return {"bootstrap_servers": config.kafka_bootstrap, **kafka_security(config).client_options(), **options}


def production_problem(config: MeshSettings, service: str) -> str | None:
    """Why `service` may not start in production with these Kafka settings, in one line; or None."""
    protocol = config.kafka_security_protocol
    if protocol in (None, "PLAINTEXT"):
        state = "is not set" if protocol is None else "is PLAINTEXT"
        return (
            f"MESH_KAFKA_SECURITY_PROTOCOL {state}; production mode needs Kafka over TLS with "
            f"the {service} service's own credentials ({ALTERNATIVES})"
        )
    try:
        security = KafkaSecurity.from_settings(config)
    except KafkaSecurityError as problem:
        return str(problem)
    if not security.authenticated:
        return (
            f"MESH_KAFKA_CLIENT_CERT is not set; production mode needs the {service} service's own "
            f"Kafka credentials ({ALTERNATIVES})"
        )
    return None
