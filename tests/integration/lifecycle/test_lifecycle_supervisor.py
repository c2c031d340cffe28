"""The supervisor behind `make run` leaves no process behind, whatever happens to it.

Each test runs the demo as a user would (through a pipe, or on a terminal), ends it the way the
test names, and then reads the process table: no process of that run may remain, Kafka and
Zipkin included when the demo started them. The shared broker is never touched: runs that
start their own broker and Zipkin use free ports of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from meshkernel.config import PROJECT_ROOT
from tests.integration.lifecycle.lifecycle_kit import (
    forget_private_infrastructure,
    left_behind,
    log_says,
    services_listening,
    tagged_env,
    wait_until,
    with_private_infrastructure,
)

DEMO = [sys.executable, "-m", "meshcli.main", "demo"]
STARTUP = 240.0  # a first private broker and Zipkin on a busy machine
STOPPED = 60.0


def _pipeline(env: dict[str, str], output: Path) -> subprocess.Popen:
    """`mesh demo | tee output` in a process group of its own, as a terminal runs it."""
    script = f'{" ".join(DEMO)} 2>&1 | tee "{output}" > /dev/null'
    return subprocess.Popen(
        ["bash", "-c", script], env=env, cwd=PROJECT_ROOT, start_new_session=True, stdin=subprocess.DEVNULL
    )


def _assert_nothing_left(env: dict[str, str]) -> None:
    wait_until(lambda: not left_behind(env), STOPPED)
    assert left_behind(env) == []


@pytest.fixture
def private_infrastructure_env(kafka_bootstrap, tmp_path):
    env = with_private_infrastructure(tagged_env(tmp_path, None), zipkin=True)
    yield env
    forget_private_infrastructure(env)


def test_ctrl_c_through_a_pipe_then_sighup_during_clean_up_leaves_no_process_behind(
    private_infrastructure_env, tmp_path
):
    env = private_infrastructure_env
    output = tmp_path / "run.log"
    pipeline = _pipeline(env, output)
    try:
        assert wait_until(lambda: services_listening(env), STARTUP), output.read_text()
        assert any("kafka.Kafka" in line for line in left_behind(env)), "the demo started its own broker"
        assert any("zipkin" in line for line in left_behind(env)), "the demo started its own Zipkin"

        os.killpg(pipeline.pid, signal.SIGINT)  # Ctrl-C: the whole pipeline, tee included
        referral_log = Path(env["MESH_STATE_DIR"]) / "logs" / "referral.log"
        assert wait_until(lambda: log_says(referral_log, "referral service stopping"), STOPPED)
        os.killpg(pipeline.pid, signal.SIGHUP)  # the window is closed while the clean-up runs
        pipeline.wait(timeout=STOPPED)

        _assert_nothing_left(env)
    finally:
        _kill_group(pipeline)


def test_closed_terminal_stops_everything(kafka_bootstrap, tmp_path):
    env = tagged_env(tmp_path, kafka_bootstrap)
    controller, terminal = os.openpty()

    def take_terminal():  # the demo is the session leader, the pty its controlling terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    demo = subprocess.Popen(
        DEMO,
        env=env,
        cwd=PROJECT_ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(terminal)
    reader = threading.Thread(target=_drain, args=(controller,), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: services_listening(env), STARTUP)
        os.close(controller)  # the terminal window closes: the kernel hangs up the session
        demo.wait(timeout=STOPPED)
        _assert_nothing_left(env)
    finally:
        _kill_group(demo)


def test_sigterm_stops_everything(kafka_bootstrap, tmp_path):
    env = tagged_env(tmp_path, kafka_bootstrap)
    output = tmp_path / "run.log"
    with open(output, "wb") as sink:
        demo = subprocess.Popen(
            DEMO,
            env=env,
            cwd=PROJECT_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        assert wait_until(lambda: services_listening(env), STARTUP)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=STOPPED) == 0
        _assert_nothing_left(env)
        assert "stopped; no process left behind" in output.read_text()
    finally:
        _kill_group(demo)


def test_a_killed_supervisor_takes_its_broker_and_services_along(kafka_bootstrap, tmp_path):
    env = with_private_infrastructure(tagged_env(tmp_path, None), zipkin=False)
    output = tmp_path / "run.log"
    try:
        with open(output, "wb") as sink:
            demo = subprocess.Popen(
                DEMO,
                env=env,
                cwd=PROJECT_ROOT,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        assert wait_until(lambda: services_listening(env), STARTUP), output.read_text()
        assert any("kafka.Kafka" in line for line in left_behind(env))

        demo.kill()  # no clean-up of its own can run: the watchdog and PR_SET_PDEATHSIG must
        demo.wait()
        _assert_nothing_left(env)
        watchdog_log = Path(env["MESH_STATE_DIR"]) / "logs" / "watchdog.log"
        assert log_says(watchdog_log, "supervisor gone")
    finally:
        forget_private_infrastructure(env)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
