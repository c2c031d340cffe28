"""The three services on the secured broker, each with its own principal, over TLS: a referral
reaches its assignment and its notifications; and no agency-facing process can read the region
worker's changelogs, which hold per-case state."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from meshcli.client import ReferralClient
from meshcli.demo import SENDER, demo_request
from meshcli.supervisor import Stack, private_mesh_env
from meshcli.watch import EventWatcher
from meshkernel.kafka import connect_admin
from meshkernel.kafka_acl import SERVICES, stream_app_id
from meshkernel.kafka_security import kafka_python_options
from meshkernel.topics import ASSIGNMENTS, NOTIFICATIONS

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def secured_mesh(secure_kafka, tmp_path_factory):
    base = tmp_path_factory.mktemp("secured-mesh")
    env = private_mesh_env(base, secure_kafka.bootstrap, MESH_TOPIC_PREFIX=secure_kafka.prefix)
    stacks = []
    try:
        for service in SERVICES:
            stack = Stack(env={**env, **secure_kafka.env(service)}, log_dir=base / "logs")
            stack.start(service)
            stacks.append(stack)
        yield env, stacks
    finally:
        for stack in reversed(stacks):
            stack.stop_all()


def test_the_services_run_end_to_end_over_tls_with_their_own_credentials(secure_kafka, secured_mesh):
    env, stacks = secured_mesh
    observer = secure_kafka.settings("observer", MESH_REFERRAL_GRPC_ADDRESS=env["MESH_REFERRAL_GRPC_ADDRESS"])
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    client = ReferralClient(observer.referral_grpc_address, SENDER)
    watcher = EventWatcher(observer, [ASSIGNMENTS, NOTIFICATIONS])
    seen: dict[str, int] = {}
    try:
        client.wait_until_ready(timeout=90)
        client.create(demo_request(case_id))
        for _topic, envelope in watcher.events({case_id}, timeout=150):
            kind = envelope.WhichOneof("payload")
            seen[kind] = seen.get(kind, 0) + 1
            if seen.get("assignment") and seen.get("notification", 0) >= 2:
                break
    finally:
        watcher.close()
        client.close()
    assert not [name for stack in stacks for name in stack.crashed()]
    assert seen.get("assignment"), f"no assignment for the case; saw {seen}"
    assert seen.get("notification", 0) >= 2, f"too few notifications for the case; saw {seen}"
    logs = "".join(path.read_text() for path in (Path(stacks[0].log_dir)).glob("*.log"))
    assert "AuthorizationFailed" not in logs


def _records(config, topic: str) -> int:
    consumer = KafkaConsumer(**kafka_python_options(config, auto_offset_reset="earliest", enable_auto_commit=False))
    try:
        consumer.assign([TopicPartition(topic, partition) for partition in range(config.topic_partitions)])
        read, deadline = 0, time.monotonic() + 60
        while time.monotonic() < deadline and not read:
            read += sum(len(records) for records in consumer.poll(timeout_ms=500).values())
        return read
    finally:
        consumer.close()


def _metadata_error(config, topic: str) -> int:
    """The broker's answer to `config`'s principal asking about `topic` (0: allowed)."""
    admin = connect_admin(config, "changelog-probe", give_up_after=60)
    try:
        return admin.describe_topics([topic])[0]["error_code"]
    finally:
        admin.close()


@pytest.mark.parametrize("principal", ["referral", "notify", "observer"])
def test_agency_facing_processes_cannot_read_the_region_changelogs(secure_kafka, secured_mesh, principal):
    # After the end-to-end case the region worker's `cases` changelog exists and holds that case.
    changelog = f"{stream_app_id(secure_kafka.prefix, 'region')}-cases-changelog"
    region = secure_kafka.settings("region")
    assert _metadata_error(region, changelog) == 0
    assert _records(region, changelog) > 0
    # Without DESCRIBE there is no READ (READ implies DESCRIBE): the broker will not even say
    # where the topic's partitions are, so nothing can be fetched from them.
    assert _metadata_error(secure_kafka.settings(principal), changelog) == TopicAuthorizationFailedError.errno
