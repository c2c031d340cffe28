"""Stops what a supervisor started once that supervisor is gone, whatever ended it.

`make run` starts Kafka, Zipkin and three services. If the supervisor is killed (SIGKILL, a
crash, an out-of-memory kill), its own clean-up never runs. This small process, started first
in a session of its own (so no terminal signal reaches it), learns over a pipe what was
started; when the pipe closes without a "done", it stops all of it.

Protocol, one line each: `group PID` (a process group to stop), `forget PID`, `script PATH`
(a scripts/*.sh whose `stop` stops what it started), `forget-script PATH`, `done`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 12.0  # services stop within 10 s of SIGTERM; then SIGKILL


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    groups: set[int] = set()
    scripts: list[str] = []
    for line in sys.stdin:
        verb, _, argument = line.strip().partition(" ")
        if verb == "group":
            groups.add(int(argument))
        elif verb == "forget":
            groups.discard(int(argument))
        elif verb == "script" and argument not in scripts:
            scripts.append(argument)
        elif verb == "forget-script" and argument in scripts:
            scripts.remove(argument)
        elif verb == "done":
            return 0
    if groups or scripts:
        log(f"supervisor gone; stopping {len(groups)} service(s) and {len(scripts)} script-run process(es)")
    stop_groups(groups)
    for script in reversed(scripts):
        subprocess.run([script, "stop"], stdin=subprocess.DEVNULL, check=False)
    return 0


def stop_groups(groups: set[int], grace: float = GRACE_SECONDS) -> None:
    alive = {group for group in groups if _signal(group, signal.SIGTERM)}
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {group for group in alive if _signal(group, 0)}
    for group in alive:
        log(f"process group {group} ignored SIGTERM for {grace:.0f}s; killing it")
        _signal(group, signal.SIGKILL)


def _signal(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
        return True
    except ProcessLookupError:
        return False


def log(text: str) -> None:
    with contextlib.suppress(OSError):
        print(f"watchdog: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
