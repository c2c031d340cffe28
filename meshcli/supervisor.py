"""Starts and stops the local stack (Kafka and Zipkin through their scripts, services as child
processes) so that nothing is left behind, whatever ends the supervisor:

- Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all start one clean-up; any further signal,
  such as the SIGHUP of a window closed while that clean-up runs, is ignored until it is done;
- the clean-up survives a broken stdout (`make run | tee log` loses tee to the same Ctrl-C);
- each child runs in its own session, so terminal signals reach it only through the
  supervisor, and it gets SIGTERM when the supervisor dies (PR_SET_PDEATHSIG);
- a watchdog process (meshcli/watchdog.py) stops everything, Kafka and Zipkin included, if the
  supervisor is killed before its clean-up could run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from meshkernel.config import PROJECT_ROOT, MeshSettings

KAFKA_SCRIPT = PROJECT_ROOT / "scripts" / "kafka.sh"
ZIPKIN_SCRIPT = PROJECT_ROOT / "scripts" / "zipkin.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_mesh_env(state_dir: Path, kafka_bootstrap: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a private mesh beside others on one broker and machine: its own topic
    prefix, database, state folder and free ports (tests, benchmarks, parallel demos). It runs
    in MESH_MODE=local (plaintext on loopback) unless `extra` says otherwise."""
    env = dict(os.environ)
    if kafka_bootstrap:
        env["KAFKA_BOOTSTRAP"] = kafka_bootstrap
    env.update(
        {
            "MESH_MODE": "local",
            "MESH_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
            "DATABASE_URL": f"sqlite:///{state_dir / 'referral.db'}",
            "MESH_STATE_DIR": str(state_dir / "state"),
            "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_REGION_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_NOTIFY_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_REGION_WEB_PORT": str(free_port()),
            "MESH_NOTIFY_WEB_PORT": str(free_port()),
            "MESH_REFERRAL_METRICS_PORT": str(free_port()),
            "MESH_REGION_METRICS_PORT": str(free_port()),
            "MESH_NOTIFY_METRICS_PORT": str(free_port()),
        }
    )
    env.update(extra)
    return env


def settings_from(env: dict[str, str]) -> MeshSettings:
    """The settings a child process started with `env` will read."""
    keys = {key: value for key, value in env.items() if key.startswith(("MESH_", "KAFKA_", "DATABASE_"))}
    saved = dict(os.environ)
    try:
        os.environ.update(keys)
        return MeshSettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def kafka_answers(env: dict[str, str] | None = None) -> bool:
    return subprocess.run([str(KAFKA_SCRIPT), "status"], env=env, capture_output=True).returncode == 0


def start_kafka(env: dict[str, str] | None = None) -> None:
    # Its own session: a Ctrl-C must not kill the script between starting the broker and
    # writing its pid file, which is what stop_kafka needs to find it.
    subprocess.run([str(KAFKA_SCRIPT), "start"], env=env, check=True, start_new_session=True, stdin=subprocess.DEVNULL)


def stop_kafka(env: dict[str, str] | None = None) -> None:
    _run_stop_script(KAFKA_SCRIPT, env)


def zipkin_answers(env: dict[str, str] | None = None) -> bool:
    return subprocess.run([str(ZIPKIN_SCRIPT), "status"], env=env, capture_output=True).returncode == 0


def start_zipkin_in_background(env: dict[str, str] | None = None) -> subprocess.Popen:
    """Zipkin takes a while to boot; start it beside Kafka and wait for it later."""
    return subprocess.Popen([str(ZIPKIN_SCRIPT), "start"], env=env, stdin=subprocess.DEVNULL, start_new_session=True)


def stop_zipkin(env: dict[str, str] | None = None) -> None:
    _run_stop_script(ZIPKIN_SCRIPT, env)


