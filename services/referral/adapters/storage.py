"""The referral store: one SQL transaction per use case, with its outbox row and access entry.

SQLite (the embedded default) and PostgreSQL (DATABASE_URL) run the same code; the
version column gives optimistic concurrency, so of two racing transitions exactly one wins.

Outbox positions are handed out in commit order (PostgreSQL: a transaction-level advisory
lock taken just before the outbox insert and held to commit; SQLite: one writer at a time),
so a reader that has seen position N never later finds a new row below N. That is what makes
the position a safe cursor for WatchReferrals.

Access log retention: ``ACCESS_LOG_RETENTION_DAYS`` (environment, default 3650 = ten years,
at least 365). ``purge_expired_access_entries`` is the only code path that deletes entries,
and database triggers refuse any other UPDATE or DELETE (migration 0002).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, and_, create_engine, delete, event, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from services.referral.adapters.tables import (
    access_log,
    access_log_purge_horizon,
    outbox,
    outbox_parties,
    referrals,
    request_keys,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

DEFAULT_ACCESS_LOG_RETENTION_DAYS = 3650
MINIMUM_ACCESS_LOG_RETENTION_DAYS = 365  # the database triggers refuse anything younger
_OUTBOX_LOCK = 7_311_947_001  # pg_advisory_xact_lock key: outbox positions in commit order


def access_log_retention_days() -> int:
    """Retention of the access log in days, from ACCESS_LOG_RETENTION_DAYS (years, not days)."""
    raw = os.environ.get("ACCESS_LOG_RETENTION_DAYS", str(DEFAULT_ACCESS_LOG_RETENTION_DAYS))
    try:
        days = int(raw)
    except ValueError:
        raise ValueError(f"ACCESS_LOG_RETENTION_DAYS must be a whole number of days, not {raw!r}") from None
    if days < MINIMUM_ACCESS_LOG_RETENTION_DAYS:
        raise ValueError(
            f"ACCESS_LOG_RETENTION_DAYS={days}: the access log is kept at least "
            f"{MINIMUM_ACCESS_LOG_RETENTION_DAYS} days"
        )
    return days


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
    return create_engine(database_url, pool_size=20, max_overflow=20, pool_pre_ping=True)


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
    # For the change stream: which referral, its snapshot after the change, who may see it.
    referral_id: str | None = field(default=None, compare=False)
    event_type: str | None = field(default=None, compare=False)
    snapshot: dict | None = field(default=None, compare=False, repr=False)
    parties: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Change:
    """One committed change as the stream serves it: its position is the cursor."""

    position: int
    event_id: str
    event_type: str
    referral_id: str
    snapshot: dict


@dataclass(frozen=True)
class ListQuery:
    agency_id: str
    statuses: tuple[str, ...] = ()
    direction: str = "any"  # any | sent | received
    need_domain: str | None = None
    updated_since: datetime | None = None
    after_referral_id: str | None = None
    limit: int = 50


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
        """Insert a new referral; return None, or the existing id when the key was used before.

        The key row is written first: of two racing creates with one key, the second waits on
        the unique key and then finds the first one's referral (or a refusal).
        """
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(request_keys).values(
                        sender=row["sender"], request_key=request_key,
                        fingerprint=fingerprint, referral_id=row["referral_id"],
                    )
                )
                connection.execute(insert(referrals).values(**row))
                self._append_access(connection, access)
                self._append_events(connection, [event])  # last: the outbox lock is held to commit
            return None
        except IntegrityError:
            pass
        with self.engine.connect() as connection:
            existing = connection.execute(
                select(request_keys.c.referral_id, request_keys.c.fingerprint).where(
                    request_keys.c.sender == row["sender"], request_keys.c.request_key == request_key
                )
            ).first()
        if existing is None:  # the insert failed for another reason: let it surface
            raise RuntimeError("referral insert failed without a request key clash")
        if existing.fingerprint != fingerprint:
            raise RequestKeyReused(request_key)
        return existing.referral_id

    def save_transition(
        self, *, row: dict, expected_version: int, events: list[OutboxRecord], access: AccessEntry
    ) -> None:
        self.save_transitions([(row, expected_version, events, access)])

    def save_transitions(self, changes: Sequence[tuple[dict, int, list[OutboxRecord], AccessEntry]]) -> None:
        """Several referrals change together or not at all (consent withdrawal)."""
        with self.engine.begin() as connection:
            for row, expected_version, _events, _access in changes:
                result = connection.execute(
                    update(referrals)
                    .where(referrals.c.referral_id == row["referral_id"], referrals.c.version == expected_version)
                    .values(**row)
                )
                if result.rowcount != 1:
                    raise ConcurrentChange(row["referral_id"])
            for change in changes:
                self._append_access(connection, change[3])
            # Last: on PostgreSQL the outbox lock is held from here to commit.
            self._append_events(connection, [outgoing for change in changes for outgoing in change[2]])

    def record_access(self, access: AccessEntry) -> None:
        self.record_accesses([access])

    def record_accesses(self, entries: Iterable[AccessEntry]) -> None:
        entries = list(entries)
        if not entries:
            return
        with self.engine.begin() as connection:
            for entry in entries:
                self._append_access(connection, entry)

    def purge_expired_access_entries(self, now: datetime, retention_days: int | None = None) -> int:
        """Delete access entries older than retention; the only path that deletes any. Returns the count.

        The horizon row tells the database trigger which deletes are the purge; it never
        outlives this transaction.
        """
        days = access_log_retention_days() if retention_days is None else retention_days
        if days < MINIMUM_ACCESS_LOG_RETENTION_DAYS:
            raise ValueError(f"retention of {days} days is shorter than {MINIMUM_ACCESS_LOG_RETENTION_DAYS}")
        horizon = now - timedelta(days=days)
        with self.engine.begin() as connection:
            connection.execute(insert(access_log_purge_horizon).values(horizon=horizon))
            removed = connection.execute(delete(access_log).where(access_log.c.at < horizon)).rowcount
            connection.execute(delete(access_log_purge_horizon))
        return removed

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

    def access_entries(self, case_id: str, referral_ids: Iterable[str] | None = None) -> list[dict]:
        query = select(access_log).where(access_log.c.case_id == case_id)
        if referral_ids is not None:
            query = query.where(access_log.c.referral_id.in_(list(referral_ids)))
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(access_log.c.entry_id)).mappings()
            return [dict(row) for row in rows]

    def of_case(self, case_id: str) -> list[dict]:
        """Every referral of one case, as stored documents (the caller filters by party)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(referrals.c.document).where(referrals.c.case_id == case_id).order_by(referrals.c.referral_id)
            ).all()
        return [row.document for row in rows]

    def list_referrals(self, query: ListQuery) -> list[dict]:
        """Documents of the agency's referrals matching the filters, by referral id (keyset paging)."""
        me = query.agency_id
        if query.direction == "sent":
            party = referrals.c.sender == me
        elif query.direction == "received":
            party = or_(referrals.c.receiver == me, referrals.c.pending_receiver == me)
        else:
            party = or_(referrals.c.sender == me, referrals.c.receiver == me, referrals.c.pending_receiver == me)
        conditions = [party]
        if query.statuses:
            conditions.append(referrals.c.status.in_(query.statuses))
        if query.need_domain:
            conditions.append(referrals.c.need_domains.contains(f",{query.need_domain},", autoescape=True))
        if query.updated_since is not None:
            conditions.append(referrals.c.updated_at >= query.updated_since)
        if query.after_referral_id:
            conditions.append(referrals.c.referral_id > query.after_referral_id)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(referrals.c.document).where(and_(*conditions))
                .order_by(referrals.c.referral_id).limit(query.limit)
            ).all()
        return [row.document for row in rows]

    # --- change stream ----------------------------------------------------------------------

    def latest_position(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.coalesce(func.max(outbox.c.position), 0))).scalar_one()

    def changes_after(self, agency_id: str, position: int, limit: int = 200) -> list[Change]:
        """Changes relevant to one agency after a cursor, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.position, outbox.c.event_id, outbox.c.event_type,
                       outbox.c.referral_id, outbox.c.snapshot)
                .join(outbox_parties, outbox_parties.c.position == outbox.c.position)
                .where(outbox_parties.c.agency_id == agency_id, outbox.c.position > position)
                .order_by(outbox.c.position)
                .limit(limit)
            ).all()
        return [Change(row.position, row.event_id, row.event_type, row.referral_id, row.snapshot)
                for row in rows if row.snapshot is not None]

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
    def _append_events(connection: Connection, records: list[OutboxRecord]) -> None:
        if not records:
            return
        if connection.dialect.name == "postgresql":
            # Held until commit: positions become visible in the order they were handed out.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OUTBOX_LOCK})
        for record in records:
            position = connection.execute(
                insert(outbox).values(
                    event_id=record.event_id, topic=record.topic, key=record.key,
                    value=record.value, created_at=_now(), referral_id=record.referral_id,
                    event_type=record.event_type, snapshot=record.snapshot,
                ).returning(outbox.c.position)
            ).scalar_one()
            for agency_id in sorted(set(record.parties)):
                connection.execute(insert(outbox_parties).values(agency_id=agency_id, position=position))

    @staticmethod
    def _append_access(connection: Connection, entry: AccessEntry) -> None:
        connection.execute(insert(access_log).values(at=_now(), **entry.__dict__))
