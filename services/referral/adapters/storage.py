"""The referral store: one SQL transaction per use case, with its outbox row and access entry.

SQLite (the embedded default) and PostgreSQL (DATABASE_URL) run the same code; the
version column gives optimistic concurrency, so of two racing transitions exactly one wins.

The WatchReferrals cursor is a feed position handed out in commit order, so a reader that
has seen position N never later finds a new row at or below N. SQLite has one writer at a
time, so there the outbox row's own position is in commit order. On PostgreSQL writers commit
concurrently and take no shared lock; `sequence_feed` numbers committed rows afterwards, one
sequencer at a time (migration 0003), and the relay and the stream readers call it.

PostgreSQL hot path: a transition is two round trips (read the row; one statement that
updates it with the version check and appends its access entry and outbox rows, committed on
its own: one statement is one transaction), and a create is one. SQLite keeps the SQLAlchemy
Core path.

Access log retention: ``ACCESS_LOG_RETENTION_DAYS`` (environment, default 3650 = ten years,
at least 365). ``purge_expired_access_entries`` is the only code path that deletes entries,
and database triggers refuse any other UPDATE or DELETE (migration 0002).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, and_, create_engine, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from meshkernel.sqlite import sqlite_engine
from services.referral.adapters.tables import (
    access_log,
    access_log_purge_horizon,
    consent_withdrawals,
    outbox,
    outbox_parties,
    referrals,
    request_keys,
)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

DEFAULT_ACCESS_LOG_RETENTION_DAYS = 3650
MINIMUM_ACCESS_LOG_RETENTION_DAYS = 365  # the database triggers refuse anything younger
_FEED_LOCK = 7_311_947_002  # pg_advisory_xact_lock key: one feed sequencer at a time
_MIGRATION_LOCK = 7_311_947_003  # one migration at a time
# PostgreSQL connections: enough for every worker thread of the gRPC server plus the relay.
PG_POOL_SIZE = int(os.environ.get("MESH_DB_POOL_SIZE", "32"))


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
        return sqlite_engine(database_url)
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    # No pre-ping: it cost a round trip on every checkout. A connection found broken is
    # invalidated (with the rest of the pool) on its first failure instead, and recycled
    # connections never get old enough for server-side idle timeouts.
    return create_engine(database_url, pool_size=PG_POOL_SIZE, max_overflow=8, pool_recycle=1800)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Replicas starting together: one migrates, the others wait and then find it done.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
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


@dataclass(frozen=True)
class ParkedRow:
    position: int
    event_id: str
    topic: str
    reason: str
    parked_at: datetime


class OutboxClaim:
    """Rows one relay publishes now; `finish` records the outcome, `abandon` hands them back."""

    rows: list[tuple[int, OutboxRecord]]

    def finish(self, published: list[int], parked: Sequence[tuple[int, str]]) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        raise NotImplementedError


class _SqliteClaim(OutboxClaim):
    def __init__(self, store: ReferralStore, rows: list[tuple[int, OutboxRecord]]):
        self._store = store
        self.rows = rows

    def finish(self, published: list[int], parked: Sequence[tuple[int, str]]) -> None:
        self._store.park(parked)
        self._store.mark_published(published)

    def abandon(self) -> None:
        pass


class _PgClaim(OutboxClaim):
    def __init__(self, pooled: Any, rows: list[tuple[int, OutboxRecord]]):
        self._pooled = pooled
        self._ended = False
        self.rows = rows

    def finish(self, published: list[int], parked: Sequence[tuple[int, str]]) -> None:
        if self._ended:
            raise RuntimeError("this claim has ended")
        self._ended = True
        try:
            driver = self._pooled.driver_connection
            with driver.cursor() as cursor:
                now = _now()
                if published:
                    cursor.execute(_PG_MARK_PUBLISHED, (now, published))
                for position, reason in parked:
                    cursor.execute(_PG_PARK, (now, reason, position))
        except BaseException:
            _end(self._pooled, commit=False)
            raise
        _end(self._pooled, commit=True)

    def abandon(self) -> None:
        if not self._ended:
            self._ended = True
            _end(self._pooled, commit=False)


def _end(pooled: Any, *, commit: bool) -> None:
    """Commit or roll back a claim's transaction and give its connection back (or drop it)."""
    try:
        driver = pooled.driver_connection
        if commit:
            driver.commit()
        else:
            driver.rollback()
    except Exception:
        pooled.invalidate()  # cut off (e.g. idle too long) or broken: never back to the pool
        if commit:
            raise
    finally:
        pooled.close()