def _run_stop_script(script: Path, env: dict[str, str] | None) -> None:
    """Run `script stop` out of reach of terminal signals, its output relayed line by line: a
    script writing to a closed terminal or a dead pipe would die of it before stopping anything."""
    result = subprocess.run(
        [str(script), "stop"],
        env=env,
        check=False,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    for line in (result.stdout + result.stderr).splitlines():
        say_safely(line)


def say_safely(text: str, stream=None) -> None:
    """Print a line; if the terminal or pipe is gone, go on silently instead of failing."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        _silence(stream)


def _silence(stream) -> None:
    """Point a broken stdout/stderr at /dev/null, so later writes (and the flush at exit) succeed."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class StopRequested(BaseException):
    """Raised in the main thread by the first SIGINT, SIGTERM or SIGHUP. A BaseException, like
    KeyboardInterrupt, so no `except Exception` on the way swallows it."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_signals() -> Iterator[Callable[[], None]]:
    """Within the block, the first stop signal raises StopRequested; the block receives a
    `disarm` to call when its clean-up begins. After the first signal (or disarm), every
    further one is ignored, so a closed terminal cannot cut a clean-up short."""
    armed = True

    def on_signal(signum, _frame):
        nonlocal armed
        if armed:
            armed = False
            raise StopRequested(signal.Signals(signum).name)

    def disarm() -> None:
        nonlocal armed
        armed = False

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        yield disarm
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def ignoring_stop_signals() -> Iterator[None]:
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Watchdog:
    """The process that stops what this supervisor started if the supervisor dies first."""

    def __init__(self, env: dict[str, str], log_file: Path):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "meshcli.watchdog"],
                env=env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _tell(self, line: str) -> None:
        assert self.process.stdin is not None  # started with stdin=PIPE
        try:
            self.process.stdin.write(f"{line}\n".encode())
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass  # the watchdog is gone; the supervisor's own clean-up still runs

    def watch_group(self, pid: int) -> None:
        self._tell(f"group {pid}")

    def forget_group(self, pid: int) -> None:
        self._tell(f"forget {pid}")

    def watch_script(self, script: Path) -> None:
        self._tell(f"script {script}")

    def forget_script(self, script: Path) -> None:
        self._tell(f"forget-script {script}")

    def done(self) -> None:
        """Everything is stopped: the watchdog leaves without touching anything."""
        self._tell("done")
        with suppress(OSError):
            self.process.stdin.close()  # type: ignore[union-attr]  # started with stdin=PIPE
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `signum` to this process when its parent dies (Linux), and stop
    now if the parent is already gone. Called first thing in a supervised child."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the watchdog still covers the supervisor's death
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)


PARENT_PID_ENV = "MESH_SUPERVISOR_PID"


def zipkin_url(env: dict[str, str] | None = None) -> str:
    return subprocess.run([str(ZIPKIN_SCRIPT), "url"], env=env, capture_output=True, text=True).stdout.strip()


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    watchdog: Watchdog | None = None

    def start(self, service: str) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{service}.log", "ab")  # noqa: SIM115 - the child writes to it for life
        # Its own session: terminal signals reach it only through the supervisor. It dies with
        # the supervisor (the child sets PR_SET_PDEATHSIG, see meshcli.main).
        process = subprocess.Popen(
            [sys.executable, "-m", "meshcli.main", "serve", service],
            env={**self.env, PARENT_PID_ENV: str(os.getpid())},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
            start_new_session=True,
        )
        log_file.close()
        self.processes[service] = process
        if self.watchdog is not None:
            self.watchdog.watch_group(process.pid)
        return process

    def stop(self, service: str, timeout: float = 15.0) -> None:
        """SIGTERM to the service's process group; SIGKILL if it is still there after `timeout`
        (every service exits within 10 s of SIGTERM, broker or not)."""
        process = self.processes.pop(service, None)
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        if self.watchdog is not None:
            self.watchdog.forget_group(process.pid)

    def kill(self, service: str) -> None:
        """Stop without any chance to clean up, as a crash would."""
        process = self.processes.pop(service)
        _signal_group(process, signal.SIGKILL)
        process.wait()
        if self.watchdog is not None:
            self.watchdog.forget_group(process.pid)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM to every service at once, then wait for each (SIGKILL after `timeout`)."""
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in reversed(list(self.processes)):
            self.stop(service, timeout=max(0.1, deadline - time.monotonic()))

    def crashed(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
