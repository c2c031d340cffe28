"""One configuration for the whole mesh, from environment variables with embedded defaults.

Safe by default: unset, `MESH_MODE` is `production`, where every gRPC server requires mutual
TLS and no development identity exists; a service without the material it needs refuses to
start (meshkernel/safety.py). `MESH_MODE=local` (the demo, benchmarks and tests) allows
plaintext and development identities, on loopback addresses only. The other defaults run
everything on loopback with SQLite; an operator points the services elsewhere with the
variables named on each field.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / "var"


class MeshSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore", frozen=True)

    # MESH_MODE: `production` unless set; `local` relaxes security and is bound to loopback.
    mode: Literal["production", "local"] = "production"

    # Without KAFKA_BOOTSTRAP: the local broker of scripts/kafka.sh (KAFKA_PORT, default 9092).
    kafka_bootstrap: str = Field(
        default_factory=lambda: f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "MESH_KAFKA_BOOTSTRAP"),
    )
    # Lets tests and parallel demos share one broker without seeing each other's events.
    topic_prefix: str = ""
    topic_partitions: int = 6
    topic_replication: int = 1

    # Kafka security (meshkernel/kafka_security.py; README "Kafka credentials and ACLs"): TLS to
    # the brokers, and this service's principal, by SASL/SCRAM or by a client certificate.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] | None = None  # MESH_KAFKA_SECURITY_PROTOCOL
    kafka_ca: Path | None = None  # MESH_KAFKA_CA: trust roots for the brokers' certificates (PEM)
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    kafka_username: str | None = None  # MESH_KAFKA_USERNAME: this service's principal
    kafka_password_file: Path | None = None  # MESH_KAFKA_PASSWORD_FILE: read at start, never logged
    kafka_client_cert: Path | None = None  # MESH_KAFKA_CLIENT_CERT: SSL with a client certificate instead
    kafka_client_key: Path | None = None  # MESH_KAFKA_CLIENT_KEY

    database_url: str = Field(
        default=f"sqlite:///{STATE_DIR / 'referral.db'}",
        validation_alias=AliasChoices("DATABASE_URL", "MESH_DATABASE_URL"),
    )
    state_dir: Path = STATE_DIR

    region_policy_path: Path = PROJECT_ROOT / "services" / "region" / "config" / "regions.yaml"
    # Stall detection (services/region/ESCALATION.md): the escalation policy (deadlines per rule
    # and urgency, the ladder); a copy with deadlines of seconds shows escalations within a minute.
    escalation_policy_path: Path = PROJECT_ROOT / "services" / "region" / "config" / "escalation.yaml"
    # Longest sleep of the region worker's deadline timer; it wakes earlier for a due deadline.
    escalation_tick_seconds: float = Field(default=0.1, gt=0, le=5)
    # The region worker's tables (services/region/README.md, "The tables"): `rocksdb` keeps them
    # in a local store under MESH_REGION_DATA_DIR (unset: state_dir/<prefix>region-data; in a pod,
    # a volume), so a restart reads only the changelog tail; `memory` rebuilds them from the
    # changelogs at every start.
    region_table_store: Literal["rocksdb", "memory"] = "rocksdb"
    region_data_dir: Path | None = None
    # A closed case (every referral ended, no deadline pending) leaves the region tables this
    # long after it closed, with tombstones in their changelogs; checked every
    # MESH_RETENTION_SWEEP_SECONDS.
    region_closed_case_retention_days: float = Field(default=30.0, gt=0)
    # Shared reference data (referencedata/README.md): the agency directory.
    agency_directory_path: Path = PROJECT_ROOT / "referencedata" / "data" / "agencies.yaml"

    # Listen addresses (host:port; hosts without port below). In local mode each must be loopback.
    referral_grpc_address: str = "127.0.0.1:50051"
    region_grpc_address: str = "127.0.0.1:50052"
    notify_grpc_address: str = "127.0.0.1:50053"
    region_web_host: str = "127.0.0.1"  # MESH_REGION_WEB_HOST: the region worker's /health
    region_web_port: int = 6067
    notify_web_host: str = "127.0.0.1"  # MESH_NOTIFY_WEB_HOST: the dashboard
    notify_web_port: int = 6066
    # Resource limits of every gRPC server: calls served at once (more are refused with
    # RESOURCE_EXHAUSTED); open watch streams (referral changes, notify alerts) per caller, and how
    # long one stream may live before the client resumes it from its last cursor.
    grpc_max_concurrent_rpcs: int = Field(default=200, gt=0)
    watch_streams_per_caller: int = Field(default=4, gt=0)
    watch_stream_seconds: float = Field(default=3600.0, gt=0)
    # How often the referral service closes referrals whose consent ran out.
    consent_sweep_seconds: float = Field(default=60.0, gt=0)
    # How often retention runs by itself (referral access log, notify dead deliveries).
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # Published (and parked) referral outbox rows hold binding facts and sealed contacts; the
    # retention run deletes them this long after. WatchReferrals cursors older than this re-list.
    outbox_retention_days: float = Field(default=7.0, gt=0)
    # Prometheus scrape endpoints on MESH_METRICS_HOST; a port of 0 turns one off.
    metrics_host: str = "127.0.0.1"
    referral_metrics_port: int = 9464
    region_metrics_port: int = 9465
    notify_metrics_port: int = 9466

    # Mutual TLS of the referral service (services/referral/README.md, "Identity and TLS").
    # Server side: set cert, key and trust root (and the CA's CRL) to require client
    # certificates; the agency is then the OIN in the certificate. `mesh pki init DIR` makes
    # a demo CA: DIR/server.crt, DIR/server.key, DIR/ca.crt, DIR/crl.pem.
    tls_cert: Path | None = None  # MESH_TLS_CERT: the service's certificate chain (PEM)
    tls_key: Path | None = None  # MESH_TLS_KEY
    tls_ca: Path | None = None  # MESH_TLS_CA: trust root(s) for client certificates (and for clients)
    tls_crl: Path | None = None  # MESH_TLS_CRL: CRLs of the issuing CAs (a file or a folder), reloaded on change
    # How long past a CRL's nextUpdate its CA's certificates are still accepted; then refused.
    tls_crl_grace_seconds: float = Field(default=3600.0, ge=0)
    # Client side (the `mesh` command and the client library): one agency's certificate, or a
    # folder with <agency-id>.crt/.key per agency (DIR/agencies of `mesh pki init`).
    tls_client_cert: Path | None = None  # MESH_TLS_CLIENT_CERT
    tls_client_key: Path | None = None  # MESH_TLS_CLIENT_KEY
    tls_agency_dir: Path | None = None  # MESH_TLS_AGENCY_DIR

    # Notify service (services/notify/README.md). Unset paths live under state_dir/notify/.
    notify_database_url: str | None = None  # MESH_NOTIFY_DATABASE_URL: alerts, access log, deliveries
    notify_key_store_path: Path | None = None  # MESH_NOTIFY_KEY_STORE_PATH: per-case contact keys
    notify_client_outbox_path: Path | None = None  # MESH_NOTIFY_CLIENT_OUTBOX_PATH: embedded client channel
    notify_webhooks_path: Path = PROJECT_ROOT / "services" / "notify" / "config" / "webhooks.yaml"
    notify_client_help_path: Path = PROJECT_ROOT / "services" / "notify" / "config" / "client_help.yaml"
    notify_webhook_max_attempts: int = 6
    notify_webhook_base_delay: float = 1.0  # seconds before the 2nd try; doubles, with jitter
    notify_webhook_max_delay: float = 300.0
    notify_webhook_timeout: float = 10.0
    # Deliveries that gave up (status dead) are kept this long for `mesh notify replay`, as long
    # as the dead-letter topic keeps records; the retention run removes them after that.
    notify_dead_letter_retention_days: float = Field(default=30.0, gt=0)
    # Demo coordinators (one per region, one national) are created at start when true; their
    # password is MESH_NOTIFY_DEMO_PASSWORD, or a random one written to state_dir/notify/.
    notify_demo_coordinators: bool = True
    notify_demo_password: str | None = None
    notify_session_hours: float = 8.0
    # The dashboard outside MESH_MODE=local is HTTPS only (Secure __Host- cookies, HSTS): either
    # it serves TLS itself (cert + key, e.g. the organisation's web certificate) or a proxy or
    # ingress in front of it ends TLS (MESH_NOTIFY_WEB_TLS_PROXY=true).
    notify_web_tls_cert: Path | None = None  # MESH_NOTIFY_WEB_TLS_CERT
    notify_web_tls_key: Path | None = None  # MESH_NOTIFY_WEB_TLS_KEY
    notify_web_tls_proxy: bool = False
    # Key-encryption key that wraps the per-case contact keys in keys.db (a file of 32 random
    # bytes, base64). Required outside MESH_MODE=local, where it should come from a secret
    # store mounted apart from keys.db; local mode makes one under state_dir/notify/.
    notify_kek_path: Path | None = None  # MESH_NOTIFY_KEK_PATH
    # Sign-in with the organisation's OpenID Connect provider (services/notify/README.md,
    # "Sign-in with an identity provider"): the issuer turns it on and then needs the client id,
    # secret file and redirect URL (no issuer: local accounts only). Outside local mode the
    # issuer and the redirect URL must be https (oidc_settings_problem, checked when the notify
    # service starts). The region comes from the claim named here, or from the mapping file.
    notify_oidc_issuer: str | None = None  # MESH_NOTIFY_OIDC_ISSUER: the provider's issuer URL
    notify_oidc_client_id: str | None = None  # MESH_NOTIFY_OIDC_CLIENT_ID
    notify_oidc_client_secret_file: Path | None = None  # MESH_NOTIFY_OIDC_CLIENT_SECRET_FILE: read at start
    # MESH_NOTIFY_OIDC_REDIRECT_URL: https://<dashboard host>/login/oidc/callback
    notify_oidc_redirect_url: str | None = None
    notify_oidc_scopes: str = "openid"  # MESH_NOTIFY_OIDC_SCOPES: requested scopes, space separated
    notify_oidc_scope_claim: str = "mesh_region"  # MESH_NOTIFY_OIDC_SCOPE_CLAIM: a region code, NATIONAL, or groups
    notify_oidc_mapping_path: Path | None = None  # MESH_NOTIFY_OIDC_MAPPING_PATH: subjects/claim values -> scope
    notify_oidc_label: str = ""  # MESH_NOTIFY_OIDC_LABEL: the provider's name on the sign-in page
    # Client channels (services/notify/README.md, "Client channels"). Without SMTP or an SMS
    # gateway configured, client messages go to the local outbox file. Secrets come from files.
    notify_smtp_host: str | None = None  # MESH_NOTIFY_SMTP_HOST: e-mail through this relay (STARTTLS)
    notify_smtp_port: int = 587
    notify_smtp_sender: str = ""  # From address, e.g. "Meldpunt <noreply@example.org>"
    notify_smtp_username: str | None = None
    notify_smtp_password_file: Path | None = None
    notify_smtp_ca_file: Path | None = None  # trust this CA for the relay; else the system's roots
    notify_smtp_timeout: float = 30.0
    notify_sms_gateway_url: str | None = None  # MESH_NOTIFY_SMS_GATEWAY_URL: SMS through this gateway
    notify_sms_provider: str = "json"  # the adapter (services/notify/adapters/channels_sms.py)
    notify_sms_token_file: Path | None = None
    notify_sms_sender: str = ""  # originator shown on the phone (neutral)
    notify_sms_timeout: float = 10.0
    notify_sms_callback_url: str = ""  # public address of /channels/sms/status, sent to the gateway
    notify_sms_callback_secret_file: Path | None = None  # HMAC key the gateway signs reports with
    # Send-time rules: no SMS in the quiet hours (local time in the zone) unless urgent; at most
    # one message per case per gap unless urgent (services/notify/domain/send_rules.py).
    notify_quiet_hours: str = "21:00-08:00"
    notify_quiet_hours_timezone: str = "Europe/Amsterdam"
    notify_case_message_gap_minutes: float = Field(default=60.0, ge=0)

    @field_validator(
        "notify_web_tls_cert",
        "notify_web_tls_key",
        "notify_kek_path",
        "notify_smtp_host",
        "notify_smtp_username",
        "notify_smtp_password_file",
        "notify_smtp_ca_file",
        "notify_sms_gateway_url",
        "notify_sms_token_file",
        "notify_sms_callback_secret_file",
        mode="before",
    )
    @classmethod
    def _empty_notify_path_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "tls_cert",
        "tls_key",
        "tls_ca",
        "tls_crl",
        "tls_client_cert",
        "tls_client_key",
        "tls_agency_dir",
        "notify_key_store_path",
        "notify_client_outbox_path",
        "notify_database_url",
        "notify_demo_password",
        "notify_oidc_issuer",
        "notify_oidc_client_id",
        "notify_oidc_client_secret_file",
        "notify_oidc_redirect_url",
        "notify_oidc_mapping_path",
        "kafka_security_protocol",
        "kafka_ca",
        "kafka_username",
        "kafka_password_file",
        "kafka_client_cert",
        "kafka_client_key",
        "region_data_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def oidc_enabled(self) -> bool:
        return self.notify_oidc_issuer is not None

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert or self.tls_key or self.tls_ca or self.tls_crl)

    @property
    def local_mode(self) -> bool:
        return self.mode == "local"

    @property
    def development_identities(self) -> bool:
        """Bare identity headers (x-mesh-dev-agency, x-mesh-coordinator): local mode only, from
        loopback peers only, and never while TLS is configured (then the certificate decides)."""
        return self.local_mode and not self.tls_enabled

    environment: str = "local"
    log_level: str = "INFO"

    def topic(self, base_name: str) -> str:
        return f"{self.topic_prefix}{base_name}"


OIDC_CALLBACK_PATH = "/login/oidc/callback"


def oidc_settings_problem(config: MeshSettings) -> str | None:
    """What is wrong with the OpenID Connect settings, or None; without an issuer sign-in at an
    identity provider is off and the other MESH_NOTIFY_OIDC_* settings are not used."""
    if config.notify_oidc_issuer is None:
        return None
    required = {
        "MESH_NOTIFY_OIDC_ISSUER": config.notify_oidc_issuer,
        "MESH_NOTIFY_OIDC_CLIENT_ID": config.notify_oidc_client_id,
        "MESH_NOTIFY_OIDC_CLIENT_SECRET_FILE": config.notify_oidc_client_secret_file,
        "MESH_NOTIFY_OIDC_REDIRECT_URL": config.notify_oidc_redirect_url,
    }
    missing = [name for name, value in required.items() if value is None]
    if missing:
        return f"MESH_NOTIFY_OIDC_ISSUER is set: OpenID Connect sign-in needs {', '.join(missing)} as well"
    for name in ("MESH_NOTIFY_OIDC_ISSUER", "MESH_NOTIFY_OIDC_REDIRECT_URL"):
        url = urlsplit(str(required[name]))
        if url.scheme not in ("https", "http") or not url.netloc or url.query or url.fragment:
            return f"{name}={required[name]}: not an absolute http(s) URL without query or fragment"
        if url.scheme != "https" and not config.local_mode:
            return f"{name}={required[name]}: production mode needs https (http only with MESH_MODE=local)"
    if urlsplit(str(config.notify_oidc_redirect_url)).path != OIDC_CALLBACK_PATH:
        return f"MESH_NOTIFY_OIDC_REDIRECT_URL must end in {OIDC_CALLBACK_PATH} (the dashboard's callback)"
    if "openid" not in config.notify_oidc_scopes.split():
        return "MESH_NOTIFY_OIDC_SCOPES must include openid"
    if not config.notify_oidc_scope_claim.strip() and config.notify_oidc_mapping_path is None:
        return "MESH_NOTIFY_OIDC_SCOPE_CLAIM is empty and no MESH_NOTIFY_OIDC_MAPPING_PATH is set"
    return None


@lru_cache(maxsize=1)
def settings() -> MeshSettings:
    return MeshSettings()