class ConcurrentChange(Exception):
    """Another transition committed first; the caller's version is stale."""


class RequestKeyReused(Exception):
    """A request key came back with a different payload."""


def _now() -> datetime:
    return datetime.now(UTC)


class ReferralStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        # SQLite lets one writer in at a time and makes the others sleep and retry (busy
        # timeout, with growing sleeps: that was most of its p99). Writers of this process
        # queue on a lock instead; other processes still meet the busy timeout.
        self._one_writer = threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._one_writer, self.engine.begin() as connection:
            yield connection

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
            if self._postgresql:
                self._pg_create(row, request_key, fingerprint, event, access)
                return None
            with self._writing() as connection:
                connection.execute(
                    insert(request_keys).values(
                        sender=row["sender"],
                        request_key=request_key,
                        fingerprint=fingerprint,
                        referral_id=row["referral_id"],
                    )
                )
                connection.execute(insert(referrals).values(**row))
                self._append_access(connection, access)
                self._append_events(connection, [event])
            return None
        except (IntegrityError, _PgIntegrityError):
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
            raise RequestKeyReused("this request key was used before for a referral with other content")
        return existing.referral_id

    def save_transition(
        self, *, row: dict, expected_version: int, events: list[OutboxRecord], access: AccessEntry
    ) -> None:
        if self._postgresql and len(events) == 1:
            self._pg_save_transition(row, expected_version, events[0], access)
            return
        self.save_transitions([(row, expected_version, events, access)])

    def save_transitions(self, changes: Sequence[tuple[dict, int, list[OutboxRecord], AccessEntry]]) -> None:
        """Several referrals change together or not at all (consent withdrawal)."""
        with self._writing() as connection:
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
            self._append_events(connection, [outgoing for change in changes for outgoing in change[2]])

    def record_consent_withdrawal(self, case_id: str, at: datetime) -> None:
        """Remember the client's latest withdrawal for the case (an earlier one never wins)."""
        with self._writing() as connection:
            updated = connection.execute(
                update(consent_withdrawals)
                .where(consent_withdrawals.c.case_id == case_id, consent_withdrawals.c.withdrawn_at < at)
                .values(withdrawn_at=at)
            ).rowcount
            if updated:
                return
            exists = connection.execute(
                select(consent_withdrawals.c.case_id).where(consent_withdrawals.c.case_id == case_id)
            ).first()
            if exists is None:
                connection.execute(insert(consent_withdrawals).values(case_id=case_id, withdrawn_at=at))

    def consent_withdrawn_at(self, case_id: str) -> datetime | None:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(consent_withdrawals.c.withdrawn_at).where(consent_withdrawals.c.case_id == case_id)
            ).scalar_one_or_none()
        if found is not None and found.tzinfo is None:  # SQLite keeps no zone: stored as UTC
            found = found.replace(tzinfo=UTC)
        return found

    def record_access(self, access: AccessEntry) -> None:
        self.record_accesses([access])

    def record_accesses(self, entries: Iterable[AccessEntry]) -> None:
        entries = list(entries)
        if not entries:
            return
        with self._writing() as connection:
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
        with self._writing() as connection:
            connection.execute(insert(access_log_purge_horizon).values(horizon=horizon))
            removed = connection.execute(delete(access_log).where(access_log.c.at < horizon)).rowcount
            connection.execute(delete(access_log_purge_horizon))
        return removed

    # --- reads ------------------------------------------------------------------------------

    def get(self, referral_id: str) -> StoredReferral | None:
        if self._postgresql:
            with self._pg_cursor() as cursor:
                found = cursor.execute(_PG_GET, (referral_id,)).fetchone()
            return None if found is None else StoredReferral(*found)
        with self.engine.connect() as connection:
            found = connection.execute(
                select(
                    referrals.c.document,
                    referrals.c.facts,
                    referrals.c.asked_in,
                    referrals.c.contact_key_id,
                    referrals.c.contact_ciphertext,
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
                select(referrals.c.document)
                .where(and_(*conditions))
                .order_by(referrals.c.referral_id)
                .limit(query.limit)
            ).all()
        return [row.document for row in rows]

    # --- change stream ----------------------------------------------------------------------

    def sequence_feed(self) -> int:
        """Give committed outbox rows their feed positions, in one batch; returns how many.

        PostgreSQL only (SQLite positions are in commit order already). Runs take an advisory
        lock, so they follow one another: a run numbers only rows committed before it, after
        every number an earlier run handed out, and its numbers appear together at its commit.
        """
        if not self._postgresql:
            return 0
        with self._pg_cursor() as cursor:
            if cursor.execute(_PG_ANY_UNSEQUENCED).fetchone() is None:
                return 0
            with cursor.connection.transaction():
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_FEED_LOCK,))
                cursor.execute(_PG_SEQUENCE)
                return cursor.rowcount

    def latest_position(self) -> int:
        self.sequence_feed()
        with self.engine.connect() as connection:
            return connection.execute(select(func.coalesce(func.max(self._feed_of(outbox)), 0))).scalar_one()

    def changes_after(self, agency_id: str, position: int, limit: int = 200) -> list[Change]:
        """Changes relevant to one agency after a cursor, oldest first."""
        self.sequence_feed()
        feed = self._feed_of(outbox_parties)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    feed.label("position"),
                    outbox.c.event_id,
                    outbox.c.event_type,
                    outbox.c.referral_id,
                    outbox.c.snapshot,
                )
                .join(outbox_parties, outbox_parties.c.position == outbox.c.position)
                .where(outbox_parties.c.agency_id == agency_id, feed > position)
                .order_by(feed)
                .limit(limit)
            ).all()
        return [
            Change(row.position, row.event_id, row.event_type, row.referral_id, row.snapshot)
            for row in rows
            if row.snapshot is not None
        ]

    # --- outbox relay -----------------------------------------------------------------------

    def consent_expired(self, now: datetime, open_statuses: Iterable[str], limit: int = 200) -> list[str]:
        """Ids of open referrals whose recorded consent ran out at or before `now`."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(referrals.c.referral_id)
                .where(referrals.c.status.in_(list(open_statuses)), referrals.c.consent_valid_until <= now)
                .order_by(referrals.c.consent_valid_until)
                .limit(limit)
            ).all()
        return [row.referral_id for row in rows]

    def count_by_status(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(referrals.c.status, func.count()).group_by(referrals.c.status)).all()
        return dict(rows)

    def outbox_backlog(self) -> int:
        """Rows still to publish (parked rows are not: they wait for an operator)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
            ).scalar_one()

    def parked_rows(self, limit: int = 100) -> list[ParkedRow]:
        """Rows the relay parked, oldest first: what `mesh outbox` shows an operator."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.position, outbox.c.event_id, outbox.c.topic, outbox.c.park_reason, outbox.c.parked_at)
                .where(outbox.c.parked_at.is_not(None))
                .order_by(outbox.c.position)
                .limit(limit)
            ).all()
        return [ParkedRow(*row) for row in rows]

    def parked_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                select(func.count()).select_from(outbox).where(outbox.c.parked_at.is_not(None))
            ).scalar_one()

    def unpublished(self, limit: int = 500) -> list[tuple[int, OutboxRecord]]:
        """The next committed rows to publish, in commit (feed) order."""
        self.sequence_feed()
        feed = self._feed_of(outbox)
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(outbox.c.position, outbox.c.event_id, outbox.c.topic, outbox.c.key, outbox.c.value)
                .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None), feed.is_not(None))
                .order_by(feed)
                .limit(limit)
            ).all()
        return [(row.position, OutboxRecord(row.event_id, row.topic, row.key, row.value)) for row in rows]

    def claim_unpublished(self, limit: int = 500, hold_seconds: int = 60) -> OutboxClaim:
        """The next rows this relay may publish, held for it until the claim is finished.

        PostgreSQL: the rows are locked (`FOR UPDATE SKIP LOCKED`) in a transaction that stays
        open while they are published, so any number of relays share one outbox and each row is
        published by one relay at a time. A claimed row is handed out only when every older
        unpublished row of its key (its case) is in the same claim, so a case's events leave in
        order even when another relay holds part of them. A relay that dies ends its
        transaction and its rows go to the next claim; one that hangs is cut off after
        `hold_seconds` idle in the transaction.

        SQLite (one replica): the oldest rows, unlocked; the claim only marks them.
        """
        if not self._postgresql:
            return _SqliteClaim(self, self.unpublished(limit))
        self.sequence_feed()
        pooled = self.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            driver.autocommit = False
            with driver.cursor() as cursor:
                cursor.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{int(hold_seconds)}s'")
                locked = cursor.execute(_PG_CLAIM, (limit,)).fetchall()
                keys = sorted({row[3] for row in locked})
                newest = max((row[5] for row in locked), default=0)
                pending = cursor.execute(_PG_PENDING_OF_KEYS, (keys, newest)).fetchall() if locked else []
        except BaseException:
            _end(pooled, commit=False)
            raise
        mine = {row[0] for row in locked}
        blocked: set[str] = set()
        allowed: set[int] = set()
        for position, key in pending:  # each key's unpublished rows, oldest first
            if key in blocked:
                continue
            if position in mine:
                allowed.add(position)
            else:  # an older row of this case is elsewhere: this claim waits for it
                blocked.add(key)
        rows = [
            (position, OutboxRecord(event_id, topic, key, bytes(value)))
            for position, event_id, topic, key, value, _feed in locked
            if position in allowed
        ]
        return _PgClaim(pooled, rows)

    def mark_published(self, positions: list[int]) -> None:
        if not positions:
            return
        with self._writing() as connection:
            connection.execute(update(outbox).where(outbox.c.position.in_(positions)).values(published_at=_now()))

    def park(self, parked: Sequence[tuple[int, str]]) -> None:
        """Set rows aside that cannot be published, each with its reason code."""
        if not parked:
            return
        with self._writing() as connection:
            now = _now()
            for position, reason in parked:
                connection.execute(
                    update(outbox).where(outbox.c.position == position).values(parked_at=now, park_reason=reason)
                )

    def prune_outbox(self, now: datetime, retention: timedelta, batch: int = 2000) -> int:
        """Delete rows published (or parked) longer than `retention` ago; returns how many.

        They hold binding facts and sealed contacts, so they do not stay for ever. The newest
        row always stays: positions and feed positions continue after it, never restart.
        """
        horizon = now - retention
        removed = 0
        while True:
            with self._writing() as connection:
                newest = connection.execute(
                    select(func.max(outbox.c.position), func.max(outbox.c.feed_position))
                ).first()
                if newest is None or newest[0] is None:
                    return removed
                newest_position, newest_feed = newest
                conditions = [
                    or_(outbox.c.published_at < horizon, outbox.c.parked_at < horizon),
                    outbox.c.position < newest_position,
                ]
                if newest_feed is not None:
                    conditions.append(or_(outbox.c.feed_position.is_(None), outbox.c.feed_position < newest_feed))
                positions = [
                    row.position
                    for row in connection.execute(select(outbox.c.position).where(*conditions).limit(batch)).all()
                ]
                if positions:
                    connection.execute(delete(outbox_parties).where(outbox_parties.c.position.in_(positions)))
                    connection.execute(delete(outbox).where(outbox.c.position.in_(positions)))
            removed += len(positions)
            if len(positions) < batch:
                return removed

    # --- helpers ----------------------------------------------------------------------------

    @property
    def _postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def _feed_of(self, table):
        """The commit-order cursor column: the sequenced feed position on PostgreSQL."""
        return table.c.feed_position if self._postgresql else table.c.position

    @contextmanager
    def _pg_cursor(self) -> Iterator:
        """A pooled psycopg connection in autocommit: each statement is its own transaction."""
        pooled = self.engine.raw_connection()
        try:
            driver: Any = pooled.driver_connection
            driver.autocommit = True
            try:
                with driver.cursor() as cursor:
                    yield cursor
            finally:
                if not driver.closed:
                    driver.autocommit = False
        except _PgOperationalError:
            pooled.invalidate()  # a broken connection never goes back to the pool
            raise
        finally:
            pooled.close()

    def _pg_create(
        self, row: dict, request_key: str, fingerprint: str, event: OutboxRecord, access: AccessEntry
    ) -> None:
        now = _now()
        document = _pg_row(row)
        params = {
            **document,
            "request_key": request_key,
            "fingerprint": fingerprint,
            **_pg_access(access, now),
            **_pg_event(event, now, row["document"], document["document"]),
        }
        with self._pg_cursor() as cursor:
            cursor.execute(_PG_CREATE, params)

    def _pg_save_transition(self, row: dict, expected_version: int, event: OutboxRecord, access: AccessEntry) -> None:
        now = _now()
        document = _pg_row(row)
        params = {
            **document,
            "expected_version": expected_version,
            **_pg_access(access, now),
            **_pg_event(event, now, row["document"], document["document"]),
        }
        with self._pg_cursor() as cursor:
            changed = cursor.execute(_PG_TRANSITION, params).fetchone()[0]
        if changed != 1:  # the statement wrote nothing: no access entry, no event
            raise ConcurrentChange(row["referral_id"])

    @staticmethod
    def _append_events(connection: Connection, records: list[OutboxRecord]) -> None:
        if not records:
            return
        for record in records:
            position = connection.execute(
                insert(outbox)
                .values(
                    event_id=record.event_id,
                    topic=record.topic,
                    key=record.key,
                    value=record.value,
                    created_at=_now(),
                    referral_id=record.referral_id,
                    event_type=record.event_type,
                    snapshot=record.snapshot,
                )
                .returning(outbox.c.position)
            ).scalar_one()
            for agency_id in sorted(set(record.parties)):
                connection.execute(insert(outbox_parties).values(agency_id=agency_id, position=position))

    @staticmethod
    def _append_access(connection: Connection, entry: AccessEntry) -> None:
        connection.execute(insert(access_log).values(at=_now(), **entry.__dict__))


# --- PostgreSQL hot path ------------------------------------------------------------------------
# Plain SQL through psycopg (server-side prepared after a few runs on a connection), so the
# per-request cost is one round trip per statement and no SQL compilation. Each statement runs
# in autocommit: PostgreSQL runs a statement, with all its data-modifying WITH parts, as one
# transaction, so the change, its access entry and its outbox rows commit together or not at all.

try:
    from psycopg import IntegrityError as _PgIntegrityError
    from psycopg import OperationalError as _PgOperationalError
except ImportError:  # SQLite-only installation

    class _PgIntegrityError(Exception):  # type: ignore[no-redef]
        pass

    class _PgOperationalError(Exception):  # type: ignore[no-redef]
        pass


_PG_GET = "SELECT document, facts, asked_in, contact_key_id, contact_ciphertext FROM referrals WHERE referral_id = %s"

_PG_ACCESS_COLUMNS = 'at, action, case_id, referral_id, organisation, "user", on_behalf_of, purpose, outcome'
_PG_ACCESS_VALUES = (
    "%(a_at)s, %(a_action)s, %(a_case_id)s, %(a_referral_id)s, %(a_organisation)s, "
    "%(a_user)s, %(a_on_behalf_of)s, %(a_purpose)s, %(a_outcome)s"
)
_PG_EVENT_COLUMNS = "event_id, topic, key, value, created_at, referral_id, event_type, snapshot"
_PG_EVENT_VALUES = (
    "%(e_event_id)s, %(e_topic)s, %(e_key)s, %(e_value)s, %(e_created_at)s, "
    "%(e_referral_id)s, %(e_event_type)s, %(e_snapshot)s::json"
)
_PG_ROW_COLUMNS = (
    "referral_id, case_id, sender, receiver, pending_receiver, status, version, asked_in, "
    "updated_at, need_domains, document, facts, contact_key_id, contact_ciphertext, "
    "consent_valid_until"
)
_PG_ROW_VALUES = (
    "%(referral_id)s, %(case_id)s, %(sender)s, %(receiver)s, %(pending_receiver)s, %(status)s, "
    "%(version)s, %(asked_in)s, %(updated_at)s, %(need_domains)s, %(document)s::json, "
    "%(facts)s::json, %(contact_key_id)s, %(contact_ciphertext)s, %(consent_valid_until)s"
)

# Every part reads from `changed`: a stale version updates no row and so writes nothing at all.
_PG_TRANSITION = f"""
WITH changed AS (
    UPDATE referrals SET ({_PG_ROW_COLUMNS}) = ({_PG_ROW_VALUES})
    WHERE referral_id = %(referral_id)s AND version = %(expected_version)s
    RETURNING referral_id
), logged AS (
    INSERT INTO access_log ({_PG_ACCESS_COLUMNS}) SELECT {_PG_ACCESS_VALUES} FROM changed
), event AS (
    INSERT INTO outbox ({_PG_EVENT_COLUMNS}) SELECT {_PG_EVENT_VALUES} FROM changed RETURNING position
), parties AS (
    INSERT INTO outbox_parties (agency_id, position)
    SELECT party, event.position FROM event CROSS JOIN unnest(%(e_parties)s::text[]) AS party
)
SELECT count(*) FROM changed
"""

# The request key goes in with the rest: a used key fails the whole statement (unique key).
_PG_CREATE = f"""
WITH keyed AS (
    INSERT INTO request_keys (sender, request_key, fingerprint, referral_id)
    VALUES (%(sender)s, %(request_key)s, %(fingerprint)s, %(referral_id)s)
), created AS (
    INSERT INTO referrals ({_PG_ROW_COLUMNS}) VALUES ({_PG_ROW_VALUES})
), logged AS (
    INSERT INTO access_log ({_PG_ACCESS_COLUMNS}) VALUES ({_PG_ACCESS_VALUES})
), event AS (
    INSERT INTO outbox ({_PG_EVENT_COLUMNS}) VALUES ({_PG_EVENT_VALUES}) RETURNING position
)
INSERT INTO outbox_parties (agency_id, position)
SELECT party, event.position FROM event CROSS JOIN unnest(%(e_parties)s::text[]) AS party
"""

# The relay's claim: the oldest sequenced rows nobody else holds, locked until the claim ends.
_PG_CLAIM = """
SELECT position, event_id, topic, key, value, feed_position FROM outbox
WHERE published_at IS NULL AND parked_at IS NULL AND feed_position IS NOT NULL
ORDER BY feed_position LIMIT %s
FOR UPDATE SKIP LOCKED
"""
# Every unpublished row of the claimed keys up to the newest claimed one, held or not.
_PG_PENDING_OF_KEYS = """
SELECT position, key FROM outbox
WHERE key = ANY(%s) AND published_at IS NULL AND parked_at IS NULL
  AND feed_position IS NOT NULL AND feed_position <= %s
