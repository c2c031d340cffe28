"""A client's erasure reaches the region worker's tables: tombstones on both changelog topics."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

from meshkernel import envelope as envelopes
from meshkernel.topics import OVERRIDES
from referralmesh.v1 import events_pb2
from referralmesh.v1 import region_service_pb2 as api
from referralmesh.v1 import region_service_pb2_grpc as api_grpc
from services.region.adapters.streams import ESCALATION_TABLE, TABLE
from tests.integration.region.region_stream_kit import new_case

pytestmark = pytest.mark.kafka


def changelog_topics(config) -> list[str]:
    app_id = f"{config.topic_prefix}referral-mesh-region"
    return [f"{app_id}-{table}-changelog" for table in (TABLE, ESCALATION_TABLE)]


def latest_values(config, case_id: str, timeout: float = 30.0) -> dict[str, list[bytes | None]]:
    """Every value written under the case's key, per changelog topic, oldest first (to the end offsets)."""
    key = json.dumps(case_id).encode()  # table keys are JSON (Faust's default for tables)
    consumer = KafkaConsumer(
        bootstrap_servers=config.kafka_bootstrap, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    try:
        values: dict[str, list[bytes | None]] = {}
        for topic in changelog_topics(config):
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            assert partitions, f"no changelog topic {topic}"
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            found: list[bytes | None] = []
            deadline = time.monotonic() + timeout
            while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    found += [r.value for r in records if r.key == key]
            values[topic] = found
        return values
    finally:
        consumer.close()


def erase(mesh, case_id: str) -> None:
    mesh.send(
        OVERRIDES,
        envelopes.new_envelope(
            case_id=case_id,
            producer="notify-test",
            event_id=str(uuid.uuid4()),
            client_erased=events_pb2.ClientErased(requested_by="exit-the-hague"),
        ),
    )


def test_an_erased_case_leaves_tombstones_in_both_tables_and_is_no_longer_known(mesh, region_worker):
    _stack, config = region_worker
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in changelog_topics(config)]
        )
    finally:
        admin.close()
    policies = {topic: entries["cleanup.policy"]["value"] for topic, entries in described["topic"].items()}
    assert policies and all("compact" in policy for policy in policies.values()), policies  # tombstones count
    case_id, other = new_case(), new_case()
    for case in (case_id, other):
        mesh.referral(
            case,
            "ReferralRequested",
            version=1,
            sender="central-amsterdam",
            receiver="shelter-amsterdam",
            holder="central-amsterdam",
            addressee="shelter-amsterdam",
        )
        mesh.wait_assignments(case, 1)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # both tables have written the case (the changelogs have it)
        before = latest_values(config, case_id)
        if all(values and values[-1] is not None for values in before.values()):
            break
        time.sleep(0.5)
    assert all(values and values[-1] is not None for values in before.values()), before

    erase(mesh, case_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = latest_values(config, case_id)
        if all(values and values[-1] is None for values in after.values()):
            break
        time.sleep(0.5)
    # The last value under the case's key is a tombstone (null), so compaction drops every earlier one.
    assert {topic: values[-1] for topic, values in after.items()} == dict.fromkeys(after)
    # Other cases keep their state.
    assert all(values and values[-1] is not None for values in latest_values(config, other).values())

    with grpc.insecure_channel(config.region_grpc_address) as channel:
        stub = api_grpc.RegionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetAssignment(api.GetAssignmentRequest(case_id=case_id), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.GetAssignment(api.GetAssignmentRequest(case_id=other), timeout=10).current.responsible_region


def test_erasing_a_case_the_worker_never_saw_is_harmless(mesh, region_worker):
    stack, config = region_worker
    case_id = new_case()
    erase(mesh, case_id)
    erase(mesh, case_id)  # erasure may be asked for again
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        values = latest_values(config, case_id)
        if all(v == [None, None] for v in values.values()):
            break
        time.sleep(0.5)
    assert all(v == [None, None] for v in values.values()), values
    assert not mesh.dead_letters and not stack.crashed()
