"""The embedded SQLite default, set up the same way for every service that keeps state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool

from meshkernel.private_files import private_file


def sqlite_engine(url: str) -> Engine:
    """An engine on a SQLite file (created private to this user) or :memory:, in WAL mode.

    With WAL, synchronous=NORMAL keeps the database consistent; only the last commits before a
    power loss may be lost, and the services get those back from Kafka (deduplicated by id).
    """
    path = url.split("///", 1)[1] if "///" in url else ""
    in_memory = not path or path == ":memory:"
    if not in_memory:
        private_file(Path(path))  # 0600 in a 0700 folder; SQLite's -wal/-shm files follow its mode
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, poolclass=StaticPool if in_memory else None
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine
