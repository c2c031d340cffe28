"""Shared test set-up: a real Kafka broker for the tests that need one.

The broker comes from scripts/kafka.sh (reused when one already answers; stopped at the
end only if this session started it). KAFKA_BOOTSTRAP=host:port uses an external cluster.
Each test run gets its own topic prefix, so runs never see each other's events.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator

# Tests that are not about security run the mesh in local mode (plaintext on loopback); the
# security tests set MESH_MODE themselves. Set before any settings are read.
os.environ["MESH_MODE"] = "local"

import pytest
from hypothesis import HealthCheck, settings

from meshcli.supervisor import (
    Stack,
    kafka_answers,
    private_mesh_env,
    settings_from,
    start_kafka,
    start_zipkin_in_background,
    stop_kafka,
    stop_zipkin,
    zipkin_answers,
    zipkin_url,
)
from meshkernel.config import MeshSettings
from meshkernel.kafka import prepare_kafka

# Property tests assert what they find, not how fast: on a loaded 2-core CI machine hypothesis's
# default 200 ms deadline and its too-slow health check fail runs that found nothing wrong.
settings.register_profile("mesh", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("mesh")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    started = False
    if not kafka_answers():
        start_kafka()
        started = True
    yield "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")
    if started:
        stop_kafka()


@pytest.fixture
def isolated_env(kafka_bootstrap, tmp_path) -> dict[str, str]:
    """Environment for a private mesh: own topics, database, state folder and ports."""
    return private_mesh_env(tmp_path, kafka_bootstrap)


@pytest.fixture(scope="session")
def zipkin():
    started = None
    if not zipkin_answers():
        started = start_zipkin_in_background()
        assert started.wait() == 0, "Zipkin did not start (see .cache/zipkin)"
    yield zipkin_url().removesuffix("/zipkin/")
    if started is not None:
        stop_zipkin()


@pytest.fixture
def traced_mesh(isolated_env, tmp_path, zipkin):
    env = dict(isolated_env)
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "zipkin",
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT": f"{zipkin}/api/v2/spans",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
    )
    config = settings_from(env)
    prepare_kafka(config, "tracing-test", give_up_after=60)
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    for service in ("referral", "region", "notify"):
        stack.start(service)
    yield stack, config, zipkin
    stack.stop_all()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def send_demo_referral(config: MeshSettings, case_id: str, notifications: int = 3) -> None:
    """Create the demo scenario's referral and wait until its first notifications are out."""
    from meshcli.client import ReferralClient
    from meshcli.demo import SENDER, demo_request
    from meshcli.watch import EventWatcher
    from meshkernel.topics import NOTIFICATIONS

    client = ReferralClient(config.referral_grpc_address, SENDER)
    watcher = EventWatcher(config, [NOTIFICATIONS])
    try:
        client.wait_until_ready(timeout=60)
        client.create(demo_request(case_id))
        arrived = list(zip(range(notifications), watcher.events({case_id}, timeout=90), strict=False))
        assert len(arrived) == notifications, f"{len(arrived)} of {notifications} notifications arrived"
    finally:
        watcher.close()
        client.close()
