"""What `make chaos` verifies after its faults, from the databases and the topics.

Every accepted CreateReferral must have: its row in the referral database and its
ReferralRequested event; exactly one assignment (one distinct event id); the notifications
that assignment calls for, each recorded once by id in the notify database; every escalation
deadline that fell due fired once (one escalation id per referral, rule and level), with its
reminder or its coordinator alert. No outbox row may be left unpublished, and every consumer
group's lag must be back to 0. "Lost" counts what is missing, "duplicated" what exists twice
under different ids (the same id read twice is a redelivery, which receivers absorb).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from sqlalchemy import create_engine, func, select

from meshkernel.config import MeshSettings
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.topics import ASSIGNMENTS, ESCALATIONS, NOTIFICATIONS, REFERRAL_EVENTS
from referralmesh.v1 import events_pb2
from services.notify.adapters.store import alerts, deliveries
from services.notify.paths import NotifyPaths
from services.referral.adapters.storage import make_engine
from services.referral.adapters.tables import outbox, referrals

# The demo referral (bound nowhere, no contact) calls for these from its assignment.
ASSIGNMENT_TEMPLATES = {"referral_assigned", "responsible_region_named", "client_bound_nowhere"}
# The demo escalation policy's first deadlines of a referral nobody answers, in seconds.
FIRST_DEADLINES = {("not_acknowledged", "AGENCY_REMINDER"): 10.0, ("not_answered", "REGION_COORDINATOR"): 25.0}
DUE_MARGIN_SECONDS = 20.0  # a deadline counts as "fell due" this long before the check


def read_topic(config: MeshSettings, spec, timeout: float = 60.0) -> list:
    """Every record of one topic, from the beginning to the end offsets of now."""
    name = config.topic(spec.base_name)
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka_bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=30000
    )
    try:
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def _envelopes(records, expect: str):
    for record in records:
        try:
            yield decode(record.value, expect=expect)
        except MalformedEvent:
            continue


def consumer_lag(config: MeshSettings, groups: list[str], attempts: int = 5) -> dict[str, int]:
    """Records not yet committed per consumer group, over the partitions it has committed
    (-1 for a group whose lag could not be read, e.g. while partition leaders move)."""
    for attempt in range(attempts):
        try:
            return _consumer_lag(config, groups)
        except Exception:  # a broker that has just come back may answer partially
            time.sleep(2 + attempt)
    return dict.fromkeys(groups, -1)


def _consumer_lag(config: MeshSettings, groups: list[str]) -> dict[str, int]:
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap, request_timeout_ms=30000)
    consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, group_id=None)
    try:
        lag = {}
        for group in groups:
            committed = admin.list_group_offsets({group: None}).get(group, {})
            mine = {
                tp: meta.offset
                for tp, meta in committed.items()
                if tp.topic.startswith(config.topic_prefix) and meta.offset >= 0
            }
            # A consumer without a subscription knows no topic's leaders until asked.
            for name in {tp.topic for tp in mine}:
                consumer.partitions_for_topic(name)
            ends = consumer.end_offsets(list(mine)) if mine else {}
            lag[group] = sum(max(0, ends[tp] - offset) for tp, offset in mine.items())
        return lag
    finally:
        consumer.close()
        admin.close()


def faust_groups(config: MeshSettings) -> list[str]:
    return [f"{config.topic_prefix}referral-mesh-{service}" for service in ("region", "notify")]


@dataclass
class Findings:
    referrals: int = 0
    lost: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicated: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    redelivered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    escalations_checked: int = 0
    notifications_checked: int = 0
    stranded_outbox_rows: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def lose(self, what: str, case_id: str) -> None:
        self.lost[what] += 1
        if len(self.examples) < 20:
            self.examples.append(f"lost {what}: {case_id}")

    def duplicate(self, what: str, case_id: str, extra: int) -> None:
        self.duplicated[what] += extra
        if len(self.examples) < 20:
            self.examples.append(f"duplicated {what}: {case_id}")

    @property
    def total_lost(self) -> int:
        return sum(self.lost.values())

    @property
    def total_duplicated(self) -> int:
        return sum(self.duplicated.values())

    def as_dict(self) -> dict:
        return {
            "referrals": self.referrals,
            "lost": self.total_lost,
            "duplicated": self.total_duplicated,
            "lost_by_kind": dict(self.lost),
            "duplicated_by_kind": dict(self.duplicated),
            "redelivered_by_kind": dict(self.redelivered),
            "escalations_checked": self.escalations_checked,
            "notifications_checked": self.notifications_checked,
            "stranded_outbox_rows": self.stranded_outbox_rows,
            "consumer_lag": self.lag,
            "examples": self.examples,
        }


def _distinct(ids: list[str], findings: Findings, kind: str) -> set[str]:
    unique = set(ids)
    if len(ids) > len(unique):
        findings.redelivered[kind] += len(ids) - len(unique)
    return unique


def check(config: MeshSettings, accepted: set[str], case_prefix: str, checked_at: float) -> Findings:
    """Compare what was accepted with what the mesh holds; `checked_at` is a Unix time."""
    findings = Findings()
    engine = make_engine(config.database_url)
    with engine.connect() as connection:
        stored = {
            row.case_id: row.referral_id
            for row in connection.execute(
                select(referrals.c.case_id, referrals.c.referral_id).where(referrals.c.case_id.startswith(case_prefix))
            )
        }
        findings.stranded_outbox_rows = connection.execute(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        ).scalar_one()
    engine.dispose()
    # A call that timed out may still have committed: such referrals are checked as well.
    cases = accepted | set(stored)
    findings.referrals = len(cases)

    requested = defaultdict(list)
    created_at: dict[str, float] = {}
    for envelope in _envelopes(read_topic(config, REFERRAL_EVENTS), "referral"):
        if envelope.case_id in cases and envelope.referral.event_type == "ReferralRequested":
            requested[envelope.case_id].append(envelope.event_id)
            created_at.setdefault(envelope.case_id, envelope.occurred_at.ToDatetime().timestamp() + 0.0)
    assignments = defaultdict(list)
    for envelope in _envelopes(read_topic(config, ASSIGNMENTS), "assignment"):
        if envelope.case_id in cases:
            assignments[envelope.case_id].append(envelope.event_id)
    escalations = defaultdict(list)
    for envelope in _envelopes(read_topic(config, ESCALATIONS), "escalation"):
        if envelope.case_id in cases:
            escalations[envelope.case_id].append(envelope.escalation)
    notifications = defaultdict(list)
    for envelope in _envelopes(read_topic(config, NOTIFICATIONS), "notification"):
        if envelope.case_id in cases:
            notifications[envelope.notification.caused_by_event_id].append(envelope.notification)

    notify_engine = create_engine(NotifyPaths.of(config).database_url)
    with notify_engine.connect() as connection:
        delivered = {
            row.notification_id
            for row in connection.execute(
                select(deliveries.c.notification_id).where(deliveries.c.case_id.startswith(case_prefix))
            )
        }
        alerted = {
            row.escalation_id
            for row in connection.execute(
                select(alerts.c.escalation_id).where(alerts.c.case_id.startswith(case_prefix))
            )
        }
    notify_engine.dispose()

    for case_id in sorted(cases):
        if case_id not in stored:
            findings.lose("referral row", case_id)
        events = _distinct(requested.get(case_id, []), findings, "referral event")
        if not events:
            findings.lose("ReferralRequested event", case_id)
        elif len(events) > 1:
            findings.duplicate("ReferralRequested event", case_id, len(events) - 1)
        assigned = _distinct(assignments.get(case_id, []), findings, "assignment")
        if not assigned:
            findings.lose("assignment", case_id)
        elif len(assigned) > 1:
            findings.duplicate("assignment", case_id, len(assigned) - 1)
        for assignment_id in assigned:
            _check_notifications(
                findings, case_id, notifications.get(assignment_id, []), ASSIGNMENT_TEMPLATES, delivered
            )
        _check_escalations(
            findings,
            case_id,
            escalations.get(case_id, []),
            created_at.get(case_id),
            checked_at,
            notifications,
            delivered,
            alerted,
        )
    return findings


def _check_notifications(findings: Findings, case_id: str, sent, templates: set[str], delivered: set[str]) -> None:
    by_template = defaultdict(set)
    ids = [notification.notification_id for notification in sent]
    _distinct(ids, findings, "notification")
    for notification in sent:
        by_template[notification.template].add(notification.notification_id)
    for template in templates:
        findings.notifications_checked += 1
        found = by_template.get(template, set())
        if not found:
            findings.lose(f"notification {template}", case_id)
        elif len(found) > 1:
            findings.duplicate(f"notification {template}", case_id, len(found) - 1)
        for notification_id in found:
            if notification_id not in delivered:
                findings.lose(f"delivery record {template}", case_id)
    for template in set(by_template) - templates:
        findings.duplicate(f"unexpected notification {template}", case_id, len(by_template[template]))


def _check_escalations(
    findings: Findings,
    case_id: str,
    fired,
    created_at: float | None,
    checked_at: float,
    notifications,
    delivered: set[str],
    alerted: set[str],
) -> None:
    by_rule_level = defaultdict(list)
    for escalation in fired:
        by_rule_level[(escalation.rule, events_pb2.EscalationLevel.Name(escalation.level))].append(escalation)
    for key, copies in by_rule_level.items():
        ids = _distinct([copy.escalation_id for copy in copies], findings, "escalation")
        findings.escalations_checked += 1
        if len(ids) > 1:
            findings.duplicate(f"escalation {key[0]}/{key[1]}", case_id, len(ids) - 1)
        for escalation_id in ids:
            if key[1] == "AGENCY_REMINDER":
                _check_notifications(
                    findings, case_id, notifications.get(escalation_id, []), {"referral_reminder"}, delivered
                )  # caused by the escalation's event id
            elif escalation_id not in alerted:
                findings.lose(f"coordinator alert {key[1]}", case_id)
    if created_at is None:
        return
    for (rule, level), after in FIRST_DEADLINES.items():
        if created_at + after < checked_at - DUE_MARGIN_SECONDS and (rule, level) not in by_rule_level:
            findings.lose(f"escalation {rule}/{level}", case_id)
