"""A private region worker per test module, on the real broker, with its own topics and ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshcli.supervisor import Stack, private_mesh_env
from meshkernel.kafka import prepare_kafka
from tests.conftest import settings_from
from tests.integration.region.region_stream_kit import Mesh, wait_for_health


@pytest.fixture(scope="module")
def region_env(kafka_bootstrap, tmp_path_factory) -> dict[str, str]:
    return private_mesh_env(tmp_path_factory.mktemp("region"), kafka_bootstrap)


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
