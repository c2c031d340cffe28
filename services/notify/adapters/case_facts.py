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
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import BindParameter, Column, Float, MetaData, String, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

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
        with self._lock, self.engine.begin() as connection:
            self.record_referrals_in(connection, [envelope])

    def record_assignment(self, envelope: events_pb2.EventEnvelope) -> None:
        with self._lock, self.engine.begin() as connection:
            self.record_assignments_in(connection, [envelope])

    def record_referrals_in(self, connection: Connection, batch: list[events_pb2.EventEnvelope]) -> None:
        """A batch of referral events, within the caller's transaction: a few statements for the
        whole batch, each run once per row (a redelivered event changes nothing)."""
        writes = _Writes()
        for envelope in batch:
            referral = envelope.referral
            at = _moment(envelope)
            status = common_pb2.ReferralStatus.Name(referral.to_status)
            decline = common_pb2.DeclineReason.Name(referral.decline_reason) if referral.decline_reason else ""
            if referral.to_status != referral.from_status:  # facts changed, handover asked: no new state
                writes.timeline.append(
                    {
                        "event_id": envelope.event_id,
                        "case_id": envelope.case_id,
                        "at": at,
                        "kind": timeline.REFERRAL,
                        "code": status,
                        "region": "",
                        "actor": referral.actor[:80],
                        "detail": decline,
                    }
                )
            writes.touch(referral.referral_id, envelope.case_id)
            if referral.referral_id and status == "REQUESTED":
                writes.requested.append({"key": referral.referral_id, "at": at})
            if referral.referral_id and status == "ACCEPTED":
                writes.accepted.append({"key": referral.referral_id, "at": at})
        writes.run(connection)

    def record_assignments_in(self, connection: Connection, batch: list[events_pb2.EventEnvelope]) -> None:
        """A batch of assignments, within the caller's transaction (as `record_referrals_in`)."""
        writes = _Writes()
        for envelope in batch:
            assignment = envelope.assignment
            at = _moment(envelope)
            region = assignment.responsible_region
            writes.timeline.append(
                {
                    "event_id": envelope.event_id,
                    "case_id": envelope.case_id,
                    "at": at,
                    "kind": timeline.DECISION,
                    "code": assignment.rule[:80],
                    "region": region,
                    "actor": "",
                    "detail": assignment.handover_to,
                }
            )
            writes.touch(assignment.referral_id, envelope.case_id)
            writes.regions.append({"key": assignment.referral_id, "region": region})
            marks = []
            if assignment.bound_nowhere:
                marks.append((BOUND_NOWHERE, "", region))
            if assignment.handover_to:
                marks.append((HANDOVER_PROPOSED, assignment.handover_to, region))
            if assignment.rule == HANDOVER_ACCEPTED:
                marks.append((HANDOVER_ACCEPTED, region, assignment.previous_region or region))
            if assignment.rule == HANDOVER_REFUSED:
                marks.append((HANDOVER_REFUSED, envelope.event_id, region))
            writes.marks.extend(
                {"case_id": envelope.case_id, "kind": kind, "target": target, "region": counted_for, "at": at}
                for kind, target, counted_for in marks
            )
        writes.run(connection)

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


def _insert_once(connection: Connection, table: Table):
    """A row already there (a redelivered event, another replica) stays as it is."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


_KEY: BindParameter[str] = bindparam("key", type_=String())
_SET_REQUESTED = (
    update(insight_referrals)
    .where(insight_referrals.c.referral_id == _KEY, insight_referrals.c.requested_at.is_(None))
    .values(requested_at=bindparam("at"))
)
_SET_ACCEPTED = (
    update(insight_referrals)
    .where(insight_referrals.c.referral_id == _KEY, insight_referrals.c.accepted_at.is_(None))
    .values(accepted_at=bindparam("at"))
)
_SET_REGION = (
    update(insight_referrals).where(insight_referrals.c.referral_id == _KEY).values(region=bindparam("region"))
)


@dataclass
class _Writes:
    """The rows one batch writes, in the order the statements run: inserts first (a referral's
    row exists before it is updated), then the updates in the events' order (the last wins)."""

    timeline: list[dict] = field(default_factory=list)
    referrals: dict[str, dict] = field(default_factory=dict)
    marks: list[dict] = field(default_factory=list)
    requested: list[dict] = field(default_factory=list)
    accepted: list[dict] = field(default_factory=list)
    regions: list[dict] = field(default_factory=list)

    def touch(self, referral_id: str, case_id: str) -> None:
        if referral_id:
            self.referrals.setdefault(referral_id, {"referral_id": referral_id, "case_id": case_id, "region": ""})

    def run(self, connection: Connection) -> None:
        for table, rows in (
            (case_timeline, self.timeline),
            (insight_referrals, list(self.referrals.values())),
            (insight_marks, self.marks),
        ):
            if rows:
                connection.execute(_insert_once(connection, table), rows)
        for statement, rows in ((_SET_REQUESTED, self.requested), (_SET_ACCEPTED, self.accepted)):
            if rows:
                connection.execute(statement, rows)
        regions = [row for row in self.regions if row["key"]]
        if regions:
            connection.execute(_SET_REGION, regions)
