"""Every service exits within 10 s of SIGTERM when the broker does not answer: a hung broker
(SIGSTOP: connections open, no replies, the worst case) and a dead one. Each test runs a broker
of its own on free ports; the shared broker is never touched."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from meshcli.supervisor import KAFKA_SCRIPT, Stack, settings_from
from meshkernel.kafka import prepare_kafka
from tests.integration.lifecycle.lifecycle_kit import (
    forget_private_infrastructure,
    services_listening,
    tagged_env,
    wait_until,
    with_private_infrastructure,
)

SERVICES = ("referral", "region", "notify")
PROMISED_SECONDS = 10.0


@pytest.fixture
def mesh_on_private_broker(kafka_bootstrap, tmp_path):
    env = with_private_infrastructure(tagged_env(tmp_path, None), zipkin=False)
    env.pop("ZIPKIN_PORT")
    subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, check=True, capture_output=True)
    broker = int((Path(env["KAFKA_STATE_DIR"]) / "broker.pid").read_text())
    env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{env['KAFKA_PORT']}"
    prepare_kafka(settings_from(env), "lifecycle-test", give_up_after=60)
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    try:
        for service in SERVICES:
            stack.start(service)
        assert wait_until(lambda: services_listening(env, tmp_path / "logs"), 180)
        yield stack, broker, tmp_path / "logs"
    finally:
        _resume(broker)
        stack.stop_all()
        forget_private_infrastructure(env)


def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


def _stop_all_and_time_each(stack: Stack) -> dict[str, int | None]:
    processes = dict(stack.processes)
    for process in processes.values():
        process.send_signal(signal.SIGTERM)
    codes: dict[str, int | None] = {}
    for service, process in processes.items():
        try:
            codes[service] = process.wait(timeout=PROMISED_SECONDS)
        except subprocess.TimeoutExpired:
            codes[service] = None
    return codes


def test_each_service_exits_within_10s_of_sigterm_with_the_broker_hung(mesh_on_private_broker):
    stack, broker, logs = mesh_on_private_broker
    os.kill(broker, signal.SIGSTOP)

    codes = _stop_all_and_time_each(stack)

    assert [service for service, code in codes.items() if code is None] == [], "still running after 10 s"
    for service, code in codes.items():
        if code != 0:  # cut short: it must say what it left unfinished
            assert "stop did not finish" in (logs / f"{service}.log").read_text(errors="replace")


def test_each_service_exits_within_10s_of_sigterm_with_the_broker_dead(mesh_on_private_broker):
    stack, broker, _logs = mesh_on_private_broker
    os.kill(broker, signal.SIGKILL)

    codes = _stop_all_and_time_each(stack)

    assert [service for service, code in codes.items() if code is None] == [], "still running after 10 s"
