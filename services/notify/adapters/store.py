"""The notify service's own store: a SQLite file (the embedded default) or PostgreSQL, shared
by every notify replica (MESH_NOTIFY_DATABASE_URL).

Holds alert records and their change feed (the cursor of the live dashboard and the gRPC
stream), the append-only access log, what is known per case (from assignments and referral
events: region codes, agency ids, the sealed contact as ciphertext only), every notification
with its delivery attempts, the events of coordinator actions until they are published (the
action outbox), and the coordinators' password store and sessions.

Nothing here is readable contact data: the keys to open sealed contacts live in the key store
(adapters/keystore.py; its own file with SQLite, its own table with PostgreSQL), so that
erasing a key shreds every copy.

Guarantees with several replicas on one PostgreSQL:
- the schema is made and upgraded by one replica at a time (an advisory lock around a
  versioned create), so replicas may start together;
- the change feed never skips: appending a change takes a transaction-scoped advisory lock
  first, so changes commit in the order of their sequence numbers, and a reader that has seen
  number N never later finds a new change at or below N;
- recording an alert, a notification, a case's sealer or an account is idempotent (INSERT ...
  ON CONFLICT), so two replicas handling one redelivered event both succeed, once;
- a due delivery is claimed (FOR UPDATE SKIP LOCKED, then leased) by one dispatcher at a time.
- a coordinator action's alert change and the events it sends are one transaction (the action
  outbox); one action relay at a time publishes them (a transaction-scoped advisory lock held
  while it publishes), so a case's events leave in the order they were recorded.

Every method is blocking; asynchronous code calls them through `store.aio` (`await
store.aio.case(case_id)`), which runs them in the store's own thread pool, never on the loop;
other blocking work on the same database goes there too (`await store.aio.run(fn, *args)`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    false,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from meshkernel.sqlite import sqlite_engine
from services.notify.domain.alerts import Action, Alert, AlertState, Change

metadata = MetaData()

alerts = Table(
    "alerts",
    metadata,
    Column("escalation_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("referral_id", String(64), nullable=False),
    Column("region", String(16), nullable=False, index=True),
    Column("level", String(40), nullable=False),
    Column("rule", String(80), nullable=False),
    Column("responsible_rule", String(80), nullable=False, default=""),
    Column("fired_at", Float, nullable=False),
    Column("case_started_at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("owner", String(80), nullable=False, default=""),
    Column("outcome", String(40), nullable=False, default=""),
    Column("history", Text, nullable=False),  # JSON list of changes (codes only)
    Column("escalation", LargeBinary, nullable=False),  # the EscalationEvent as received
    Column("updated_at", Float, nullable=False),
)

# One row per change of any alert: the cursor of every live view (resumable, multi-replica).
alert_changes = Table(
    "alert_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("escalation_id", String(64), nullable=False),
    Column("at", Float, nullable=False),
)

# NEN 7513 in spirit: who did what, when, to which case, on whose behalf and why. Append-only
# (database triggers refuse UPDATE and DELETE).
access_log = Table(
    "access_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("organisation", String(120), nullable=False),
    Column("on_behalf_of", String(120), nullable=False),
    Column("action", String(40), nullable=False),
    Column("case_id", String(128), nullable=False, index=True),
    Column("subject", String(80), nullable=False),  # escalation or notification id
    Column("why", String(80), nullable=False),  # purpose, reason or outcome code
    Column("channel", String(16), nullable=False),  # web, grpc, cli, system
    Column("result", String(40), nullable=False),  # ok, or refused:<code>
)

cases = Table(
    "cases",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("referral_id", String(64), nullable=False, default=""),
    Column("responsible_region", String(16), nullable=False, default=""),
    Column("responsible_rule", String(80), nullable=False, default=""),
    Column("sender", String(80), nullable=False, default=""),
    Column("receiver", String(80), nullable=False, default=""),
    Column("languages", String(80), nullable=False, default=""),
    Column("last_assignment", LargeBinary),  # envelope of the latest assignment
    Column("contact_key_id", String(64)),
    Column("contact_ciphertext", LargeBinary),  # sealed; only the key store can open it
    Column("updated_at", Float, nullable=False),
)

# The agency that sealed a case's contact before the mesh knew the case: a party to it.
case_sealers = Table(
    "case_sealers",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("agency_id", String(80), nullable=False),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("notification_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("audience", String(16), nullable=False),
    Column("recipient", String(128), nullable=False),
    Column("template", String(64), nullable=False),
    Column("language", String(8), nullable=False),
    Column("channel", String(16), nullable=False),  # webhook, client, none
    Column("status", String(16), nullable=False),  # pending, delivered, dead, skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_result", String(80), nullable=False, default=""),
    Column("created_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("envelope", LargeBinary, nullable=False),  # the NotificationEvent envelope
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("result", String(80), nullable=False),
    Column("duration_ms", Integer, nullable=False),
)

coordinators = Table(
    "coordinators",
    metadata,
    Column("username", String(80), primary_key=True),
    Column("password_hash", String(400), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("display_name", String(120), nullable=False, default=""),
    Column("organisation", String(120), nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
    Column("demo", Boolean, nullable=False, default=False, server_default=false()),  # MESH_MODE=local only
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(80), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Coordinator actions' events (CoordinatorOverride, AlertAction), written in the transaction
# that records the action and published afterwards by the action relay (a transactional
# outbox): the store never says an action happened whose event may be lost.
action_outbox = Table(
    "action_outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("topic", String(80), nullable=False),  # the topic's base name, e.g. region.overrides.v1
    Column("key", LargeBinary, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("recorded_at", Float, nullable=False),
    Column("published_at", Float, index=True),
)

# The version of the schema this code makes; a database of a newer version is refused (an
# older replica during a rolling upgrade must not write a schema it does not know).
SCHEMA_VERSION = 1
schema_version = Table("notify_schema", metadata, Column("version", Integer, primary_key=True))

_SQLITE_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
)
_POSTGRES_APPEND_ONLY = (
    "CREATE OR REPLACE FUNCTION notify_access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'access_log is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER access_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON access_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION notify_access_log_append_only()",
)
# pg_advisory_xact_lock keys: one schema set-up at a time; one change-feed append at a time;
# one intake batch at a time.
_SCHEMA_LOCK = 7_311_947_101
_FEED_LOCK = 7_311_947_102
_ACTION_RELAY_LOCK = 7_311_947_103  # one action relay publishes at a time (per-case order)
_INTAKE_LOCK = 7_311_947_104
# Rows per multi-row INSERT (SQLite allows 32,766 bound values per statement).
_ROWS_PER_INSERT = 500
# PostgreSQL: threads of the store's pool, and connections (a few more for the command line).
POSTGRES_THREADS = 8


class SchemaTooNew(RuntimeError):
    """The database was set up by a newer version of the notify service."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return sqlite_engine(url)
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=POSTGRES_THREADS, max_overflow=4, pool_recycle=1800)


