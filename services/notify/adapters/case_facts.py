"""What notify keeps about a case for the case view and the insight page, from the events it
already consumes (referral events and assignments): codes, ids and times only.

- `case_timeline`: one row per referral state change and per responsibility decision, by event
  id (a redelivered event changes nothing);
- `insight_referrals`: per referral, when it was requested and first accepted, and the region
  responsible for it (from its latest assignment);
- `insight_marks`: per case, moments the insight page counts: bound nowhere (once per case),
  handover proposed (once per case and target region), accepted, refused.

These tables are a projection kept up to date as events arrive, so the insight page reads a
few rows instead of scanning topics. They live in the notify database beside the alerts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Float, MetaData, String, Table, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from referralmesh.v1 import common_pb2, events_pb2
from services.notify.adapters.store import schema_transaction
from services.notify.domain import timeline

facts_metadata = MetaData()

case_timeline = Table(
    "case_timeline",
    facts_metadata,
    Column("event_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),  # referral, decision
    Column("code", String(80), nullable=False),  # the new status, or the deciding rule
    Column("region", String(16), nullable=False, default=""),
    Column("actor", String(80), nullable=False, default=""),  # an agency id
    Column("detail", String(80), nullable=False, default=""),  # decline reason, handover target
)

insight_referrals = Table(
    "insight_referrals",
    facts_metadata,
    Column("referral_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False),
    Column("region", String(16), nullable=False, default="", index=True),
    Column("requested_at", Float),
    Column("accepted_at", Float),
)

insight_marks = Table(
    "insight_marks",
    facts_metadata,
    Column("case_id", String(128), primary_key=True),
    Column("kind", String(24), primary_key=True),  # bound_nowhere, handover_proposed/accepted/refused
    Column("target", String(64), primary_key=True),  # what makes one mark distinct (region or event id)
    Column("region", String(16), nullable=False, index=True),  # the region it counts for
    Column("at", Float, nullable=False),
)

BOUND_NOWHERE = "bound_nowhere"
HANDOVER_PROPOSED = "handover_proposed"
HANDOVER_ACCEPTED = "handover_accepted"
HANDOVER_REFUSED = "handover_refused"
MARK_KINDS = (BOUND_NOWHERE, HANDOVER_PROPOSED, HANDOVER_ACCEPTED, HANDOVER_REFUSED)


def _moment(envelope: events_pb2.EventEnvelope) -> float:
    if envelope.HasField("occurred_at"):
        return envelope.occurred_at.ToDatetime(tzinfo=UTC).timestamp()
    return datetime.now(UTC).timestamp()


@dataclass(frozen=True)
class AcceptanceSample:
    requested_at: datetime
    accepted_at: datetime

    @property
    def hours(self) -> float:
        return max(0.0, (self.accepted_at - self.requested_at).total_seconds() / 3600)


@dataclass(frozen=True)
class Mark:
    kind: str
    region: str
    at: datetime


class CaseFacts:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.RLock()
        with schema_transaction(engine) as connection:  # one replica at a time on PostgreSQL
            facts_metadata.create_all(connection)

    # --- recording (from the Faust agents) -----------------------------------------------
    def record_referral(self, envelope: events_pb2.EventEnvelope) -> None:
        referral = envelope.referral
        at = _moment(envelope)
        status = common_pb2.ReferralStatus.Name(referral.to_status)
        decline = common_pb2.DeclineReason.Name(referral.decline_reason) if referral.decline_reason else ""
        changed = referral.to_status != referral.from_status  # facts changed, handover asked: no new state
        with self._lock, self.engine.begin() as connection:
            if changed:
                self._insert_once(
                    connection,
                    case_timeline,
                    event_id=envelope.event_id,
                    case_id=envelope.case_id,
                    at=at,
                    kind=timeline.REFERRAL,
                    code=status,
                    actor=referral.actor[:80],
                    detail=decline,
                )
            self._touch_referral(connection, referral.referral_id, envelope.case_id)
            if status == "REQUESTED":
                connection.execute(
                    update(insight_referrals)
                    .where(
                        insight_referrals.c.referral_id == referral.referral_id,
                        insight_referrals.c.requested_at.is_(None),
                    )
                    .values(requested_at=at)
                )
            if status == "ACCEPTED":
                connection.execute(
                    update(insight_referrals)
                    .where(
                        insight_referrals.c.referral_id == referral.referral_id,
                        insight_referrals.c.accepted_at.is_(None),
                    )
                    .values(accepted_at=at)
                )

    def record_assignment(self, envelope: events_pb2.EventEnvelope) -> None:
        assignment = envelope.assignment
        at = _moment(envelope)
        region = assignment.responsible_region
        with self._lock, self.engine.begin() as connection:
            self._insert_once(
                connection,
                case_timeline,
                event_id=envelope.event_id,
                case_id=envelope.case_id,
                at=at,
                kind=timeline.DECISION,
                code=assignment.rule[:80],
                region=region,
                detail=assignment.handover_to,
            )
            self._touch_referral(connection, assignment.referral_id, envelope.case_id)
            connection.execute(
                update(insight_referrals)
                .where(insight_referrals.c.referral_id == assignment.referral_id)
                .values(region=region)
            )
            marks = []
            if assignment.bound_nowhere:
                marks.append((BOUND_NOWHERE, "", region))
            if assignment.handover_to:
                marks.append((HANDOVER_PROPOSED, assignment.handover_to, region))
            if assignment.rule == HANDOVER_ACCEPTED:
                marks.append((HANDOVER_ACCEPTED, region, assignment.previous_region or region))
            if assignment.rule == HANDOVER_REFUSED:
                marks.append((HANDOVER_REFUSED, envelope.event_id, region))
            for kind, target, counted_for in marks:
                self._insert_once(
                    connection,
                    insight_marks,
                    case_id=envelope.case_id,
                    kind=kind,
                    target=target,
                    region=counted_for,
                    at=at,
                )

    @staticmethod
    def _insert_once(connection, table: Table, **values) -> None:
        key = {column.name: values[column.name] for column in table.primary_key.columns}
        present = connection.execute(
            select(*table.primary_key.columns).where(*(table.c[name] == value for name, value in key.items()))
        ).first()
        if present is None:
            try:
                with connection.begin_nested():
                    connection.execute(insert(table).values(**values))
            except IntegrityError:  # another replica recorded it first
                pass

    def _touch_referral(self, connection, referral_id: str, case_id: str) -> None:
        if referral_id:
            self._insert_once(connection, insight_referrals, referral_id=referral_id, case_id=case_id, region="")

    # --- reading ------------------------------------------------------------------------
    def timeline_size(self) -> int:
        """How many timeline steps are kept: live views refresh when it grows."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(case_timeline)).scalar() or 0)

    def timeline(self, case_id: str) -> list[timeline.Entry]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(case_timeline).where(case_timeline.c.case_id == case_id).order_by(case_timeline.c.at)
            ).mappings()
            return [
                timeline.Entry(
                    at=datetime.fromtimestamp(row["at"], UTC),
                    kind=row["kind"],
                    code=row["code"],
                    region=row["region"],
                    actor=row["actor"],
                    detail=row["detail"],
                )
                for row in rows
            ]

    def acceptances(self, region: str | None, since: datetime) -> list[AcceptanceSample]:
        """Referrals accepted since `since` (of one region, or all for None), with their request time."""
        query = select(insight_referrals.c.requested_at, insight_referrals.c.accepted_at).where(
            insight_referrals.c.accepted_at >= since.timestamp(), insight_referrals.c.requested_at.is_not(None)
        )
        if region is not None:
            query = query.where(insight_referrals.c.region == region)
        with self.engine.connect() as connection:
            return [
                AcceptanceSample(datetime.fromtimestamp(requested, UTC), datetime.fromtimestamp(accepted, UTC))
                for requested, accepted in connection.execute(query)
            ]

    def marks(self, region: str | None, since: datetime) -> list[Mark]:
        query = select(insight_marks.c.kind, insight_marks.c.region, insight_marks.c.at).where(
            insight_marks.c.at >= since.timestamp()
        )
        if region is not None:
            query = query.where(insight_marks.c.region == region)
        with self.engine.connect() as connection:
            return [Mark(kind, where, datetime.fromtimestamp(at, UTC)) for kind, where, at in connection.execute(query)]
