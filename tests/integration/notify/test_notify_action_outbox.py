"""A coordinator's action survives a broker that is down and a notify crash: the action is
recorded with its event (the action outbox), and the next notify process publishes the event,
once by event id, on the real broker, with the SQLite store and with PostgreSQL.

The broker is a private one (benchmarks/private_infra.py), killed before the coordinator acts,
so nothing can reach it; notify is then killed with SIGKILL before the broker comes back.
Sending the event unawaited from the process (as before the outbox) loses it here. (A broker
paused with SIGSTOP would not do: its socket still takes in what a producer writes, and the
broker appends it once it runs again.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from kafka import KafkaConsumer

from benchmarks.private_infra import PrivateKafka
from meshkernel import envelope as envelopes
from meshkernel.topics import ESCALATIONS, OVERRIDES
from referralmesh.v1 import notify_service_pb2 as api
from referralmesh.v1 import notify_service_pb2_grpc
from services.notify.adapters.store import NotifyStore
from services.notify.paths import NotifyPaths
from tests.integration.notify.notify_kit import NotifyProcess, Producer, escalation, new_case, notify_env, wait_until

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def restartable_kafka():
    kafka = PrivateKafka()
    kafka.start()
    yield kafka
    kafka.remove()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_setting(request) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    url = request.getfixturevalue("postgres_url")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = f"notify_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield {"MESH_NOTIFY_DATABASE_URL": url.rsplit("/", 1)[0] + f"/{name}"}
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _event_ids_of_case(config, case_id: str, wanted: str, timeout: float = 120.0) -> list[str]:
    """Every event id on the overrides topic for this case, read from the start until `wanted`
    is among them and the end of the topic is reached (or `timeout` passes)."""
    consumer = KafkaConsumer(
        config.topic(OVERRIDES.base_name),
        bootstrap_servers=config.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"t-{uuid.uuid4()}",
        enable_auto_commit=False,
    )
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                seen.extend(envelopes.decode(r.value).event_id for r in batch if r.key == case_id.encode())
            assigned = consumer.assignment()
            at_end = assigned and all(
                consumer.position(tp) >= end for tp, end in consumer.end_offsets(list(assigned)).items()
            )
            if wanted in seen and at_end:
                break
    finally:
        consumer.close()
    return seen


@pytest.mark.timeout(900)  # a broker restart and two notify starts, on a loaded machine
def test_an_action_taken_while_the_broker_is_down_reaches_kafka_once_after_notify_crashed(
    restartable_kafka, database_setting, tmp_path
):
    env = notify_env(restartable_kafka.bootstrap, tmp_path, **database_setting)
    notify = NotifyProcess(env, tmp_path / "logs-1").start()
    producer = Producer(notify.config)
    case_id = new_case()
    try:
        producer.send(ESCALATIONS, escalation(case_id, region="GM0518"))
        store = NotifyStore.open(NotifyPaths.of(notify.config).database_url)
        [alert] = wait_until(lambda: [s.alert for s in store.alerts() if s.alert.case_id == case_id], timeout=60)

        restartable_kafka.kill()
        try:
            with grpc.insecure_channel(notify.config.notify_grpc_address) as channel:
                acked = notify_service_pb2_grpc.NotifyServiceStub(channel).AcknowledgeAlert(
                    api.AcknowledgeAlertRequest(escalation_id=alert.escalation_id),
                    metadata=[("x-mesh-coordinator", "coord-gm0518")],
                    timeout=30,
                )
            assert acked.state == api.ACKNOWLEDGED
            assert store.get_alert(alert.escalation_id).alert.state.value == "ACKNOWLEDGED"
            assert [event.event_id for event in store.unpublished_events()] == [
                envelopes.derived_id("alert-action", alert.escalation_id, "ACKNOWLEDGED")
            ]
            notify.stack.kill("notify")  # a crash, with the event recorded and not published
        finally:
            restartable_kafka.start()
        store.close()

        notify = NotifyProcess(env, tmp_path / "logs-2").start()
        wanted = envelopes.derived_id("alert-action", alert.escalation_id, "ACKNOWLEDGED")
        seen = _event_ids_of_case(notify.config, case_id, wanted)
        assert seen.count(wanted) == 1, seen
        store = NotifyStore.open(NotifyPaths.of(notify.config).database_url)
        assert wait_until(lambda: store.unpublished_event_count() == 0, timeout=30)
        store.close()
    finally:
        producer.close()
        notify.stop()
