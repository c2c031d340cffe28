"""Who may do what on Kafka: one principal per service, each allowed only the topics it needs.

A service writes only the topics it produces and reads only the topics it consumes; a stream
worker (Faust) also owns its consumer group and its internal topics (table changelogs, the
assignor's leader topic), all named after its app id. No service may read another service's
changelogs: they hold per-case state. Every service may describe the mesh topics (partition
counts, existence) so that it can check them at start; creating them is the admin's job.

The plan is data, derived from the topic declarations and the topic prefix, so it is tested
without a broker; `mesh kafka provision` applies it as the admin principal (meshcli/kafka.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from meshkernel.topics import (
    ALL_TOPICS,
    ASSIGNMENTS,
    DEAD_LETTERS,
    DIRECTORY_EVENTS,
    ESCALATIONS,
    NOTIFICATIONS,
    OVERRIDES,
    REFERRAL_EVENTS,
    TopicSpec,
)

# The principals of the mesh. `admin` (topics, ACLs, credentials) and `broker` (the broker's
# own connections) are super users in the broker's configuration and need no grants.
SERVICES = ("referral", "region", "notify")
OBSERVER = "observer"  # read-only: `mesh demo`'s event log, `mesh notify replay`, checks
ADMIN = "admin"
BROKER = "broker"
PRINCIPALS = (*SERVICES, OBSERVER, ADMIN)

WRITES: dict[str, tuple[TopicSpec, ...]] = {
    "referral": (REFERRAL_EVENTS, DIRECTORY_EVENTS),
    "region": (ASSIGNMENTS, ESCALATIONS, DEAD_LETTERS),
    "notify": (NOTIFICATIONS, OVERRIDES, DEAD_LETTERS),
}
READS: dict[str, tuple[TopicSpec, ...]] = {
    "referral": (),
    "region": (REFERRAL_EVENTS, OVERRIDES, DIRECTORY_EVENTS),
    "notify": (ASSIGNMENTS, ESCALATIONS, REFERRAL_EVENTS, DIRECTORY_EVENTS),
}
STREAM_WORKERS = ("region", "notify")
# Consumer groups of short-lived readers start with these names (meshcli/watch.py, replay).
OBSERVER_GROUP_PREFIXES = ("mesh-watch-", "mesh-notify-replay-")

# What a worker may do with the topics named after its app id: create them (with their
# compaction settings), read them back on recovery, write them.
INTERNAL_TOPIC_OPERATIONS = ("CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "READ", "WRITE")


@dataclass(frozen=True, order=True)
class Grant:
    """ALLOW `operation` on a topic or group (a literal name or a name prefix), from any host."""

    principal: str  # the user name; the Kafka principal is User:<principal>
    resource: str  # "topic" | "group"
    name: str
    pattern: str  # "literal" | "prefixed"
    operation: str  # READ, WRITE, CREATE, DESCRIBE, DESCRIBE_CONFIGS

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"User:{self.principal} {self.operation} {self.resource} {self.name}{star}"


def stream_app_id(topic_prefix: str, service: str) -> str:
    """The Faust app id of a stream worker: its consumer group and the stem of its internal topics."""
    return f"{topic_prefix}referral-mesh-{service}"


def acl_plan(topic_prefix: str = "") -> list[Grant]:
    """Every grant of the mesh for the topics under `topic_prefix` (MESH_TOPIC_PREFIX)."""
    grants: set[Grant] = set()

    def topic(principal: str, spec: TopicSpec, operation: str) -> None:
        grants.add(Grant(principal, "topic", f"{topic_prefix}{spec.base_name}", "literal", operation))

    for service in SERVICES:
        for spec in ALL_TOPICS:
            if spec not in WRITES[service] + READS[service]:  # reading and writing imply describing
                topic(service, spec, "DESCRIBE")
        for spec in WRITES[service]:
            topic(service, spec, "WRITE")
        for spec in READS[service]:
            topic(service, spec, "READ")
    for service in STREAM_WORKERS:
        app_id = stream_app_id(topic_prefix, service)
        grants.add(Grant(service, "group", app_id, "literal", "READ"))
        for operation in INTERNAL_TOPIC_OPERATIONS:
            grants.add(Grant(service, "topic", f"{app_id}-", "prefixed", operation))
    for spec in ALL_TOPICS:
        topic(OBSERVER, spec, "READ")
    for group_prefix in OBSERVER_GROUP_PREFIXES:
        grants.add(Grant(OBSERVER, "group", group_prefix, "prefixed", "READ"))
    return sorted(grants)


def allowed(plan: list[Grant], principal: str, resource: str, name: str, operation: str) -> bool:
    """Whether `plan` lets `principal` do `operation` on a resource, as Kafka's authorizer decides
    it for ALLOW rules: a literal or prefix match, and READ or WRITE imply DESCRIBE."""
    implied = {
        "DESCRIBE": {"DESCRIBE", "READ", "WRITE", "DELETE", "ALTER"},
        "DESCRIBE_CONFIGS": {"DESCRIBE_CONFIGS", "ALTER_CONFIGS"},
    }.get(operation, {operation})
    for grant in plan:
        if grant.principal != principal or grant.resource != resource or grant.operation not in implied:
            continue
        if grant.name == name if grant.pattern == "literal" else name.startswith(grant.name):
            return True
    return False
