"""The region worker's probes: HTTP /ready and /live, and gRPC health's readiness and liveness,
true once its partitions are assigned and its tables recovered."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.kafka


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_recovered_worker_is_ready_and_live_over_http_and_grpc(region_worker):
    _stack, config = region_worker
    base = f"http://127.0.0.1:{config.region_web_port}"
    deadline = time.monotonic() + 60
    code, report = get(f"{base}/ready")
    while code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        code, report = get(f"{base}/ready")
    assert (code, report) == (
        200,
        {
            "ready": True,
            "stopping": False,
            "checks": {"kafka": True, "partitions_assigned": True, "tables_recovered": True},
        },
    )
    assert get(f"{base}/live") == (200, {"live": True})
    with grpc.insecure_channel(config.region_grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "referralmesh.v1.RegionService", "readiness", "liveness"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
