"""Closed cases leave the region worker's tables after the retention period: tombstones in both
changelog topics (compacted topics), while open cases stay."""

from __future__ import annotations

import time

import grpc
import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from meshcli.supervisor import private_mesh_env
from referralmesh.v1 import region_service_pb2 as api
from referralmesh.v1 import region_service_pb2_grpc as api_grpc
from tests.integration.region.region_stream_kit import new_case
from tests.integration.region.test_region_erasure import changelog_topics, latest_values

pytestmark = pytest.mark.kafka

RETENTION_SECONDS = 3


@pytest.fixture(scope="module")
def region_env(kafka_bootstrap, tmp_path_factory) -> dict[str, str]:
    # Retention of seconds, swept every second: the worker forgets a closed case almost at once.
    return private_mesh_env(
        tmp_path_factory.mktemp("region-retention"),
        kafka_bootstrap,
        MESH_RETENTION_SWEEP_SECONDS="1",
        MESH_REGION_CLOSED_CASE_RETENTION_DAYS=str(RETENTION_SECONDS / 86_400),
    )


def referral_until(mesh, case_id: str, event_types: list[str]) -> None:
    for version, event_type in enumerate(event_types, start=1):
        mesh.referral(
            case_id,
            event_type,
            version=version,
            sender="central-amsterdam",
            receiver="shelter-amsterdam",
            holder="shelter-amsterdam" if version > 1 else "central-amsterdam",
            addressee="shelter-amsterdam",
        )
    mesh.wait_assignments(case_id, 1)


def last_values(config, case_id: str) -> dict[str, bytes | None]:
    return {topic: (values[-1] if values else b"<none>") for topic, values in latest_values(config, case_id).items()}


def test_a_closed_case_is_tombstoned_after_the_retention_period_and_an_open_one_stays(mesh, region_worker):
    stack, config = region_worker
    closed, still_open = new_case(), new_case()
    referral_until(mesh, closed, ["ReferralRequested", "ReferralAccepted", "ReferralStarted", "ReferralCompleted"])
    referral_until(mesh, still_open, ["ReferralRequested", "ReferralAccepted"])
    closed_sent = time.monotonic()

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(value is None for value in last_values(config, closed).values()):
            break
        time.sleep(1)
    after = latest_values(config, closed)
    # Both tables had the case, and the last value under its key is now a tombstone (null), so
    # compaction of these compacted topics removes every earlier record of it.
    assert all(len(values) >= 2 and values[-1] is None for values in after.values()), after
    assert time.monotonic() - closed_sent >= RETENTION_SECONDS  # not before the retention period
    assert all(value is not None for value in last_values(config, still_open).values())

    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in changelog_topics(config)]
        )
    finally:
        admin.close()
    assert all("compact" in entries["cleanup.policy"]["value"] for entries in described["topic"].values())

    with grpc.insecure_channel(config.region_grpc_address) as channel:
        stub = api_grpc.RegionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetAssignment(api.GetAssignmentRequest(case_id=closed), timeout=10)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert stub.GetAssignment(api.GetAssignmentRequest(case_id=still_open), timeout=10).current.responsible_region
    assert not mesh.dead_letters and not stack.crashed()
