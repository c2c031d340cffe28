"""Escalation in the real region worker: `python -m benchmarks.bench_escalation_worker [--cases N]`
(`make bench-escalation-worker`).

N open cases with a pending deadline each are held by one real region worker (`mesh serve
region`, Faust tables with changelogs, the RocksDB store), on a private Kafka broker of its own
(benchmarks/private_infra.py). Measured, and written to bench-results/escalation-worker.json:

1. **recovery from the changelogs**: the N cases are written onto the worker's two changelog
   topics, each record encoded exactly as the worker writes it (a `cases` record and an
   `escalation-state` record, keyed and partitioned like the worker's; the same shortcut as
   benchmarks/bench_region_recovery.py: producing N referral events through the worker would
   take hours on a 2-core machine); then the worker is started and timed until `GET /ready`
   (every table recovered, the stall detector loaded). Their deadlines are due 2 to 30 days
   later, so none fires during the run: they are the open deadlines the worker holds;
2. **idle CPU**: the worker's own CPU time (/proc/<pid>/stat) over a quiet minute with all N
   loaded and nothing due, as % of one core;
3. **firing lateness**: F referral requests are sent through the worker's input topic (the
   real path: decision, assignment, stall-detector state, changelog), timed (`occurred_at`) so
   that their `not_acknowledged` deadlines fall due spread over a window after a lead time. Each
   escalation read back from the escalations topic gives `fired_at - deadline` (the worker's
   own figure) and `sent - deadline` (the Kafka record's timestamp, set when the escalation was
   handed to the producer after its outbox record was durable): p50/p99/max;
4. **recovery after SIGKILL**: G more requests are sent with deadlines due just after the
   kill; the worker is killed (SIGKILL), started again and timed to ready (after a crash the
   local store is not trusted and every table is rebuilt from its changelog), then to the
   first and the last of the G escalations, which came due while no worker ran (fired late,
   on recovery). None may be missing, none may arrive twice with different content.

Peak RSS (VmHWM, /proc/<pid>/status) is taken per worker process, and VmRSS sampled twice a
second, over the whole run. The benchmark policy is the shipped one with only
`not_acknowledged` enabled (AGENCY_REMINDER: it does not climb), 5 minutes around the clock,
so one request is exactly one deadline and one escalation. CPU figures are process CPU time
(far less sensitive to a shared machine than wall-clock figures); the load average is printed
beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from benchmarks.bench_region import requested_event
from benchmarks.bench_region_recovery import open_case_records, partition_of, ready
from benchmarks.common import isolated_env, latency_summary, write_results
from benchmarks.private_infra import PrivateKafka
from meshcli.supervisor import Stack, settings_from
from meshkernel import envelope as envelopes
from meshkernel.config import PROJECT_ROOT, MeshSettings
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ASSIGNMENTS, ESCALATIONS, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2
from services.region.adapters.streams import ESCALATION_TABLE, TABLE
from services.region.domain.escalation import EscalationEngine, build_escalation_policy
from services.region.domain.escalation.policy import DEFAULT_POLICY_PATH, RULES

AFTER_SECONDS = 300.0  # not_acknowledged in the benchmark policy, around the clock
DAY = 86_400.0
HELD_FROM, HELD_UNTIL = 2 * DAY, 30 * DAY  # the held cases' deadlines: due this far ahead
PROFILES = PROJECT_ROOT / "bench-results" / "profiles"
FACTS = common_pb2.BindingFacts(
    residence=[common_pb2.Period(municipality="GM0014", from_date="2015-01-01", to_date="2026-10-01", registered=True)],
    work=[common_pb2.Period(municipality="GM0363", from_date="2025-01-01")],
)


# --------------------------------------------------------------------------- policy and records


def policy_data(after: float) -> dict:
    """The shipped policy with only `not_acknowledged` (which does not climb), `after` seconds."""
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))
    for name in RULES:
        if name in data["rules"]:
            data["rules"][name]["enabled"] = name == "not_acknowledged"
    data["rules"]["not_acknowledged"].update(after=f"{int(after)}s", working_hours=False)
    return data


def write_policy(folder: Path) -> Path:
    path = folder / "escalation-bench.yaml"
    path.write_text(yaml.safe_dump(policy_data(AFTER_SECONDS)), encoding="utf-8")
    return path


def changelog_topics(config: MeshSettings) -> tuple[str, str]:
    app_id = f"{config.topic_prefix}referral-mesh-region"
    cases, state = (f"{app_id}-{name}-changelog" for name in (TABLE, ESCALATION_TABLE))
    return cases, state


def create_changelogs(config: MeshSettings) -> None:
    """The worker's changelog topics, as Faust declares them (compacted, one per table)."""
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    name, config.topic_partitions, config.topic_replication, topic_configs={"cleanup.policy": "compact"}
                )
                for name in changelog_topics(config)
            ]
        )
    finally:
        admin.close()


def write_held_cases(config: MeshSettings, count: int, seed: int) -> float:
    """`count` open cases onto both changelogs, as the worker writes them, each with one pending
    deadline due 2 to 30 days from now (requests made over the last 28 days, 30-day deadline).
    Returns the seconds it took."""
    cases_topic, state_topic = changelog_topics(config)
    held = build_escalation_policy(policy_data(HELD_UNTIL), "benchmark-held")
    engine = EscalationEngine(held)
    rng = random.Random(seed)
    producer = KafkaProducer(
        bootstrap_servers=config.kafka_bootstrap, linger_ms=20, batch_size=512 * 1024, compression_type=None
    )
    started = time.monotonic()
    now = time.time()
    now_text = datetime.now(UTC).isoformat()
    for index in range(count):
        case_id = f"held-{index:08d}"
        partition = partition_of(case_id, config.topic_partitions)
        requested_at = now - rng.random() * (HELD_UNTIL - HELD_FROM)
        key, case_value, state_value = open_case_records(engine, case_id, partition, requested_at, now_text)
        producer.send(cases_topic, key=key, value=case_value, partition=partition)
        producer.send(state_topic, key=key, value=state_value, partition=partition)
        if index and index % 100_000 == 0:
            print(f"    {index:,} cases written", flush=True)
    producer.flush()
    producer.close()
    return time.monotonic() - started


def send_requests(config: MeshSettings, prefix: str, dues: list[float]) -> dict[str, float]:
    """One request per due time (its deadline); returns case id -> due."""
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, linger_ms=5)
    topic = config.topic(REFERRAL_EVENTS.base_name)
    wanted = {}
    for index, due in enumerate(dues):
        case_id = f"{prefix}-{index:06d}"
        wanted[case_id] = due
        producer.send(topic, key=case_id.encode(), value=requested_event(case_id, due - AFTER_SECONDS))
    producer.flush()
    producer.close()
    return wanted


# --------------------------------------------------------------------------- watching


@dataclass
class Fired:
    escalation_id: str
    deadline: float
    fired_at: float
    sent: float  # the Kafka record's timestamp
    read: float  # when this benchmark read it
    late: bool


@dataclass
class EscalationReader:
    """Reads the escalations topic in a thread (case id -> what fired, every copy), and the
    assignments topic (the case ids the worker has decided, so it holds their deadlines)."""

    config: MeshSettings
    fired: dict[str, list[Fired]] = field(default_factory=dict)
    assigned: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.escalations = self.config.topic(ESCALATIONS.base_name)
        self.consumer = KafkaConsumer(
            self.escalations,
            self.config.topic(ASSIGNMENTS.base_name),
            bootstrap_servers=self.config.kafka_bootstrap,
            group_id=f"bench-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                for record in records:
                    if record.topic != self.escalations:
                        self.assigned.add(record.key.decode())
                        continue
                    envelope = envelopes.decode(record.value, expect="escalation")
                    e = envelope.escalation
                    headers = dict(record.headers or [])
                    self.fired.setdefault(envelope.case_id, []).append(
                        Fired(
                            escalation_id=e.escalation_id,
                            deadline=e.deadline.seconds + e.deadline.nanos / 1e9,
                            fired_at=e.fired_at.seconds + e.fired_at.nanos / 1e9,
                            sent=record.timestamp / 1000.0,
                            read=now,
                            late=headers.get("escalation-late") == b"true",
                        )
                    )

    def first_of(self, case_ids) -> list[Fired]:
        return [self.fired[c][0] for c in case_ids if c in self.fired]

    def wait_for(self, case_ids, timeout: float, seen: str = "fired") -> bool:
        """Until every case has an escalation (`seen="fired"`) or an assignment ("assigned")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(c in getattr(self, seen) for c in case_ids):
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.consumer.close()


def _proc_status(pid: int, field_name: str) -> float:
    """A /proc/<pid>/status field in MiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MemoryWatch:
    """Samples a process's VmRSS twice a second; keeps the peak (and VmHWM at the end)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.hwm = pid, 0.0, 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        try:
            self.peak = max(self.peak, _proc_status(self.pid, "VmRSS"))
            self.hwm = max(self.hwm, _proc_status(self.pid, "VmHWM"))
        except OSError:
            pass

    def current(self) -> float:
        try:
            return _proc_status(self.pid, "VmRSS")
        except OSError:
            return float("nan")

    def stop(self) -> float:
        self.sample()
        self._stop.set()
        self.thread.join(timeout=2)
        return max(self.peak, self.hwm)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Profiler:
    """py-spy record of a process while it does one thing (a flame graph under bench-results/profiles)."""

    def __init__(self, pid: int, name: str, profile: str):
        self.process = None
        if not profile:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        PROFILES.mkdir(parents=True, exist_ok=True)
        suffix = "svg" if profile == "flamegraph" else "txt"
        self.path = PROFILES / f"escalation-worker-{name}.{suffix}"
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(pid), "--rate", "50", "--format", profile, "--output", str(self.path)]
            + ["--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        print(f"    profile: {self.path.relative_to(PROJECT_ROOT)}", flush=True)


# --------------------------------------------------------------------------- the run


def start_and_wait(stack: Stack, port: int, timeout: float, name: str, profile: str) -> tuple[int, float, float]:
    """Start the worker, wait for ready; returns (pid, seconds, CPU seconds) to ready."""
    started = time.monotonic()
    pid = stack.start("region").pid
    profiler = Profiler(pid, name, profile)
    try:
        while not ready(port):
            if stack.crashed():
                raise RuntimeError("the region worker stopped while recovering (see its log)")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"the region worker was not ready within {timeout:.0f} s")
            time.sleep(0.2)
        return pid, time.monotonic() - started, cpu_seconds(pid)
    finally:
        profiler.stop()


def lateness(fired: list[Fired]) -> dict:
    return {
        "fired_at_minus_deadline": latency_summary([(f.fired_at - f.deadline) * 1000 for f in fired]),
        "sent_minus_deadline": latency_summary([(f.sent - f.deadline) * 1000 for f in fired]),
        "marked_late": sum(f.late for f in fired),
    }


def duplicates(reader: EscalationReader) -> dict:
    """Copies of one escalation id: allowed (at least once), but only with the same content."""
    copies = differing = 0
    for items in reader.fired.values():
        by_id: dict[str, set] = {}
        for f in items:
            by_id.setdefault(f.escalation_id, set()).add((f.deadline, f.fired_at))
        copies += len(items) - len(by_id)
        differing += sum(1 for contents in by_id.values() if len(contents) > 1)
    return {"extra_copies": copies, "ids_with_differing_content": differing}


def run(args: argparse.Namespace, folder: Path, kafka: PrivateKafka) -> dict:
    env = isolated_env(
        folder / "mesh",
        KAFKA_BOOTSTRAP=kafka.bootstrap,
        MESH_REGION_TABLE_STORE="rocksdb",
        MESH_ESCALATION_POLICY_PATH=str(write_policy(folder)),
    )
    config = settings_from(env)
    prepare_kafka(config, "bench-escalation-worker", give_up_after=120)
    create_changelogs(config)
    figures: dict = {"cases": args.cases, "partitions": config.topic_partitions, "load_average": {}}

    print(f"writing {args.cases:,} open cases onto the worker's changelogs ...", flush=True)
    written = write_held_cases(config, args.cases, args.seed)
    figures["write_changelogs_seconds"] = round(written, 1)
    print(f"  written in {written:.1f} s", flush=True)

    reader = EscalationReader(config)
    reader.start()
    stack = Stack(env=env, log_dir=folder / "logs")
    try:
        # 1. recovery from the changelogs (an empty local store: a first start)
        figures["load_average"]["before_start"] = load_average()
        pid, seconds, cpu = start_and_wait(stack, config.region_web_port, args.timeout, "recovery", args.profile)
        memory = MemoryWatch(pid)
        figures["recovery_from_changelogs"] = {"seconds_to_ready": round(seconds, 1), "cpu_seconds": round(cpu, 1)}
        figures["rss_mib_after_recovery"] = round(memory.current(), 1)
        print(
            f"  ready after {seconds:.1f} s ({cpu:.1f} s CPU), RSS {memory.current():,.0f} MiB, load {load_average()}",
            flush=True,
        )

        # 2. idle: everything loaded, nothing due
        time.sleep(args.settle)
        before, began = cpu_seconds(pid), time.monotonic()
        time.sleep(args.idle)
        idle = 100 * (cpu_seconds(pid) - before) / (time.monotonic() - began)
        figures["idle_cpu_pct_of_core"] = round(idle, 2)
        figures["load_average"]["idle"] = load_average()
        figures["rss_mib_idle"] = round(memory.current(), 1)
        print(f"  idle over {args.idle:.0f} s: {idle:.2f} % of a core, load {load_average()}", flush=True)

        # 3. firing: deadlines due over a window after a lead time, through the real input path
        start = time.time() + args.lead
        dues = [start + args.window * i / args.firing for i in range(args.firing)]
        before, began = cpu_seconds(pid), time.monotonic()
        profiler = Profiler(pid, "firing", args.profile)
        wanted = send_requests(config, "fire", dues)
        complete = reader.wait_for(wanted, args.lead + args.window + args.grace)
        profiler.stop()
        fired = reader.first_of(wanted)
        busy = cpu_seconds(pid) - before
        figures["firing"] = {
            "requests": len(wanted),
            "escalations": len(fired),
            "missing": len(wanted) - len(fired),
            "window_seconds": args.window,
            "cpu_seconds": round(busy, 1),
            "cpu_ms_per_request_and_escalation": round(1000 * busy / max(1, len(wanted)), 2),
            **lateness(fired),
        }
        figures["load_average"]["firing"] = load_average()
        summary = figures["firing"]["sent_minus_deadline"]
        print(
            f"  fired {len(fired)}/{len(wanted)}{'' if complete else ' (timed out)'}: lateness (sent - deadline) "
            f"p50 {summary['p50_ms']:.0f} ms, p99 {summary['p99_ms']:.0f} ms, max {summary['max_ms']:.0f} ms; "
            f"{busy:.1f} s CPU, load {load_average()}",
            flush=True,
        )

        # 4. SIGKILL, restart, recovery; deadlines that came due while no worker ran
        kill_at = time.time() + args.lead
        dues = [kill_at + 2 + args.down_window * i / args.after_kill for i in range(args.after_kill)]
        overdue = send_requests(config, "overdue", dues)
        # the worker holds their deadlines once it decided them (the assignment is sent just
        # before the stall detector's record is written: a second's margin)
        if not reader.wait_for(overdue, args.lead - 1, seen="assigned"):
            print("  (not every overdue request was decided before the kill)", flush=True)
        time.sleep(1.0)
        time.sleep(max(0.0, kill_at - time.time()))
        figures["rss_mib_peak_first_run"] = round(memory.stop(), 1)
        stack.kill("region")
        killed = time.time()
        figures["load_average"]["before_restart"] = load_average()
        pid, seconds, cpu = start_and_wait(stack, config.region_web_port, args.timeout, "restart", args.profile)
        restarted = killed + seconds
        memory = MemoryWatch(pid)
        reader.wait_for(overdue, args.grace + args.down_window)
        late = reader.first_of(overdue)
        figures["recovery_after_sigkill"] = {
            "seconds_to_ready": round(seconds, 1),
            "cpu_seconds_to_ready": round(cpu, 1),
            "overdue_deadlines": len(overdue),
            "overdue_fired": len(late),
            "missing": len(overdue) - len(late),
            "seconds_kill_to_first_overdue_escalation": round(min(f.sent for f in late) - killed, 1) if late else None,
            "seconds_kill_to_last_overdue_escalation": round(max(f.sent for f in late) - killed, 1) if late else None,
            "seconds_ready_to_last_overdue_escalation": round(max(f.sent for f in late) - restarted, 1)
            if late
            else None,
            **lateness(late),
        }
        figures["load_average"]["after_restart"] = load_average()
        figures["rss_mib_peak_after_restart"] = round(memory.stop(), 1)
        print(
            f"  SIGKILL -> ready again after {seconds:.1f} s ({cpu:.1f} s CPU); {len(late)}/{len(overdue)} overdue "
            f"escalations, last {figures['recovery_after_sigkill']['seconds_kill_to_last_overdue_escalation']} s "
            f"after the kill; load {load_average()}",
            flush=True,
        )
        figures["held_cases_fired"] = sum(1 for c in reader.fired if c.startswith("held-"))
        figures["duplicates"] = duplicates(reader)
    finally:
        stack.stop_all()
        reader.stop()
    return figures


def targets(figures: dict) -> dict:
    peak = max(figures.get("rss_mib_peak_first_run", 0), figures.get("rss_mib_peak_after_restart", 0))
    p99 = figures["firing"]["sent_minus_deadline"]["p99_ms"]
    met = {
        "p99_firing_lateness_below_1s": p99 < 1000 and figures["firing"]["missing"] == 0,
        "peak_rss_below_1_5_gib": peak < 1536,
        "idle_cpu_below_5_pct": figures["idle_cpu_pct_of_core"] < 5.0,
        "recovery_after_sigkill_timed": figures["recovery_after_sigkill"]["missing"] == 0,
    }
    figures["rss_mib_peak"] = round(peak, 1)
    return met


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="open cases held (1,000,000 for the target)")
    parser.add_argument("--firing", type=int, default=600, help="requests whose deadlines fall due in the run")
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which those deadlines fall due")
    parser.add_argument("--lead", type=float, default=30.0, help="seconds from sending to the first deadline")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the quiet minute")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after ready before the quiet minute")
    parser.add_argument("--after-kill", type=int, default=100, help="deadlines due while the worker is down")
    parser.add_argument("--down-window", type=float, default=10.0, help="seconds over which those fall due")
    parser.add_argument("--grace", type=float, default=120.0, help="seconds to wait for the last escalation")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for one recovery")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="flamegraph",
        default="",
        choices=["flamegraph", "raw"],
        help="py-spy profiles of recovery and firing under bench-results/profiles (raw: collapsed stacks)",
    )
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="escalation-worker-"))
    kafka = PrivateKafka()
    print(f"private broker on {kafka.bootstrap} (load average {load_average()})", flush=True)
    kafka.start()
    try:
        figures = run(args, folder, kafka)
    finally:
        kafka.remove()
        shutil.rmtree(folder, ignore_errors=True)
    figures["targets_met"] = targets(figures)
    path = write_results("escalation-worker", figures)
    print(json.dumps(figures, indent=2))
    print(f"written to {path.relative_to(PROJECT_ROOT)}")
    return figures


if __name__ == "__main__":
    main()
