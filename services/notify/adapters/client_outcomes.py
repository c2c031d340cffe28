"""What became of each client message, as codes: the channel kind (sms, email), where it stands
(sent, held, rejected, failed) and the gateway's delivery report. Never the address or the text.

Agencies party to the case read it through `NotifyService.ListClientDeliveries`; the dispatcher
reads the case's last sent message for the per-case rate. A table of its own next to the
notify store's tables (same database), so the delivery records keep their shape.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import Column, Float, MetaData, String, Table, func, insert, select, update
from sqlalchemy.engine import Engine

from services.notify.adapters.store import schema_transaction

metadata = MetaData()

client_outcomes = Table(
    "client_message_outcomes",
    metadata,
    Column("notification_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("medium", String(16), nullable=False),  # sms, email
    Column("state", String(24), nullable=False),  # held_quiet_hours, held_case_rate, sent, failed, rejected
    Column("sent_at", Float),
    Column("receipt", String(16), nullable=False, default=""),  # delivered, failed, expired, ... (SMS)
    Column("receipt_at", Float),  # the gateway's report time; older reports never overwrite newer ones
    Column("updated_at", Float, nullable=False),
)

RECEIPTS = ("accepted", "buffered", "delivered", "failed", "expired", "rejected")


@dataclass(frozen=True)
class ClientOutcome:
    notification_id: str
    case_id: str
    medium: str
    state: str
    sent_at: float | None
    receipt: str
    receipt_at: float | None
    updated_at: float


class ClientOutcomes:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.RLock()
        with schema_transaction(engine) as connection:  # one replica at a time on PostgreSQL
            metadata.create_all(connection)

    def note(self, notification_id: str, case_id: str, medium: str, state: str, now: float | None = None) -> None:
        """Where the message stands now; `sent` also stamps the time the per-case rate counts from."""
        now = time.time() if now is None else now
        values: dict = {"medium": medium, "state": state, "updated_at": now}
        if state == "sent":
            values["sent_at"] = now
        with self._lock, self.engine.begin() as connection:
            changed = connection.execute(
                update(client_outcomes).where(client_outcomes.c.notification_id == notification_id).values(**values)
            ).rowcount
            if not changed:
                connection.execute(
                    insert(client_outcomes).values(
                        notification_id=notification_id, case_id=case_id, receipt="", **values
                    )
                )

    def record_receipt(self, notification_id: str, receipt: str, reported_at: float) -> bool:
        """A gateway's delivery report. False if the message is unknown or a newer report is
        already recorded (a replayed or late report changes nothing)."""
        if receipt not in RECEIPTS:
            raise ValueError("unknown delivery report status")
        with self._lock, self.engine.begin() as connection:
            row = connection.execute(
                select(client_outcomes.c.receipt_at).where(client_outcomes.c.notification_id == notification_id)
            ).first()
            if row is None or (row.receipt_at is not None and row.receipt_at >= reported_at):
                return False
            connection.execute(
                update(client_outcomes)
                .where(client_outcomes.c.notification_id == notification_id)
                .values(receipt=receipt, receipt_at=reported_at, updated_at=time.time())
            )
            return True

    def last_sent_at(self, case_id: str) -> float | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(func.max(client_outcomes.c.sent_at)).where(client_outcomes.c.case_id == case_id)
            ).scalar()

    def get(self, notification_id: str) -> ClientOutcome | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(select(client_outcomes).where(client_outcomes.c.notification_id == notification_id))
                .mappings()
                .first()
            )
        return ClientOutcome(**row) if row else None

    def for_case(self, case_id: str) -> dict[str, ClientOutcome]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(client_outcomes).where(client_outcomes.c.case_id == case_id)).mappings()
            return {row["notification_id"]: ClientOutcome(**row) for row in rows}
