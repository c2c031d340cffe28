"""The Kafka ACL plan: each service writes only its own topics, reads only what it consumes, and
no process but the region worker reads the region worker's changelogs."""

import pytest

from meshkernel.kafka_acl import OBSERVER, SERVICES, acl_plan, allowed, stream_app_id
from meshkernel.topics import ALL_TOPICS, REFERRAL_EVENTS

PREFIX = "t1234."
PLAN = acl_plan(PREFIX)
OWN_TOPICS = {
    "referral": {"referral.events.v1", "mesh.directory.v1"},
    "region": {"region.assignments.v1", "region.escalations.v1", "mesh.deadletter.v1"},
    "notify": {"notify.notifications.v1", "region.overrides.v1", "mesh.deadletter.v1"},
}
CONSUMES = {
    "referral": set(),
    "region": {"referral.events.v1", "region.overrides.v1", "mesh.directory.v1"},
    "notify": {"region.assignments.v1", "region.escalations.v1", "referral.events.v1", "mesh.directory.v1"},
}
REGION_CHANGELOGS = [f"{stream_app_id(PREFIX, 'region')}-{table}-changelog" for table in ("cases", "escalation-state")]


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda spec: spec.base_name)
def test_a_service_writes_only_its_own_topics_and_reads_only_what_it_consumes(service, spec):
    name = PREFIX + spec.base_name
    assert allowed(PLAN, service, "topic", name, "WRITE") == (spec.base_name in OWN_TOPICS[service])
    assert allowed(PLAN, service, "topic", name, "READ") == (spec.base_name in CONSUMES[service])
    assert allowed(PLAN, service, "topic", name, "DESCRIBE")  # to check the topics at start
    assert not allowed(PLAN, service, "topic", name, "CREATE")  # the admin provisions them


def test_the_region_service_cannot_write_referral_events():
    assert not allowed(PLAN, "region", "topic", PREFIX + REFERRAL_EVENTS.base_name, "WRITE")


@pytest.mark.parametrize("principal", ["referral", "notify", OBSERVER])
@pytest.mark.parametrize("changelog", REGION_CHANGELOGS)
def test_no_other_process_reads_or_describes_the_region_changelogs(principal, changelog):
    for operation in ("READ", "DESCRIBE", "WRITE", "CREATE"):
        assert not allowed(PLAN, principal, "topic", changelog, operation)


@pytest.mark.parametrize("service", ["region", "notify"])
def test_a_stream_worker_owns_its_group_and_internal_topics(service):
    app_id = stream_app_id(PREFIX, service)
    assert allowed(PLAN, service, "group", app_id, "READ")
    for operation in ("CREATE", "READ", "WRITE", "DESCRIBE_CONFIGS"):
        assert allowed(PLAN, service, "topic", f"{app_id}-cases-changelog", operation)
        assert allowed(PLAN, service, "topic", f"{app_id}-__assignor-__leader", operation)
    other = "notify" if service == "region" else "region"
    assert not allowed(PLAN, other, "group", app_id, "READ")


def test_the_observer_reads_every_mesh_topic_and_writes_none():
    for spec in ALL_TOPICS:
        assert allowed(PLAN, OBSERVER, "topic", PREFIX + spec.base_name, "READ")
        assert not allowed(PLAN, OBSERVER, "topic", PREFIX + spec.base_name, "WRITE")
    assert allowed(PLAN, OBSERVER, "group", "mesh-watch-1234", "READ")
    assert not allowed(PLAN, OBSERVER, "group", stream_app_id(PREFIX, "region"), "READ")


def test_grants_stay_under_the_topic_prefix():
    for grant in PLAN:
        if grant.resource == "topic":
            assert grant.name.startswith(PREFIX)
    assert not allowed(PLAN, "referral", "topic", REFERRAL_EVENTS.base_name, "WRITE")  # another mesh's topic


def _without_implied_describe(grants: set[tuple]) -> set[tuple]:
    """Drop DESCRIBE where READ or WRITE on the same resource implies it (Kafka's rule)."""
    stronger = {grant[:3] for grant in grants if grant[3] in ("READ", "WRITE")}
    return {grant for grant in grants if not (grant[3] == "DESCRIBE" and grant[:3] in stronger)}


def test_the_kubernetes_kafka_users_grant_exactly_the_plan():
    """deploy/k8s declares the same ACLs as Strimzi KafkaUsers; the two must not drift apart."""
    import yaml

    from meshkernel.config import PROJECT_ROOT

    users = PROJECT_ROOT / "deploy" / "k8s" / "base" / "kafka" / "users.yaml"
    declared: dict[str, set[tuple]] = {}
    for document in yaml.safe_load_all(users.read_text()):
        if not document or document.get("kind") != "KafkaUser":
            continue
        grants = declared.setdefault(document["metadata"]["name"], set())
        for acl in document["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            pattern = "prefixed" if resource.get("patternType") == "prefix" else "literal"
            for operation in acl["operations"]:
                name = "DESCRIBE_CONFIGS" if operation == "DescribeConfigs" else operation.upper()
                grants.add((resource["type"], resource["name"], pattern, name))
    planned: dict[str, set[tuple]] = {}
    for grant in acl_plan(""):
        planned.setdefault(grant.principal, set()).add((grant.resource, grant.name, grant.pattern, grant.operation))
    for principal, grants in planned.items():
        assert _without_implied_describe(declared.get(principal, set())) == _without_implied_describe(grants), principal
