"""End to end on a real broker: gRPC create -> referral event -> assignment -> notifications."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from kafka import KafkaProducer

from meshcli.client import ReferralClient
from meshcli.demo import RECEIVER, SENDER, demo_request
from meshcli.supervisor import Stack
from meshcli.watch import EventWatcher
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ASSIGNMENTS, DEAD_LETTERS, NOTIFICATIONS, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from tests.conftest import settings_from

pytestmark = pytest.mark.kafka


@pytest.fixture
def mesh(isolated_env, tmp_path):
    config = settings_from(isolated_env)
    prepare_kafka(config, "e2e-test", give_up_after=60)
    stack = Stack(env=isolated_env, log_dir=tmp_path / "logs")
    for service in ("referral", "region", "notify"):
        stack.start(service)
    yield stack, config
    stack.stop_all()


def _collect(watcher: EventWatcher, case_ids: set[str], wanted: int, timeout: float = 120.0):
    collected = []
    for topic, envelope in watcher.events(case_ids, timeout=timeout):
        collected.append((topic, envelope))
        if len(collected) >= wanted:
            break
    return collected


def test_one_referral_flows_through_all_three_services(mesh):
    stack, config = mesh
    case_id = f"case-{uuid.uuid4().hex[:12]}"
    client = ReferralClient(config.referral_grpc_address, SENDER)
    watcher = EventWatcher(config, [REFERRAL_EVENTS, ASSIGNMENTS, NOTIFICATIONS])
    try:
        client.wait_until_ready(timeout=60)
        created = client.create(demo_request(case_id))
        events = _collect(watcher, {case_id}, wanted=5)
    finally:
        watcher.close()
        client.close()
    assert not stack.crashed()
    assert created.status == common_pb2.REQUESTED and created.version == 1

    # Topics are read side by side, so arrival order across topics means nothing; the
    # causal links and occurrence times below are what prove the order along the case.
    by_kind: dict[str, list] = {}
    for topic, envelope in events:
        by_kind.setdefault(envelope.WhichOneof("payload"), []).append((topic, envelope))
    assert {kind: len(found) for kind, found in by_kind.items()} == {"referral": 1, "assignment": 1, "notification": 3}
    assert {envelope.case_id for _t, envelope in events} == {case_id}

    requested_topic, requested = by_kind["referral"][0]
    assert requested_topic == config.topic(REFERRAL_EVENTS.base_name)
    assert requested.referral.event_type == "ReferralRequested"
    assert requested.referral.referral_id == created.referral_id
    assert (requested.referral.sender, requested.referral.receiver) == (SENDER, RECEIVER)
    assert requested.referral.asked_in == "GM0518"

    assigned_topic, assigned = by_kind["assignment"][0]
    assert assigned_topic == config.topic(ASSIGNMENTS.base_name)
    assert assigned.assignment.referral_id == created.referral_id
    assert assigned.assignment.caused_by_event_id == requested.event_id
    # Bound nowhere: the region where help was asked is responsible, from the first minute.
    assert assigned.assignment.responsible_region == "GM0518"
    assert assigned.assignment.bound_nowhere is True
    assert set(assigned.assignment.explanation) == {"nl", "es", "en"}  # the case's languages, and Dutch

    notifications = [envelope for _t, envelope in by_kind["notification"]]
    notified = {(n.notification.audience, n.notification.recipient, n.notification.template) for n in notifications}
    assert notified == {
        (events_pb2.AGENCY, RECEIVER, "referral_assigned"),
        (events_pb2.AGENCY, SENDER, "responsible_region_named"),
        (events_pb2.COORDINATOR, "GM0518", "client_bound_nowhere"),
    }
    for notification in notifications:
        assert notification.notification.caused_by_event_id == assigned.event_id
        assert notification.notification.referral_id == created.referral_id
    # Occurrence order follows causality along the case.
    with urllib.request.urlopen(f"http://127.0.0.1:{config.region_metrics_port}/metrics", timeout=10) as page:
        scraped = page.read().decode()
    assigned_metric = [line for line in scraped.splitlines() if line.startswith("referralmesh_assignments_total")]
    assert any('referralmesh_rule="bound_nowhere"' in line for line in assigned_metric), assigned_metric
    assert case_id not in scraped
    with urllib.request.urlopen(f"http://127.0.0.1:{config.referral_metrics_port}/metrics", timeout=10) as page:
        referral_metrics = page.read().decode()
    by_status = [line for line in referral_metrics.splitlines() if line.startswith("referralmesh_referrals{")]
    assert any('referralmesh_status="REQUESTED"' in line and line.endswith(" 1.0") for line in by_status), by_status
    assert "referralmesh_outbox_backlog" in referral_metrics
    assert case_id not in referral_metrics and created.referral_id not in referral_metrics
    assert requested.occurred_at.ToDatetime() <= assigned.occurred_at.ToDatetime()
    assert all(assigned.occurred_at.ToDatetime() <= n.occurred_at.ToDatetime() for n in notifications)


def test_a_malformed_event_is_dead_lettered_and_the_consumer_goes_on(mesh):
    stack, config = mesh
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap)
    producer.send(config.topic(REFERRAL_EVENTS.base_name), key=b"case-garbage", value=b"\x00not-protobuf")
    producer.flush()
    producer.close()

    case_id = f"case-{uuid.uuid4().hex[:12]}"
    client = ReferralClient(config.referral_grpc_address, SENDER)
    watcher = EventWatcher(config, [ASSIGNMENTS])
    try:
        client.wait_until_ready(timeout=60)
        client.create(demo_request(case_id))
        assigned = _collect(watcher, {case_id}, wanted=1)
    finally:
        watcher.close()
        client.close()
    assert [envelope.assignment.responsible_region for _t, envelope in assigned] == ["GM0518"]

    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        config.topic(DEAD_LETTERS.base_name),
        bootstrap_servers=config.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
        group_id=f"dlq-{uuid.uuid4()}",
    )
    letters = []
    for record in consumer:
        letters.append(events_pb2.DeadLetter.FromString(record.value))
        if any(letter.key == b"case-garbage" for letter in letters):
            break
    consumer.close()
    garbage = [letter for letter in letters if letter.key == b"case-garbage"]
    assert garbage, "the malformed record never reached the dead-letter topic"
    assert garbage[0].source_topic == config.topic(REFERRAL_EVENTS.base_name)
    assert "protobuf" in garbage[0].reason
    assert garbage[0].consumer in {"region", "notify"}
    assert not stack.crashed()
