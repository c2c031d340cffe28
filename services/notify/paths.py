"""Where the notify service keeps its state, from the settings (files under state_dir/notify/).

The database (MESH_NOTIFY_DATABASE_URL) is PostgreSQL for any number of replicas, or a SQLite
file for one. Unset, it is a file under the state folder, but only in local mode: a production
start without it is refused (`database_problem`), because each replica would silently keep a
store of its own and coordinators would see a different dashboard on every replica.
"""

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


def database_problem(config: MeshSettings, service: str) -> str | None:
    """Production start check: the notify database is named, not a per-replica default file."""
    if service != "notify" or config.local_mode or config.notify_database_url:
        return None
    return (
        "MESH_NOTIFY_DATABASE_URL is not set; production mode needs the notify database named: "
        "postgresql+psycopg://... shared by every replica, or sqlite:////path/notify.db for a single one"
    )
