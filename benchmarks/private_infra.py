"""A private Kafka broker and a private PostgreSQL for the fault runs (`make chaos`, `make fuzz`).

Each runs on its own free ports with its own data folder, started through the project's own
scripts, so killing, pausing or flooding them never touches the shared broker (9092) or the
shared PostgreSQL (55432). Both are removed, data and all, when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from meshcli.supervisor import KAFKA_SCRIPT, free_port, wait_for
from meshkernel.config import PROJECT_ROOT

POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres.sh"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A free port whose successor is free too (the broker's controller listens there)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _port_free(port + 1):
            return port
    raise RuntimeError("no two free neighbouring ports on 127.0.0.1")


def _script_env(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("KAFKA_BOOTSTRAP", "POSTGRES_DIR")}
    env.update(settings)
    return env


def _kill_tree(pid: int, signum: int) -> None:
    """Signal a process and its children (PostgreSQL's backends die with their postmaster, but
    only once they notice; sending SIGKILL to all of them is what a machine crash does)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for target in [pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signum)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed child of ours that nobody reaped yet is a zombie: gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


class PrivateKafka:
    def __init__(self, port: int | None = None):
        self.port = port or free_port_pair()
        self.env = _script_env(KAFKA_PORT=str(self.port))
        cache = Path(os.environ.get("MESH_CACHE_DIR") or PROJECT_ROOT / ".cache") / "kafka"
        self.state = cache / f"node-{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run(
            [str(KAFKA_SCRIPT), "start"],
            env=self.env,
            check=True,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    def pid(self) -> int:
        return int((self.state / "broker.pid").read_text().strip())

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: _gone(pid), timeout=30)

    def pause(self) -> None:
        os.kill(self.pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid(), signal.SIGCONT)

    def remove(self) -> None:
        """Stop the broker (SIGKILL: its data goes too, a clean shutdown buys nothing) and delete it."""
        try:
            _kill_tree(self.pid(), signal.SIGCONT)
            self.kill()
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.state, ignore_errors=True)


class PrivatePostgres:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.base = Path("/var/tmp") / f"referralmesh-chaos-{uuid.uuid4().hex[:12]}"
        self.env = _script_env(POSTGRES_PORT=str(self.port), POSTGRES_DIR=str(self.base))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/referralmesh"

    def start(self, attempts: int = 5) -> None:
        for attempt in range(attempts):
            result = subprocess.run(
                [str(POSTGRES_SCRIPT), "start"],
                env=self.env,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            )
            if result.returncode == 0:
                return
            # After a SIGKILL the old shared memory may still be held for a moment.
            time.sleep(1 + attempt)
        raise RuntimeError(f"private PostgreSQL did not start: {result.stderr.strip()[-500:]}")

    def pid(self) -> int:
        return int((self.base / "data" / "postmaster.pid").read_text().splitlines()[0])

    def kill(self) -> None:
        pid = self.pid()
        _kill_tree(pid, signal.SIGKILL)
        wait_for(lambda: _gone(pid), timeout=30)

    def remove(self) -> None:
        subprocess.run(
            [str(POSTGRES_SCRIPT), "stop"],
            env=self.env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        shutil.rmtree(self.base, ignore_errors=True)
