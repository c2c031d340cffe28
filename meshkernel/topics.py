"""Every Kafka topic of the mesh, declared once, and created idempotently at service start."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from meshkernel.config import MeshSettings

log = logging.getLogger(__name__)

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    base_name: str
    purpose: str
    retention_ms: int
    cleanup_policy: str = "delete"


# Keyed by case id everywhere, so all events of one case land on one partition in order.
REFERRAL_EVENTS = TopicSpec("referral.events.v1", "referral lifecycle changes (outbox relay)", 365 * DAY_MS)
ASSIGNMENTS = TopicSpec("region.assignments.v1", "responsible region decisions", 365 * DAY_MS)
ESCALATIONS = TopicSpec("region.escalations.v1", "stalled cases climbing the ladder", 365 * DAY_MS)
OVERRIDES = TopicSpec(
    "region.overrides.v1",
    "to the region service: coordinators' overrides and alert actions, client erasures (forget the case)",
    365 * DAY_MS,
)
NOTIFICATIONS = TopicSpec("notify.notifications.v1", "notifications decided by the notify service", 90 * DAY_MS)
# Keyed by agency id; compacted, so the topic is the directory's latest change per agency and
# every region and notify replica reads it whole at start (meshkernel/directory_feed.py).
DIRECTORY_EVENTS = TopicSpec(
    "mesh.directory.v1",
    "agency directory changes by operators (referral service outbox)",
    -1,
    cleanup_policy="compact",
)
DEAD_LETTERS = TopicSpec("mesh.deadletter.v1", "records a consumer could not process, with the reason", 30 * DAY_MS)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    REFERRAL_EVENTS,
    ASSIGNMENTS,
    ESCALATIONS,
    OVERRIDES,
    NOTIFICATIONS,
    DEAD_LETTERS,
    DIRECTORY_EVENTS,
)


def ensure_topics(
    admin: KafkaAdminClient, config: MeshSettings, specs: tuple[TopicSpec, ...] = ALL_TOPICS
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    existing = set(admin.list_topics())
    wanted = [
        NewTopic(
            name=config.topic(spec.base_name),
            num_partitions=config.topic_partitions,
            replication_factor=config.topic_replication,
            topic_configs={"retention.ms": str(spec.retention_ms), "cleanup.policy": spec.cleanup_policy},
        )
        for spec in specs
        if config.topic(spec.base_name) not in existing
    ]
    created = []
    for topic in wanted:
        try:
            admin.create_topics([topic])
            created.append(topic.name)
        except TopicAlreadyExistsError:
            # Another service created it between our listing and our request.
            pass
    if created:
        log.info("created topics", extra={"topics": created})
    return created
