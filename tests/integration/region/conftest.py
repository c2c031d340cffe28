"""A private region worker per test module, on the real broker, with its own topics and ports."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from meshcli.supervisor import Stack
from meshkernel.kafka import prepare_kafka
from region_stream_kit import Mesh, wait_for_health
from tests.conftest import free_port, settings_from


@pytest.fixture(scope="module")
def region_env(kafka_bootstrap, tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("region")
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "MESH_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "MESH_STATE_DIR": str(tmp / "state"),
        "MESH_REGION_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
        "MESH_REGION_WEB_PORT": str(free_port()),
    })
    return env


@pytest.fixture(scope="module")
def region_worker(region_env):
    config = settings_from(region_env)
    prepare_kafka(config, "region-it", give_up_after=60)
    stack = Stack(env=region_env, log_dir=Path(region_env["MESH_STATE_DIR"]).parent / "logs")
    stack.start("region")
    wait_for_health(config.region_grpc_address)
    yield stack, config
    stack.stop_all()


@pytest.fixture(scope="module")
def mesh(region_worker):
    _stack, config = region_worker
    mesh = Mesh(config)
    yield mesh
    mesh.close()
