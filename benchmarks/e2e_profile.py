"""Profiles of the running services for `make bench-e2e --profile`: py-spy attached to each
service's process while one step of load runs, written to bench-results/profiles/:

- e2e-<service>.svg: the flame graph;
- e2e-<service>.txt: collapsed stacks (`py-spy --format raw`) and, on top, where the CPU
  samples went: by package or project file (own time), by function (own time) and by
  function including what it calls.

py-spy samples with `--nonblocking` (it never pauses the service) and leaves idle threads
out, so the shares are shares of the CPU the service used.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SAMPLES_PER_SECOND = 50
# Leaf frames of a thread that waits for work: py-spy's idle detection races on a busy machine
# (a thread woken but not yet on a core counts as active), so these are counted apart.
WAITING = {("EpollSelector.select", "selectors"), ("_worker", "concurrent"), ("Condition.wait", "threading")}
FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed: `pip install -e '.[check]'` (make venv) installs it")
    return found


def start_recording(pid: int, seconds: float, output: Path) -> list[subprocess.Popen]:
    """Two py-spy samplers on `pid` for `seconds`: the flame graph and the raw stacks."""
    output.parent.mkdir(parents=True, exist_ok=True)
    common = ["record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    common += ["--rate", str(SAMPLES_PER_SECOND), "--nonblocking"]
    return [
        subprocess.Popen(
            [py_spy(), *common, "--format", kind, "--output", str(output.with_suffix(suffix))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for kind, suffix in (("flamegraph", ".svg"), ("raw", ".raw"))
    ]


def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """`frame;frame;frame count` lines -> (frames, samples), outermost frame first."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def frame_parts(frame: str) -> tuple[str, str]:
    """("function", "file") of a py-spy frame such as `send (aiokafka/producer/producer.py:400)`."""
    match = FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["function"], match["file"]


def area_of(file: str) -> str:
    """Where a frame's code lives: the project file, else the installed package or the standard
    library module ("sqlalchemy", "asyncio", ...), from a full path or py-spy's short one."""
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for root in ("services/", "meshkernel/", "meshcli/", "referencedata/", "generated/"):
        if file.startswith(root) or f"/{root}" in file:
            return root + file.split(root, 1)[1]
    if "/lib/python3" in file:
        return file.split("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
    if file and not file.startswith("/"):  # py-spy's short names: relative to the import path
        return file.split("/", 1)[0].removesuffix(".py")
    return file or "?"


def summarise(stacks: list[tuple[list[str], int]], top: int = 15) -> dict:
    """Shares of the busy samples (those not waiting for work, `WAITING`): own time by area and
    by function, and time including callees by function (each function once per stack)."""
    total = sum(count for _, count in stacks) or 1
    waiting = 0
    own_by_area: Counter[str] = Counter()
    own_by_function: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        if not frames:
            continue
        function, file = frame_parts(frames[-1])
        if (function, area_of(file)) in WAITING:
            waiting += count
            continue
        own_by_area[area_of(file)] += count
        own_by_function[f"{function} ({area_of(file)})"] += count
        seen = set()
        for frame in frames:
            function, file = frame_parts(frame)
            name = f"{function} ({area_of(file)})"
            if name not in seen:
                seen.add(name)
                inclusive[name] += count
    busy = max(1, total - waiting)

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * count / busy, 1)) for name, count in counter.most_common(top)]

    return {
        "samples": total,
        "waiting_percent": round(100 * waiting / total, 1),
        "own_by_area": shares(own_by_area),
        "own_by_function": shares(own_by_function),
        "inclusive_by_function": shares(inclusive),
    }


def render(service: str, summary: dict) -> str:
    lines = [
        f"{service}: {summary['samples']} samples (py-spy, {SAMPLES_PER_SECOND}/s), {summary['waiting_percent']:g} % "
        "waiting for work (in select or an idle pool thread); shares below are of the rest"
    ]
    for key, title in (
        ("own_by_area", "own time by package / project file"),
        ("own_by_function", "own time by function"),
        ("inclusive_by_function", "time including callees, by function"),
    ):
        lines.append(f"  {title}:")
        lines.extend(f"    {share:5.1f} %  {name}" for name, share in summary[key])
    return "\n".join(lines)


def finish_recording(service: str, samplers: list[subprocess.Popen], output: Path, timeout: float) -> dict:
    """Wait for the samplers, then write e2e-<service>.txt (summary + collapsed stacks)."""
    for sampler in samplers:
        try:
            _, errors = sampler.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            sampler.kill()
            _, errors = sampler.communicate()
        if sampler.returncode:
            print(f"  py-spy on {service}: exit {sampler.returncode}: {errors.decode(errors='replace')[-300:]}")
    raw = output.with_suffix(".raw")
    if not raw.exists():
        return {}
    text = raw.read_text(errors="replace")
    summary = summarise(parse_collapsed(text.splitlines()))
    output.with_suffix(".txt").write_text(render(service, summary) + "\n\ncollapsed stacks:\n" + text)
    raw.unlink()
    return summary
