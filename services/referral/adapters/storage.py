"""The referral store: one SQL transaction per use case, with its outbox row and access entry.

SQLite (the embedded default) and PostgreSQL (DATABASE_URL) run the same code; the
version column gives optimistic concurrency, so of two racing transitions exactly one wins.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, insert, select, update
from sqlalchemy.engine import Connection

from services.referral.adapters.tables import access_log, outbox, referrals, request_keys

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    return create_engine(database_url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@dataclass(frozen=True)
class OutboxRecord:
    event_id: str
    topic: str
    key: str
    value: bytes


@dataclass(frozen=True)
class AccessEntry:
    action: str
    organisation: str
    user: str
    on_behalf_of: str
    purpose: str
    outcome: str
    case_id: str | None = None
    referral_id: str | None = None


@dataclass(frozen=True)
class StoredReferral:
    document: dict
    facts: dict
    asked_in: str
    contact_key_id: str | None
    contact_ciphertext: bytes | None


class ConcurrentChange(Exception):
    """Another transition committed first; the caller's version is stale."""


class RequestKeyReused(Exception):
    """A request key came back with a different payload."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ReferralStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # --- writes -----------------------------------------------------------------------------

    def create(
        self,
        *,
        row: dict,
        request_key: str,
        fingerprint: str,
        event: OutboxRecord,
        access: AccessEntry,
    ) -> str | None:
        """Insert a new referral; return None, or the existing id when the key was used before."""
        with self.engine.begin() as connection:
            existing = connection.execute(
                select(request_keys.c.referral_id, request_keys.c.fingerprint).where(
                    request_keys.c.sender == row["sender"], request_keys.c.request_key == request_key
                )
            ).first()
            if existing is not None:
                if existing.fingerprint != fingerprint:
                    raise RequestKeyReused(request_key)
                return existing.referral_id
            connection.execute(insert(referrals).values(**row))
            connection.execute(
                insert(request_keys).values(
                    sender=row["sender"], request_key=request_key,
                    fingerprint=fingerprint, referral_id=row["referral_id"],
                )
            )
            self._append_event(connection, event)
            self._append_access(connection, access)
        return None

    def save_transition(
        self, *, row: dict, expected_version: int, events: list[OutboxRecord], access: AccessEntry
    ) -> None:
        with self.engine.begin() as connection:
            result = connection.execute(
                update(referrals)
                .where(referrals.c.referral_id == row["referral_id"], referrals.c.version == expected_version)
                .values(**row)
            )
            if result.rowcount != 1:
                raise ConcurrentChange(row["referral_id"])
            for outgoing in events:
                self._append_event(connection, outgoing)
            self._append_access(connection, access)

    def record_access(self, access: AccessEntry) -> None:
        with self.engine.begin() as connection:
            self._append_access(connection, access)

    # --- reads ------------------------------------------------------------------------------

    def get(self, referral_id: str) -> StoredReferral | None:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(
                    referrals.c.document, referrals.c.facts, referrals.c.asked_in,
                    referrals.c.contact_key_id, referrals.c.contact_ciphertext,
                ).where(referrals.c.referral_id == referral_id)
            ).first()
        if found is None:
            return None
        return StoredReferral(*found)

    def access_entries(self, case_id: str) -> list[dict]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(access_log).where(access_log.c.case_id == case_id).order_by(access_log.c.entry_id)
            ).mappings()
            return [dict(row) for row in rows]

    # --- outbox relay -----------------------------------------------------------------------

    def unpublished(self, limit: int = 500) -> list[tuple[int, OutboxRecord]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.position, outbox.c.event_id, outbox.c.topic, outbox.c.key, outbox.c.value)
                .where(outbox.c.published_at.is_(None))
                .order_by(outbox.c.position)
                .limit(limit)
            ).all()
        return [(row.position, OutboxRecord(row.event_id, row.topic, row.key, row.value)) for row in rows]

    def mark_published(self, positions: list[int]) -> None:
        if not positions:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(outbox).where(outbox.c.position.in_(positions)).values(published_at=_now())
            )

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _append_event(connection: Connection, record: OutboxRecord) -> None:
        connection.execute(
            insert(outbox).values(
                event_id=record.event_id, topic=record.topic, key=record.key,
                value=record.value, created_at=_now(),
            )
        )

    @staticmethod
    def _append_access(connection: Connection, entry: AccessEntry) -> None:
        connection.execute(insert(access_log).values(at=_now(), **entry.__dict__))