ORDER BY key, feed_position
"""
_PG_MARK_PUBLISHED = "UPDATE outbox SET published_at = %s WHERE position = ANY(%s)"
_PG_PARK = "UPDATE outbox SET parked_at = %s, park_reason = %s WHERE position = %s"

_PG_ANY_UNSEQUENCED = "SELECT 1 FROM outbox WHERE feed_position IS NULL LIMIT 1"

# Committed, unnumbered rows get the next numbers in insert order (a referral's later change
# was inserted after its earlier one committed); outbox_parties gets the same numbers.
_PG_SEQUENCE = """
WITH pending AS (
    SELECT position, row_number() OVER (ORDER BY position) AS n FROM outbox WHERE feed_position IS NULL
), base AS (
    SELECT coalesce(max(feed_position), 0) AS last FROM outbox
), numbered AS (
    UPDATE outbox SET feed_position = base.last + pending.n
    FROM pending, base WHERE outbox.position = pending.position
    RETURNING outbox.position, outbox.feed_position
)
UPDATE outbox_parties SET feed_position = numbered.feed_position
FROM numbered WHERE outbox_parties.position = numbered.position
"""


def _pg_row(row: dict) -> dict:
    return {**row, "document": json.dumps(row["document"]), "facts": json.dumps(row["facts"])}


def _pg_access(entry: AccessEntry, now: datetime) -> dict:
    return {"a_at": now, **{f"a_{name}": value for name, value in entry.__dict__.items()}}


def _pg_event(record: OutboxRecord, now: datetime, document: dict, document_json: str) -> dict:
    """The outbox row's parameters; a snapshot that is the row's own document is not encoded twice."""
    if record.snapshot is None:
        snapshot = None
    elif record.snapshot is document:
        snapshot = document_json
    else:
        snapshot = json.dumps(record.snapshot)
    return {
        "e_event_id": record.event_id,
        "e_topic": record.topic,
        "e_key": record.key,
        "e_value": record.value,
        "e_created_at": now,
        "e_referral_id": record.referral_id,
        "e_event_type": record.event_type,
        "e_snapshot": snapshot,
        "e_parties": sorted(set(record.parties)),
    }
