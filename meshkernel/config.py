"""One configuration for the whole mesh, from environment variables with embedded defaults.

The defaults run everything on loopback with SQLite, so `make run` needs no set-up; an
operator points the services elsewhere with the variables named on each field.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = PROJECT_ROOT / "var"


class MeshSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MESH_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "MESH_KAFKA_BOOTSTRAP"),
    )
    # Lets tests and parallel demos share one broker without seeing each other's events.
    topic_prefix: str = ""
    topic_partitions: int = 6
    topic_replication: int = 1

    database_url: str = Field(
        default=f"sqlite:///{STATE_DIR / 'referral.db'}",
        validation_alias=AliasChoices("DATABASE_URL", "MESH_DATABASE_URL"),
    )
    state_dir: Path = STATE_DIR

    region_policy_path: Path = PROJECT_ROOT / "services" / "region" / "config" / "regions.yaml"
    agency_directory_path: Path = PROJECT_ROOT / "services" / "referral" / "config" / "agencies.yaml"

    referral_grpc_address: str = "127.0.0.1:50051"
    region_grpc_address: str = "127.0.0.1:50052"
    notify_grpc_address: str = "127.0.0.1:50053"
    region_web_port: int = 6067
    notify_web_port: int = 6066

    # Loopback-only development identity header until mutual TLS lands (see the referral README).
    dev_identity: bool = True

    environment: str = "local"
    log_level: str = "INFO"

    def topic(self, base_name: str) -> str:
        return f"{self.topic_prefix}{base_name}"


@lru_cache(maxsize=1)
def settings() -> MeshSettings:
    return MeshSettings()
