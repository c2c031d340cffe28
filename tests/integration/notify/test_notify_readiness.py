"""The notify worker's probes: HTTP /ready and /live on its web server and gRPC health's
readiness and liveness, true once it answers Kafka and holds its partitions."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.notify.notify_kit import wait_until

pytestmark = pytest.mark.kafka


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_notify_worker_with_its_partitions_is_ready_and_live(notify):
    assert wait_until(lambda: get(notify.base_url + "/ready")[0] == 200, timeout=60)
    assert get(notify.base_url + "/ready") == (
        200,
        {
            "ready": True,
            "stopping": False,
            "checks": {"kafka": True, "partitions_assigned": True, "tables_recovered": True},
        },
    )
    assert get(notify.base_url + "/live") == (200, {"live": True})
    with grpc.insecure_channel(notify.config.notify_grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "referralmesh.v1.NotifyService", "readiness", "liveness"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
