"""The notify service's own store (SQLite file by default, any SQLAlchemy URL when configured).

Holds alert records and their change feed (the cursor of the live dashboard and the gRPC
stream), the append-only access log, what is known per case (from assignments and referral
events: region codes, agency ids, the sealed contact as ciphertext only), every notification
with its delivery attempts, and the coordinators' password store and sessions.

Nothing here is readable contact data: the keys to open sealed contacts live in the key store
(adapters/keystore.py), a separate file, so that erasing a key shreds every copy.
"""

from __future__ import annotations

import json
import threading
import time
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
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine

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
    Column("disabled", Boolean, nullable=False, default=False, server_default=text("0")),
    Column("demo", Boolean, nullable=False, default=False, server_default=text("0")),  # MESH_MODE=local only
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("username", String(80), nullable=False),
    Column("expires_at", Float, nullable=False),
)

_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS access_log_no_update BEFORE UPDATE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS access_log_no_delete BEFORE DELETE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        return sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True)


def _add_missing_columns(engine: Engine, table: Table) -> None:
    """Columns added to a table after a database was first created (server defaults fill them)."""
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    with engine.begin() as connection:
        for column in table.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                server_default: Any = column.server_default  # a DefaultClause: its text is the SQL
                default = f" DEFAULT {server_default.arg.text}" if server_default is not None else ""
                connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind} NOT NULL{default}"))


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


class NotifyStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.RLock()  # SQLite: one writer at a time inside this process
        metadata.create_all(engine)
        _add_missing_columns(engine, coordinators)
        if engine.dialect.name == "sqlite":
            with engine.begin() as connection:
                for statement in _APPEND_ONLY:
                    connection.execute(text(statement))

    @classmethod
    def open(cls, url: str) -> NotifyStore:
        return cls(make_engine(url))

    def close(self) -> None:
        self.engine.dispose()

    # --- alerts -------------------------------------------------------------------------
    def add_alert(self, alert: Alert, escalation: bytes, now: float | None = None) -> bool:
        """Insert once per escalation id; False when it was already there (a redelivery)."""
        now = now or time.time()
        with self._lock, self.engine.begin() as connection:
            exists = connection.execute(
                select(alerts.c.escalation_id).where(alerts.c.escalation_id == alert.escalation_id)
            ).first()
            if exists:
                return False
            connection.execute(insert(alerts).values(**self._alert_row(alert), escalation=escalation, updated_at=now))
            connection.execute(insert(alert_changes).values(escalation_id=alert.escalation_id, at=now))
            return True

    def save_alert(self, alert: Alert, now: float | None = None) -> None:
        now = now or time.time()
        with self._lock, self.engine.begin() as connection:
            row = self._alert_row(alert)
            row.pop("escalation_id")
            connection.execute(
                update(alerts).where(alerts.c.escalation_id == alert.escalation_id).values(**row, updated_at=now)
            )
            connection.execute(insert(alert_changes).values(escalation_id=alert.escalation_id, at=now))

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
            rows = connection.execute(
                select(alert_changes.c.seq, alert_changes.c.escalation_id)
                .where(alert_changes.c.seq > cursor)
                .order_by(alert_changes.c.seq)
                .limit(limit)
            ).all()
            result = []
            for seq, escalation_id in rows:
                row = (
                    connection.execute(select(alerts).where(alerts.c.escalation_id == escalation_id)).mappings().first()
                )
                if row:
                    result.append(self._stored(row, seq))
            return result

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
        with self._lock, self.engine.begin() as connection:
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
        with self._lock, self.engine.begin() as connection:
            present = connection.execute(
                select(case_sealers.c.agency_id).where(case_sealers.c.case_id == case_id)
            ).scalar()
            if present is None:
                connection.execute(insert(case_sealers).values(case_id=case_id, agency_id=agency_id))

    def case(self, case_id: str) -> CaseInfo | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(cases).where(cases.c.case_id == case_id)).mappings().first()
        if not row:
            return None
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
        with self._lock, self.engine.begin() as connection:
            exists = connection.execute(select(cases.c.case_id).where(cases.c.case_id == case_id)).first()
            if exists:
                connection.execute(
                    update(cases).where(cases.c.case_id == case_id).values(**values, updated_at=time.time())
                )
            else:
                connection.execute(insert(cases).values(case_id=case_id, **values, updated_at=time.time()))
        stored = self.case(case_id)
        assert stored is not None  # written just above
        return stored

    def forget_contact(self, case_id: str) -> None:
        with self._lock, self.engine.begin() as connection:
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
        with self._lock, self.engine.begin() as connection:
            if connection.execute(
                select(deliveries.c.notification_id).where(deliveries.c.notification_id == notification_id)
            ).first():
                return False
            connection.execute(
                insert(deliveries).values(
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
            )
            return True

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
        with self._lock, self.engine.begin() as connection:
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

    def purge_dead_deliveries(self, finished_before: float) -> int:
        """Remove deliveries that gave up (dead) before the given time, with their attempts.
        The retention run calls it; returns how many deliveries it removed."""
        with self._lock, self.engine.begin() as connection:
            expired = select(deliveries.c.notification_id).where(
                deliveries.c.status == "dead", deliveries.c.finished_at < finished_before
            )
            connection.execute(delete(delivery_attempts).where(delivery_attempts.c.notification_id.in_(expired)))
            return connection.execute(
                delete(deliveries).where(deliveries.c.status == "dead", deliveries.c.finished_at < finished_before)
            ).rowcount

    def requeue(self, notification_id: str) -> bool:
        """Give a dead delivery a fresh set of tries (replay); False if delivered or unknown."""
        with self._lock, self.engine.begin() as connection:
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
        with self._lock, self.engine.begin() as connection:
            connection.execute(coordinators.delete().where(coordinators.c.username == username))
            connection.execute(
                insert(coordinators).values(
                    username=username,
                    password_hash=password_hash,
                    scope=scope,
                    display_name=display_name,
                    organisation=organisation,
                    disabled=False,
                    demo=demo,
                )
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
        with self._lock, self.engine.begin() as connection:
            result = connection.execute(
                update(coordinators).where(coordinators.c.username == username).values(password_hash=password_hash)
            )
            return result.rowcount > 0

    def set_disabled(self, username: str, disabled: bool) -> bool:
        """Disable (or enable) an account; disabling ends its sessions. False for an unknown account."""
        with self._lock, self.engine.begin() as connection:
            result = connection.execute(
                update(coordinators).where(coordinators.c.username == username).values(disabled=disabled)
            )
            if disabled:
                connection.execute(sessions.delete().where(sessions.c.username == username))
            return result.rowcount > 0

    def drop_sessions_of(self, username: str) -> None:
        with self._lock, self.engine.begin() as connection:
            connection.execute(sessions.delete().where(sessions.c.username == username))

    def add_session(self, token_hash: str, username: str, expires_at: float) -> None:
        with self._lock, self.engine.begin() as connection:
            connection.execute(sessions.delete().where(sessions.c.expires_at < time.time()))
            connection.execute(insert(sessions).values(token_hash=token_hash, username=username, expires_at=expires_at))

    def session_user(self, token_hash: str) -> str | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(sessions).where(sessions.c.token_hash == token_hash)).mappings().first()
        if not row or row["expires_at"] < time.time():
            return None
        return row["username"]

    def drop_session(self, token_hash: str) -> None:
        with self._lock, self.engine.begin() as connection:
            connection.execute(sessions.delete().where(sessions.c.token_hash == token_hash))
