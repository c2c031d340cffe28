"""Readiness follows Kafka: false while the broker does not answer, true once it does; liveness
stays true meanwhile (meshkernel/health.py, against the real broker and a closed port)."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError
from grpc_health.v1 import health, health_pb2

from meshcli.supervisor import free_port, private_mesh_env
from meshkernel.health import KafkaProbe, ServiceHealth
from tests.conftest import settings_from

pytestmark = pytest.mark.kafka

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
API = "referralmesh.v1.ReferralService"


async def status(servicer, name: str) -> int:
    reply = await servicer.Check(health_pb2.HealthCheckRequest(service=name), None)
    return reply.status


async def test_readiness_is_false_while_kafka_is_unreachable_and_true_once_it_answers(kafka_bootstrap, tmp_path):
    closed = settings_from(private_mesh_env(tmp_path, f"127.0.0.1:{free_port()}"))  # nothing listens there
    readiness = ServiceHealth((API,), kafka=KafkaProbe(closed, timeout=2.0))
    servicer = health.aio.HealthServicer()
    await readiness.attach(servicer)
    # grpcio starts the overall status as SERVING; attaching overwrites it before any probe ran.
    assert await status(servicer, "") == NOT_SERVING

    assert await readiness.refresh() is False
    assert readiness.report() == {"ready": False, "stopping": False, "checks": {"kafka": False}}
    for name in ("", API, "readiness"):
        assert await status(servicer, name) == NOT_SERVING
    assert await status(servicer, "liveness") == SERVING

    # The broker answers (the same probe, now at the real broker's address): ready.
    readiness.kafka = KafkaProbe(settings_from(private_mesh_env(tmp_path, kafka_bootstrap)))
    try:
        assert await readiness.refresh() is True
        for name in ("", API, "readiness", "liveness"):
            assert await status(servicer, name) == SERVING
    finally:
        await readiness.stop()
    # The stop: neither ready nor alive, at once.
    assert readiness.ready is False
    assert await status(servicer, "readiness") == NOT_SERVING


async def test_a_failing_extra_check_keeps_the_service_unready(kafka_bootstrap, tmp_path):
    config = settings_from(private_mesh_env(tmp_path, kafka_bootstrap))
    recovered = {"done": False}
    readiness = ServiceHealth((API,), kafka=KafkaProbe(config), checks={"tables_recovered": lambda: recovered["done"]})
    try:
        assert await readiness.refresh() is False
        assert readiness.report()["checks"] == {"kafka": True, "tables_recovered": False}
        recovered["done"] = True
        assert await readiness.refresh() is True
    finally:
        await readiness.stop()


async def test_later_probes_ask_for_the_brokers_only_and_a_failed_one_makes_the_service_unready(
    kafka_bootstrap, tmp_path
):
    probe = KafkaProbe(settings_from(private_mesh_env(tmp_path, kafka_bootstrap)))
    try:
        assert await probe.reachable() is True  # the first probe connects
        client = probe._client
        assert client is not None
        asked = []
        send = client.send

        async def recording(node_id, request, **options):
            asked.append(request)
            return await send(node_id, request, **options)

        client.send = recording
        assert await probe.reachable() is True
        # A topic list of none: the answer names the brokers, not the cluster's every topic.
        assert [request._topics for request in asked] == [[]]

        async def broker_gone(node_id, request, **options):
            raise KafkaConnectionError("connection refused")

        client.send = broker_gone
        assert await probe.reachable() is False
        assert probe._client is None  # the next probe connects afresh
    finally:
        await probe.close()
