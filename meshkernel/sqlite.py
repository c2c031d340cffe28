"""The embedded SQLite default, set up the same way for every service that keeps state."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import StaticPool


def sqlite_engine(url: str) -> Engine:
    """An engine on a SQLite file (its folder created) or :memory:, in WAL mode.

    With WAL, synchronous=NORMAL keeps the database consistent; only the last commits before a
    power loss may be lost, and the services get those back from Kafka (deduplicated by id).
    """
    path = url.split("///", 1)[-1]
    in_memory = not path or path == ":memory:"
    if not in_memory:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                           poolclass=StaticPool if in_memory else None)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine
