"""CPU time of each service from its own processes, for `make bench-e2e`.

Every service runs in its own process group (meshcli.supervisor.Stack starts it in a new
session), so the CPU of a service is the user + system time of every process in that group,
all threads included, read from /proc/<pid>/stat. Process CPU time barely moves with the
machine's load (unlike wall-clock rates), which is why the benchmark reports CPU per referral
beside its wall figures.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    process_group: int
    cpu_ticks: int  # user + system, this process's threads (not waited-for children)


def parse_stat(text: str) -> ProcessStat:
    """One /proc/<pid>/stat line. The command name is in parentheses and may hold spaces or
    parentheses itself, so the fields are counted from the last ')'."""
    pid = int(text.split(" ", 1)[0])
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15), numbered as in proc(5).
    process_group = int(fields[5 - 3])
    user, system = int(fields[14 - 3]), int(fields[15 - 3])
    return ProcessStat(pid=pid, process_group=process_group, cpu_ticks=user + system)


def _all_stats() -> Iterable[ProcessStat]:
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we read


def group_cpu_seconds(groups: Iterable[int]) -> dict[int, float]:
    """CPU seconds used so far by every process of each process group."""
    wanted = dict.fromkeys(groups, 0)
    for stat in _all_stats():
        if stat.process_group in wanted:
            wanted[stat.process_group] += stat.cpu_ticks
    return {group: ticks / CLOCK_TICKS for group, ticks in wanted.items()}


def service_of(process_name: str) -> str:
    """ "region-2" (a replica) and "region" are both the region service."""
    head, _, tail = process_name.rpartition("-")
    return head if head and tail.isdigit() else process_name


class ServiceCpu:
    """Samples the CPU seconds of each service (replicas summed) by process group."""

    def __init__(self, groups_by_process: Mapping[str, int]):
        self.groups_by_process = dict(groups_by_process)

    def sample(self) -> dict[str, float]:
        seconds = group_cpu_seconds(self.groups_by_process.values())
        per_service: dict[str, float] = {}
        for name, group in self.groups_by_process.items():
            service = service_of(name)
            per_service[service] = per_service.get(service, 0.0) + seconds[group]
        return per_service


def cpu_ms_per_unit(
    before: Mapping[str, float], after: Mapping[str, float], units: int | Mapping[str, int]
) -> dict[str, float]:
    """CPU milliseconds per unit of work for each service between two samples, and their sum.
    `units` is one count for every service, or each service's own count (what it finished in
    the window: on an overloaded mesh the services are at different points of the backlog).
    A service that finished nothing: no figure for it, nor a total; never a division by zero."""
    done = {service: units if isinstance(units, int) else units.get(service, 0) for service in after}
    if any(count <= 0 for count in done.values()):
        return {}
    shares = {service: (after[service] - before[service]) * 1000 / done[service] for service in after}
    return {**{service: round(share, 3) for service, share in shares.items()}, "total": round(sum(shares.values()), 3)}


def less_idle(
    before: Mapping[str, float], after: Mapping[str, float], idle_percent: Mapping[str, float], seconds: float
) -> dict[str, float]:
    """`after` less what each service would have used idle over `seconds` (never below
    `before`): the CPU that the work itself took, for `cpu_ms_per_unit`."""
    return {
        service: max(before[service], after[service] - idle_percent.get(service, 0.0) / 100 * seconds)
        for service in after
    }
