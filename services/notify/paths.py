"""Where the notify service keeps its files, from the settings (defaults under state_dir/notify/)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshkernel.config import MeshSettings


@dataclass(frozen=True)
class NotifyPaths:
    database_url: str
    key_store: Path
    client_outbox: Path
    demo_password_file: Path
    # The local key-encryption key: MESH_NOTIFY_KEK_PATH, or (local mode only) a file made here.
    kek_file: Path | None

    @classmethod
    def of(cls, config: MeshSettings) -> NotifyPaths:
        base = Path(config.state_dir) / f"{config.topic_prefix}notify"
        return cls(
            database_url=config.notify_database_url or f"sqlite:///{base / 'notify.db'}",
            key_store=Path(config.notify_key_store_path or base / "keys.db"),
            client_outbox=Path(config.notify_client_outbox_path or base / "client-outbox.jsonl"),
            demo_password_file=base / "demo-coordinators.json",
            kek_file=config.notify_kek_path or (base / "kek.key" if config.local_mode else None),
        )