def _upsert_insert(connection: Connection, table: Table):
    """INSERT with ON CONFLICT support, in the connection's dialect. Whether a row went in is
    read from RETURNING (the driver's rowcount is not reliable for ON CONFLICT DO NOTHING)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _add_missing_columns(connection: Connection, table: Table) -> None:
    """Columns added to a table after a database was first created (server defaults fill them)."""
    present = {column["name"] for column in inspect(connection).get_columns(table.name)}
    for column in table.columns:
        if column.name not in present:
            kind = column.type.compile(dialect=connection.dialect)
            server_default: Any = column.server_default  # a DefaultClause: its argument is the SQL
            default = ""
            if server_default is not None:
                default = f" DEFAULT {server_default.arg.compile(dialect=connection.dialect)}"
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} NOT NULL{default}"))


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for creating or upgrading tables; on PostgreSQL one replica at a time (the
    others wait, then find the work done). DDL is transactional there: nothing is half-made."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        yield connection


def prepare_schema(engine: Engine) -> None:
    """Create or upgrade the tables (safe when replicas start together)."""
    with schema_transaction(engine) as connection:
        postgres = connection.dialect.name == "postgresql"
        metadata.create_all(connection)
        found = connection.execute(select(schema_version.c.version)).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the notify database has schema version {found}; this version of the service knows {SCHEMA_VERSION}"
            )
        _add_missing_columns(connection, coordinators)
        for statement in _POSTGRES_APPEND_ONLY if postgres else _SQLITE_APPEND_ONLY:
            connection.execute(text(statement))
        if found != SCHEMA_VERSION:
            connection.execute(delete(schema_version))
            connection.execute(insert(schema_version).values(version=SCHEMA_VERSION))


class OffLoop:
    """The asynchronous face of a blocking object: `await facade.method(...)` runs
    `target.method(...)` in the given thread pool (with the caller's context, so spans nest)."""

    def __init__(self, target: object, executor: ThreadPoolExecutor):
        self._target = target
        self._executor = executor

    async def run(self, blocking: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Any other blocking work on the same database (a projection's queries, a page's
        figures), in the same thread pool."""
        context = contextvars.copy_context()
        work = functools.partial(context.run, blocking, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._target, name)
        if name.startswith("_") or not callable(method):
            raise AttributeError(name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.run(method, *args, **kwargs)

        call.__name__ = name
        return call


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _history_json(history: tuple[Change, ...]) -> str:
    return json.dumps(
        [
            {
                "action": c.action.value,
                "actor": c.actor,
                "at": _ts(c.at),
                "state": c.state.value,
                "code": c.code,
                "region": c.region,
            }
            for c in history
        ]
    )


def _history(raw: str) -> tuple[Change, ...]:
    return tuple(
        Change(Action(c["action"]), c["actor"], _dt(c["at"]), AlertState(c["state"]), c["code"], c["region"])
        for c in json.loads(raw)
    )


@dataclass(frozen=True)
class StoredAlert:
    alert: Alert
    escalation: bytes  # EscalationEvent bytes
    updated_at: datetime
    seq: int = 0


@dataclass(frozen=True)
class CaseInfo:
    case_id: str
    referral_id: str
    responsible_region: str
    responsible_rule: str
    sender: str
    receiver: str
    languages: tuple[str, ...]
    last_assignment: bytes | None
    contact_key_id: str | None
    contact_ciphertext: bytes | None


@dataclass(frozen=True)
class NewNotification:
    notification_id: str
    case_id: str
    audience: str
    recipient: str
    template: str
    language: str
    channel: str
    envelope: bytes  # the NotificationEvent envelope to record and send


@dataclass(frozen=True)
class Delivery:
    notification_id: str
    case_id: str
    audience: str
    recipient: str
    template: str
    language: str
    channel: str
    status: str
    attempts: int
    next_attempt_at: float
    last_result: str
    envelope: bytes


@dataclass(frozen=True)
class OutgoingEvent:
    """An event a coordinator action sends: recorded with the action, published by the relay."""

    event_id: str
    topic: str  # base name
    key: bytes
    envelope: bytes  # the encoded EventEnvelope


@dataclass(frozen=True)
class PendingEvent(OutgoingEvent):
    seq: int = 0


class EventClaim:
    """Unpublished action events held for one relay; `finish` marks the published ones and
    ends the claim (on PostgreSQL, its transaction and lock). Blocking, like the store."""

    def __init__(self, store: NotifyStore, events: list[PendingEvent], connection: Connection | None = None):
        self.store = store
        self.events = events
        self._connection = connection

    def finish(self, published: Sequence[int]) -> None:
        if self._connection is None:
            if published:
                with self.store._writing() as connection:
                    self.store._mark_published(connection, published)
            return
        try:
            self.store._mark_published(self._connection, published)
            self._connection.commit()
        finally:
            self._connection.close()
            self._connection = None


class NotifyStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        # SQLite: one writer at a time inside this process (PostgreSQL takes row locks itself).
        self._sqlite_lock = threading.RLock()
        prepare_schema(engine)
        in_memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
        threads = POSTGRES_THREADS if self.postgres else 1 if in_memory else 4
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="notify-store")
        self.aio = OffLoop(self, self._executor)  # `await store.aio.<method>(...)` from async code

    @classmethod
    def open(cls, url: str) -> NotifyStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()

    @property
    def _lock(self):
        return self._sqlite_lock if not self.postgres else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._lock, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def intake(self) -> Iterator[Connection]:
        """One transaction for a batch of input events (adapters/intake.py). On PostgreSQL one
        intake transaction at a time across replicas (a transaction-scoped advisory lock): the
        agents of one replica, and those of several, write the same case rows in batches of
        their own order, and a read after the batch's writes must see every committed write of
        another batch (a referral's contact and a case's assignment meet in one of the two)."""
        with self._writing() as connection:
            if self.postgres:
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INTAKE_LOCK})
            yield connection

    def _append_change(self, connection: Connection, escalation_id: str, now: float) -> None:
        """The last statement of a transaction that changed an alert: under the feed lock, so
        changes commit in sequence order (readers never skip one committed late)."""
        if self.postgres:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK})
        connection.execute(insert(alert_changes).values(escalation_id=escalation_id, at=now))

    # --- alerts -------------------------------------------------------------------------
    def add_alert(self, alert: Alert, escalation: bytes, now: float | None = None) -> bool:
        """Insert once per escalation id; False when it was already there (a redelivery)."""
        with self._writing() as connection:
            return self.add_alert_in(connection, alert, escalation, now)

    def add_alert_in(self, connection: Connection, alert: Alert, escalation: bytes, now: float | None = None) -> bool:
        """`add_alert` within the caller's transaction (which then ends soon: the change feed's
        lock on PostgreSQL is held until it commits)."""
        now = now or time.time()
        added = connection.execute(
            _upsert_insert(connection, alerts)
            .values(**self._alert_row(alert), escalation=escalation, updated_at=now)
            .on_conflict_do_nothing(index_elements=[alerts.c.escalation_id])
            .returning(alerts.c.escalation_id)
        ).first()
        if added is None:
            return False
        self._append_change(connection, alert.escalation_id, now)
        return True

    def raise_alert(self, alert: Alert, escalation: bytes, now: float | None = None) -> bool:
        """A new alert and its ALERT_RAISED access-log entry, in one transaction; False when the
        escalation was already recorded (a redelivery), and then nothing is logged."""
        with self._writing() as connection:
            return self.raise_alert_in(connection, alert, escalation, now)

    def raise_alert_in(self, connection: Connection, alert: Alert, escalation: bytes, now: float | None = None) -> bool:
        """`raise_alert` within the caller's transaction (a worker batch)."""
        if not self.add_alert_in(connection, alert, escalation, now):
            return False
        self.log_access_in(
            connection,
            actor="system",
            action="ALERT_RAISED",
            case_id=alert.case_id,
            subject=alert.escalation_id,
            why=alert.rule,
            channel="system",
            on_behalf_of="client",
        )
        return True

    def save_alert(self, alert: Alert, now: float | None = None, events: Sequence[OutgoingEvent] = ()) -> None:
        """Save a changed alert and, in the same transaction, the events the change must send
        (the action relay publishes them): both or neither. An event id already recorded is
        not recorded again."""
        now = now or time.time()
        with self._writing() as connection:
            row = self._alert_row(alert)
            row.pop("escalation_id")
            connection.execute(
                update(alerts).where(alerts.c.escalation_id == alert.escalation_id).values(**row, updated_at=now)
            )
            for event in events:
                connection.execute(
                    _upsert_insert(connection, action_outbox)
                    .values(
                        event_id=event.event_id,
                        topic=event.topic,
                        key=event.key,
                        envelope=event.envelope,
                        recorded_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=[action_outbox.c.event_id])
                )
            self._append_change(connection, alert.escalation_id, now)

    # --- the coordinator actions' outbox ------------------------------------------------------
    def claim_unpublished_events(self, limit: int = 100, hold_seconds: int = 60) -> EventClaim:
        """The oldest unpublished action events, for one relay at a time.

        PostgreSQL: the claim holds a transaction-scoped advisory lock until it is finished, so
        with several replicas one relay publishes at a time and a case's events leave in the
        order they were recorded; the others get an empty claim and try again later. A relay
        that dies ends its transaction (and lock); one that hangs is cut off after
        `hold_seconds` idle in the transaction. SQLite (one replica): the oldest rows."""
        query = (
            select(action_outbox)
            .where(action_outbox.c.published_at.is_(None))
            .order_by(action_outbox.c.seq)
            .limit(limit)
        )
        if not self.postgres:
            with self.engine.connect() as connection:
                rows = connection.execute(query).mappings().all()
            return EventClaim(self, [self._pending_event(row) for row in rows])
        connection = self.engine.connect()
        try:
            connection.begin()
            connection.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{int(hold_seconds)}s'"))
            mine = connection.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _ACTION_RELAY_LOCK}
            ).scalar()
            rows = connection.execute(query).mappings().all() if mine else []
        except BaseException:
            connection.close()
            raise
        return EventClaim(self, [self._pending_event(row) for row in rows], connection)

    def _mark_published(self, connection: Connection, seqs: Sequence[int]) -> None:
        if seqs:
            connection.execute(
                update(action_outbox).where(action_outbox.c.seq.in_(list(seqs))).values(published_at=time.time())
            )

    def unpublished_event_count(self) -> int:
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count()).select_from(action_outbox).where(action_outbox.c.published_at.is_(None))
                ).scalar_one()
            )

    def unpublished_events(self) -> list[PendingEvent]:
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(action_outbox).where(action_outbox.c.published_at.is_(None)).order_by(action_outbox.c.seq)
                )
                .mappings()
                .all()
            )
        return [self._pending_event(row) for row in rows]

    def purge_published_events(self, published_before: float) -> int:
        """Published action events have done their job; they go after a retention period."""
        with self._writing() as connection:
            return connection.execute(
                delete(action_outbox).where(
                    action_outbox.c.published_at.is_not(None), action_outbox.c.published_at < published_before
                )
            ).rowcount

    @staticmethod
    def _pending_event(row) -> PendingEvent:
        return PendingEvent(
            seq=row["seq"],
            event_id=row["event_id"],
            topic=row["topic"],
            key=bytes(row["key"]),
            envelope=bytes(row["envelope"]),
        )

    def get_alert(self, escalation_id: str) -> StoredAlert | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(alerts).where(alerts.c.escalation_id == escalation_id)).mappings().first()
        return self._stored(row) if row else None

    def alerts(self, *, include_resolved: bool = False) -> list[StoredAlert]:
        query = select(alerts)
        if not include_resolved:
            query = query.where(alerts.c.state != AlertState.RESOLVED.value)
        with self.engine.connect() as connection:
            return [self._stored(row) for row in connection.execute(query).mappings()]

    def alerts_of_cases(self, case_ids: set[str] | frozenset[str]) -> list[StoredAlert]:
        """Every alert (resolved ones too) of the given cases."""
        if not case_ids:
            return []
        with self.engine.connect() as connection:
            rows = connection.execute(select(alerts).where(alerts.c.case_id.in_(sorted(case_ids)))).mappings()
            return [self._stored(row) for row in rows]

    def alerts_touched_since(self, since: float) -> list[StoredAlert]:
        """The alerts not resolved, and those changed (e.g. resolved) at or after `since`."""
        query = select(alerts).where((alerts.c.state != AlertState.RESOLVED.value) | (alerts.c.updated_at >= since))
        with self.engine.connect() as connection:
            return [self._stored(row) for row in connection.execute(query).mappings()]

    def changes_after(self, cursor: int, limit: int = 500) -> list[StoredAlert]:
        """Alert states changed after `cursor`, each with the seq of its latest change."""
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(alert_changes.c.seq, alerts)
                    .join(alerts, alerts.c.escalation_id == alert_changes.c.escalation_id)
                    .where(alert_changes.c.seq > cursor)
                    .order_by(alert_changes.c.seq)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [self._stored(row, row["seq"]) for row in rows]

    def last_cursor(self) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(text("SELECT MAX(seq) FROM alert_changes")).scalar()
        return int(value or 0)

    @staticmethod
    def _alert_row(alert: Alert) -> dict:
        return {
            "escalation_id": alert.escalation_id,
            "case_id": alert.case_id,
            "referral_id": alert.referral_id,
            "region": alert.region,
            "level": alert.level,
            "rule": alert.rule,
            "responsible_rule": alert.responsible_rule,
            "fired_at": _ts(alert.fired_at),
            "case_started_at": _ts(alert.case_started_at),
            "state": alert.state.value,
            "owner": alert.owner,
            "outcome": alert.outcome,
            "history": _history_json(alert.history),
        }

    @staticmethod
    def _stored(row, seq: int = 0) -> StoredAlert:
        alert = Alert(
            escalation_id=row["escalation_id"],
            case_id=row["case_id"],
            referral_id=row["referral_id"],
            region=row["region"],
            level=row["level"],
            rule=row["rule"],
            fired_at=_dt(row["fired_at"]),
            case_started_at=_dt(row["case_started_at"]),
            responsible_rule=row["responsible_rule"],
            state=AlertState(row["state"]),
            owner=row["owner"],
            outcome=row["outcome"],
            history=_history(row["history"]),
        )
        return StoredAlert(alert, row["escalation"], _dt(row["updated_at"]), seq)

    # --- access log ---------------------------------------------------------------------
    def log_access(
        self,
        *,
        actor: str,
        action: str,
        case_id: str,
        subject: str = "",
        why: str = "",
        channel: str = "web",
        result: str = "ok",
        organisation: str = "",
        on_behalf_of: str = "client",
    ) -> None:
        with self._writing() as connection:
            self.log_access_in(
                connection,
                actor=actor,
                action=action,
                case_id=case_id,
                subject=subject,
                why=why,
                channel=channel,
                result=result,
                organisation=organisation,
                on_behalf_of=on_behalf_of,
            )

    @staticmethod
    def log_access_in(
        connection: Connection,
        *,
        actor: str,
        action: str,
        case_id: str,
        subject: str = "",
        why: str = "",
        channel: str = "web",
        result: str = "ok",
        organisation: str = "",
        on_behalf_of: str = "client",
    ) -> None:
        """`log_access` within the caller's transaction."""
        connection.execute(
            insert(access_log).values(
                at=time.time(),
                actor=actor,
                organisation=organisation,
                on_behalf_of=on_behalf_of,
                action=action,
                case_id=case_id,
                subject=subject,
                why=why,
                channel=channel,
                result=result,
            )
        )

    def access_entries(self, case_id: str | None = None) -> list[dict]:
        query = select(access_log).order_by(access_log.c.id)
        if case_id is not None:
            query = query.where(access_log.c.case_id == case_id)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    # --- cases --------------------------------------------------------------------------
    def case_parties(self, case_id: str) -> frozenset[str]:
        """The agencies party to a case as far as notify knows: sender, receiver, the sealing agency."""
        with self.engine.connect() as connection:
            known = connection.execute(
                select(cases.c.sender, cases.c.receiver).where(cases.c.case_id == case_id)
            ).first()
            sealer = connection.execute(
                select(case_sealers.c.agency_id).where(case_sealers.c.case_id == case_id)
            ).scalar()
        return frozenset(agency for agency in (*(known or ()), sealer) if agency)

    def record_sealer(self, case_id: str, agency_id: str) -> None:
        """The first agency to seal a contact for a case; later seals change nothing."""
        with self._writing() as connection:
            connection.execute(
                _upsert_insert(connection, case_sealers)
                .values(case_id=case_id, agency_id=agency_id)
                .on_conflict_do_nothing(index_elements=[case_sealers.c.case_id])
            )

    def case(self, case_id: str) -> CaseInfo | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
        if not row:
            return None
        return self._case(row)

    @staticmethod
    def _case(row) -> CaseInfo:
        return CaseInfo(
            case_id=row["case_id"],
            referral_id=row["referral_id"],
            responsible_region=row["responsible_region"],
            responsible_rule=row["responsible_rule"],
            sender=row["sender"],
            receiver=row["receiver"],
            languages=tuple(code for code in row["languages"].split(",") if code),
            last_assignment=row["last_assignment"],
            contact_key_id=row["contact_key_id"],
            contact_ciphertext=row["contact_ciphertext"],
        )

    def update_case(self, case_id: str, **values) -> CaseInfo:
        if "languages" in values:
            values["languages"] = ",".join(values["languages"])
        values["updated_at"] = time.time()
        with self._writing() as connection:
            connection.execute(
                _upsert_insert(connection, cases)
                .values(case_id=case_id, **values)
                .on_conflict_do_update(index_elements=[cases.c.case_id], set_=values)
            )
        stored = self.case(case_id)
        assert stored is not None  # written just above
        return stored

    def update_cases_in(self, connection: Connection, rows: list[dict]) -> None:
        """`update_case` for many cases within the caller's transaction (rows with the same
        columns, `case_id` among them), in their order: one statement run once per row."""
        if not rows:
            return
        now = time.time()
        rows = [
            {**row, "languages": ",".join(row["languages"]), "updated_at": now}
            if "languages" in row
            else {**row, "updated_at": now}
            for row in rows
        ]
        upsert = _upsert_insert(connection, cases)
        changed = {name: upsert.excluded[name] for name in rows[0] if name != "case_id"}
        connection.execute(upsert.on_conflict_do_update(index_elements=[cases.c.case_id], set_=changed), rows)

    def cases_in(self, connection: Connection, case_ids: set[str]) -> dict[str, CaseInfo]:
        """The named cases as the caller's transaction sees them."""
        found: dict[str, CaseInfo] = {}
        ordered = sorted(case_ids)
        for start in range(0, len(ordered), _ROWS_PER_INSERT):
            chunk = ordered[start : start + _ROWS_PER_INSERT]
            for row in connection.execute(select(cases).where(cases.c.case_id.in_(chunk))).mappings():
                found[row["case_id"]] = self._case(row)
        return found

    def forget_contact(self, case_id: str) -> None:
        with self._writing() as connection:
            connection.execute(
                update(cases).where(cases.c.case_id == case_id).values(contact_key_id=None, contact_ciphertext=None)
            )

    # --- deliveries ---------------------------------------------------------------------
    def record_notification(
        self,
        *,
        notification_id: str,
        case_id: str,
        audience: str,
        recipient: str,
        template: str,
        language: str,
        channel: str,
        envelope: bytes,
    ) -> bool:
        """Record once by id; False when it already exists (redelivered input)."""
        now = time.time()
        with self._writing() as connection:
            recorded = connection.execute(
                _upsert_insert(connection, deliveries)
                .values(
                    notification_id=notification_id,
                    case_id=case_id,
                    audience=audience,
                    recipient=recipient,
                    template=template,
                    language=language,
                    channel=channel,
                    status="pending" if channel != "none" else "skipped",
                    attempts=0,
                    next_attempt_at=now,
                    last_result="" if channel != "none" else "no channel",
                    created_at=now,
                    finished_at=None if channel != "none" else now,
                    envelope=envelope,
                )
                .on_conflict_do_nothing(index_elements=[deliveries.c.notification_id])
                .returning(deliveries.c.notification_id)
            ).first()
            return recorded is not None

    def record_notifications_in(self, connection: Connection, rows: list[NewNotification]) -> dict[str, bytes]:
        """Record each notification once by id, within the caller's transaction. Returns, per id,
        the event bytes to send: the given ones for a new record, the recorded ones for an id
        recorded before (a redelivered input, or another replica first), so that whatever is
        sent under an id is what the store holds."""
        now = time.time()
        unique = list({row.notification_id: row for row in rows}.values())
        values = [
            {
                "notification_id": row.notification_id,
                "case_id": row.case_id,
                "audience": row.audience,
                "recipient": row.recipient,
                "template": row.template,
                "language": row.language,
                "channel": row.channel,
                "status": "pending" if row.channel != "none" else "skipped",
                "attempts": 0,
                "next_attempt_at": now,
                "last_result": "" if row.channel != "none" else "no channel",
                "created_at": now,
                "finished_at": None if row.channel != "none" else now,
                "envelope": row.envelope,
            }
            for row in unique
        ]
        # One statement run for every row (SQLAlchemy sends them as multi-row INSERTs and
        # collects what RETURNING names: the ids that went in now).
        insert_new = (
            _upsert_insert(connection, deliveries)
            .on_conflict_do_nothing(index_elements=[deliveries.c.notification_id])
            .returning(deliveries.c.notification_id)
        )
        fresh = set(connection.execute(insert_new, values).scalars()) if values else set()
        to_send = {row.notification_id: row.envelope for row in unique if row.notification_id in fresh}
        earlier = [row.notification_id for row in unique if row.notification_id not in fresh]
        for start in range(0, len(earlier), _ROWS_PER_INSERT):
            chunk = earlier[start : start + _ROWS_PER_INSERT]
            query = select(deliveries.c.notification_id, deliveries.c.envelope).where(
                deliveries.c.notification_id.in_(chunk)
            )
            to_send.update({row.notification_id: row.envelope for row in connection.execute(query)})
        return to_send

    def due_deliveries(self, now: float, limit: int = 50) -> list[Delivery]:
        with self.engine.connect() as connection:
            rows = (
                connection.execute(
                    select(deliveries)
                    .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                    .order_by(deliveries.c.next_attempt_at)
                    .limit(limit)
                )
                .mappings()
                .all()
            )
        return [self._delivery(row) for row in rows]

    def claim_due_deliveries(self, now: float, lease_seconds: float, limit: int = 50) -> list[Delivery]:
        """The due deliveries this dispatcher may attempt now: each is leased (its next attempt
        moved `lease_seconds` ahead), so another replica's dispatcher skips it; the attempt's
        outcome sets the real next time. A dispatcher that dies mid-attempt leaves the delivery
        to any dispatcher once the lease ends (at least once; receivers dedupe by id)."""
        with self._writing() as connection:
            due = (
                select(deliveries.c.notification_id)
                .where(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            ids = list(connection.execute(due).scalars())
            if not ids:
                return []
            rows = connection.execute(select(deliveries).where(deliveries.c.notification_id.in_(ids))).mappings().all()
            connection.execute(
                update(deliveries)
                .where(deliveries.c.notification_id.in_(ids))
                .values(next_attempt_at=now + lease_seconds)
            )
        return sorted((self._delivery(row) for row in rows), key=lambda d: d.next_attempt_at)

    def delivery(self, notification_id: str) -> Delivery | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(deliveries).where(deliveries.c.notification_id == notification_id))
                .mappings()
                .first()
            )
        return self._delivery(row) if row else None

    def deliveries(self, case_id: str | None = None) -> list[Delivery]:
        query = select(deliveries).order_by(deliveries.c.created_at)
        if case_id is not None:
            query = query.where(deliveries.c.case_id == case_id)
        with self.engine.connect() as connection:
            return [self._delivery(row) for row in connection.execute(query).mappings()]

    def attempts(self, notification_id: str) -> list[dict]:
        with self.engine.connect() as connection:
            return [
                dict(row)
                for row in connection.execute(
                    select(delivery_attempts)
                    .where(delivery_attempts.c.notification_id == notification_id)
                    .order_by(delivery_attempts.c.id)
                ).mappings()
            ]

    def record_attempt(
        self, notification_id: str, *, result: str, duration_ms: int, status: str, next_attempt_at: float | None = None
    ) -> int:
        """Add one attempt; set the new status (pending with a next time, delivered, dead, skipped)."""
        now = time.time()
        with self._writing() as connection:
            current = connection.execute(
                select(deliveries.c.attempts).where(deliveries.c.notification_id == notification_id)
            ).scalar_one()
            attempt = current + 1
            connection.execute(
                insert(delivery_attempts).values(
                    notification_id=notification_id, attempt=attempt, at=now, result=result, duration_ms=duration_ms
                )
            )
            values = {"attempts": attempt, "status": status, "last_result": result}
            if status == "pending":
                values["next_attempt_at"] = next_attempt_at or now
            else:
                values["finished_at"] = now
            connection.execute(
                update(deliveries).where(deliveries.c.notification_id == notification_id).values(**values)
            )
            return attempt

    def postpone(self, notification_id: str, until: float, reason: str) -> None:
        """Hold a pending delivery until a later time without counting a try (send-time rules)."""
        with self._writing() as connection:
            connection.execute(
                update(deliveries)
                .where(deliveries.c.notification_id == notification_id, deliveries.c.status == "pending")
                .values(next_attempt_at=until, last_result=reason)
            )

    def purge_dead_deliveries(self, finished_before: float) -> int:
        """Remove deliveries that gave up (dead) before the given time, with their attempts.
        The retention run calls it; returns how many deliveries it removed."""
        with self._writing() as connection:
            expired = select(deliveries.c.notification_id).where(
                deliveries.c.status == "dead", deliveries.c.finished_at < finished_before
            )
            connection.execute(delete(delivery_attempts).where(delivery_attempts.c.notification_id.in_(expired)))
            return connection.execute(
                delete(deliveries).where(deliveries.c.status == "dead", deliveries.c.finished_at < finished_before)
            ).rowcount

    def requeue(self, notification_id: str) -> bool:
        """Give a dead delivery a fresh set of tries (replay); False if delivered or unknown."""
        with self._writing() as connection:
            result = connection.execute(
                update(deliveries)
                .where(deliveries.c.notification_id == notification_id, deliveries.c.status.in_(("dead", "pending")))
                .values(
                    status="pending", attempts=0, next_attempt_at=time.time(), finished_at=None, last_result="replayed"
                )
            )
            return result.rowcount > 0

    @staticmethod
    def _delivery(row) -> Delivery:
        return Delivery(
            notification_id=row["notification_id"],
            case_id=row["case_id"],
            audience=row["audience"],
            recipient=row["recipient"],
            template=row["template"],
            language=row["language"],
            channel=row["channel"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_result=row["last_result"],
            envelope=row["envelope"],
        )

    # --- coordinators and sessions ------------------------------------------------------
    def put_coordinator(
        self,
        username: str,
        password_hash: str,
        scope: str,
        display_name: str = "",
        organisation: str = "",
        *,
        demo: bool = False,
    ) -> None:
        account = {
            "password_hash": password_hash,
            "scope": scope,
            "display_name": display_name,
            "organisation": organisation,
            "disabled": False,
            "demo": demo,
        }
        with self._writing() as connection:
            connection.execute(
                _upsert_insert(connection, coordinators)
                .values(username=username, **account)
                .on_conflict_do_update(index_elements=[coordinators.c.username], set_=account)
            )

    def coordinator(self, username: str) -> dict | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(coordinators).where(coordinators.c.username == username)).mappings().first()
        return dict(row) if row else None

    def coordinator_list(self) -> list[dict]:
        """Every account without its hash, by username."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(coordinators).order_by(coordinators.c.username)).mappings().all()
        return [{key: value for key, value in row.items() if key != "password_hash"} for row in rows]

    def set_password_hash(self, username: str, password_hash: str) -> bool:
        """A new hash (reset, or the same password at a new cost); False for an unknown account."""
        with self._writing() as connection:
            result = connection.execute(
                update(coordinators).where(coordinators.c.username == username).values(password_hash=password_hash)
            )
            return result.rowcount > 0

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable) an account; disabling ends its sessions. False for an unknown account."""
        with self._writing() as connection:
            result = connection.execute(
                update(coordinators).where(coordinators.c.username == username).values(disabled=disabled)
            )
            if disabled:
                connection.execute(sessions.delete().where(sessions.c.username == username))
            return result.rowcount > 0

    def drop_sessions_of(self, username: str) -> None:
        with self._writing() as connection:
            connection.execute(sessions.delete().where(sessions.c.username == username))

    def add_session(self, token_hash: str, username: str, expires_at: float) -> None:
        with self._writing() as connection:
            connection.execute(sessions.delete().where(sessions.c.expires_at < time.time()))
            connection.execute(insert(sessions).values(token_hash=token_hash, username=username, expires_at=expires_at))

    def session_user(self, token_hash: str) -> str | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(sessions).where(sessions.c.token_hash == token_hash)).mappings().first()
        if not row or row["expires_at"] < time.time():
            return None
        return row["username"]

    def drop_session(self, token_hash: str) -> None:
        with self._writing() as connection:
            connection.execute(sessions.delete().where(sessions.c.token_hash == token_hash))
