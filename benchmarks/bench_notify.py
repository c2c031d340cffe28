"""Notify worker benchmark: `python -m benchmarks.bench_notify` (or `make bench-notify`).

Starts the notify worker alone (`mesh serve notify`, a child process on a private topic prefix
of the shared broker), puts a backlog of input events of the shape the mesh produces on its
input topics, and measures how fast the worker clears it:

- per referral: a `ReferralRequested` referral event (no contact, as `make bench-e2e` sends)
  and an `AssignmentEvent` (a receiving and a sending agency hear of it, and for a client bound
  nowhere the region's coordinator too); a share of the cases also escalates (an agency
  reminder, or an alert for the region's coordinator);
- figures: input events handled per second (wall clock, from the first record produced until
  every expected notification is on `notify.notifications.v1` and the worker has committed
  every input offset), and the notify process's own CPU time (user + system from /proc) per
  input event and per referral. CPU time is far less disturbed by other load on the machine
  than the wall-clock rate; the load average is printed beside both.

`--database sqlite` (the embedded default), `postgres` (a fresh database on the PostgreSQL of
scripts/postgres.sh or TEST_POSTGRES_URL) or `both`. `--profile` records the worker with py-spy
while it works (non-blocking sampling, so the worker is not paused): a flame graph in
bench-results/profiles/notify-<database>.svg and the top functions printed. Figures go to
bench-results/notify.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.common import RESULTS_DIR, isolated_env, write_results
from meshcli.supervisor import Stack, settings_from
from meshkernel import envelope as envelopes
from meshkernel.kafka import connect_admin, prepare_kafka
from meshkernel.kafka_acl import stream_app_id
from meshkernel.topics import ASSIGNMENTS, ESCALATIONS, NOTIFICATIONS, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from services.notify.domain.routing import Assignment, Escalation, route, route_escalation

SENDER = "exit-the-hague"
RECEIVER = "shelter-utrecht"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROFILES = RESULTS_DIR / "profiles"
EXPLANATION = (
    "Den Haag is responsible from now on: help was asked there, and no region has a stronger tie "
    "with the client. Work in Den Haag from March to December 2025 counts as a tie of one year; the "
    "region asks for two. Amsterdam was looked at too: work there since January 2026 is a shorter tie."
)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def load_average() -> float:
    return os.getloadavg()[0]


# --- the input events ------------------------------------------------------------------
def referral_requested(case_id: str) -> events_pb2.EventEnvelope:
    payload = events_pb2.ReferralEvent(
        referral_id=f"ref-{case_id}",
        event_type="ReferralRequested",
        from_status=common_pb2.REFERRAL_STATUS_UNSPECIFIED,
        to_status=common_pb2.REQUESTED,
        version=1,
        actor=SENDER,
        sender=SENDER,
        receiver=RECEIVER,
        languages=["es", "en"],
        asked_in="GM0518",
    )
    return envelopes.new_envelope(case_id=case_id, producer="referral", event_id=str(uuid.uuid4()), referral=payload)


def assignment(case_id: str, *, bound_nowhere: bool) -> events_pb2.EventEnvelope:
    payload = events_pb2.AssignmentEvent(
        referral_id=f"ref-{case_id}",
        responsible_region="GM0518",
        rule="asked_here_bound_nowhere" if bound_nowhere else "asked_here_best_bound",
        bound_nowhere=bound_nowhere,
        sender=SENDER,
        receiver=RECEIVER,
        languages=["es", "en"],
        policy_version="bench",
        service="shelter",
        trigger="ReferralRequested",
        candidates=[events_pb2.CandidateRegion(region="GM0518"), events_pb2.CandidateRegion(region="GM0363")],
        # The worker writes the case's languages and Dutch: a few hundred characters each.
        explanation=dict.fromkeys(("es", "en", "nl"), EXPLANATION),
    )
    return envelopes.new_envelope(case_id=case_id, producer="region", event_id=str(uuid.uuid4()), assignment=payload)


def escalation(case_id: str, level: events_pb2.EscalationLevel.ValueType) -> events_pb2.EventEnvelope:
    rule = "not_acknowledged_in_time" if level == events_pb2.AGENCY_REMINDER else "not_accepted_in_time"
    payload = events_pb2.EscalationEvent(
        escalation_id=envelopes.derived_id("escalation", case_id, rule, str(level)),
        referral_id=f"ref-{case_id}",
        region="GM0518",
        level=level,
        rule=rule,
        late_seconds=60.0,
        agency=RECEIVER,
        history=[events_pb2.StatusAt(status=common_pb2.REQUESTED)],
    )
    now = time.time()
    payload.history[0].at.FromSeconds(int(now) - 7200)
    payload.deadline.FromSeconds(int(now) - 60)
    payload.fired_at.FromSeconds(int(now))
    return envelopes.new_envelope(
        case_id=case_id, producer="region", event_id=payload.escalation_id, escalation=payload
    )


def expected_notifications(envelope: events_pb2.EventEnvelope) -> set[str]:
    """The notification ids the worker must emit for one input (the routing rules' own answer)."""
    kind = envelope.WhichOneof("payload")
    if kind == "assignment":
        assigned = envelope.assignment
        routed = route(
            Assignment(
                event_id=envelope.event_id,
                case_id=envelope.case_id,
                referral_id=assigned.referral_id,
                responsible_region=assigned.responsible_region,
                previous_region=assigned.previous_region,
                handover_to=assigned.handover_to,
                rule=assigned.rule,
                bound_nowhere=assigned.bound_nowhere,
                sender=assigned.sender,
                receiver=assigned.receiver,
                languages=tuple(assigned.languages),
            )
        )
    elif kind == "escalation":
        escalated = envelope.escalation
        routed = route_escalation(
            Escalation(
                escalation_id=escalated.escalation_id,
                case_id=envelope.case_id,
                referral_id=escalated.referral_id,
                region=escalated.region,
                level=events_pb2.EscalationLevel.Name(escalated.level),
                receiver=escalated.agency,
            )
        )
    else:
        routed = []
    return {notification.notification_id for notification in routed}


def make_inputs(prefix: str, referrals: int, escalating: float) -> list[tuple[str, events_pb2.EventEnvelope]]:
    """Per referral its referral event and assignment; every 1/escalating-th case escalates too,
    alternately as an agency reminder and as an alert for the region's coordinator."""
    inputs: list[tuple[str, events_pb2.EventEnvelope]] = []
    every = round(1 / escalating) if escalating > 0 else 0
    for number in range(referrals):
        case_id = f"{prefix}{uuid.uuid4().hex[:12]}"
        inputs.append((REFERRAL_EVENTS.base_name, referral_requested(case_id)))
        inputs.append((ASSIGNMENTS.base_name, assignment(case_id, bound_nowhere=number % 2 == 0)))
        if every and number % every == 0:
            level = events_pb2.AGENCY_REMINDER if (number // every) % 2 == 0 else events_pb2.REGION_COORDINATOR
            inputs.append((ESCALATIONS.base_name, escalation(case_id, level)))
    return inputs


# --- watching the output ---------------------------------------------------------------
class NotificationsSeen(threading.Thread):
    """Collects the notification ids on the output topic; notes when the last expected one came."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
        )
        self.topic = topic
        self.seen: set[str] = set()
        self.sent = Counter[str]()  # records per notification id (a redelivery sends one again)
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.consumer.partitions_for_topic(self.topic):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {self.topic} not found")
            time.sleep(0.2)
        parts = [TopicPartition(self.topic, p) for p in self.consumer.partitions_for_topic(self.topic)]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)

    def run(self) -> None:
        while not self.stopping.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                for record in records:
                    event_id = events_pb2.EventEnvelope.FromString(record.value).event_id
                    with self.lock:
                        self.seen.add(event_id)
                        self.sent[event_id] += 1
        self.consumer.close()

    def count_of(self, ids: set[str]) -> int:
        with self.lock:
            return len(ids & self.seen)


class InputOffsets:
    """How many input records the worker has not committed yet."""

    def __init__(self, config, group: str, topics: list[str]):
        self.admin = connect_admin(config, "bench-notify", give_up_after=10)
        self.consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, group_id=None)
        self.group = group
        self.parts = [TopicPartition(t, p) for t in topics for p in self.consumer.partitions_for_topic(t) or ()]

    def behind(self) -> int:
        committed = self.admin.list_group_offsets(self.group).get(self.group, {})
        ends = self.consumer.end_offsets(self.parts)
        return sum(end - (committed[part].offset if part in committed else 0) for part, end in ends.items())

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


# --- one run -----------------------------------------------------------------------------
def wait_healthy(stack: Stack, web_port: int, log_file: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.crashed():
            raise RuntimeError("notify stopped at start:\n" + log_file.read_text()[-3000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/health", timeout=1) as response:
                if json.load(response)["status"] == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError("notify did not answer /health:\n" + log_file.read_text()[-3000:])


def produce(config, inputs: list[tuple[str, events_pb2.EventEnvelope]]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all", linger_ms=5)
    for base_name, envelope in inputs:
        producer.send(
            config.topic(base_name),
            key=envelope.case_id.encode(),
            value=envelopes.encode(envelope),
            headers=envelopes.kafka_headers(envelope),
        )
    producer.flush()
    producer.close()


class Profiler:
    """py-spy attached to the worker (non-blocking: the worker is never paused): a flame graph
    and the raw collapsed stacks for the summary."""

    def __init__(self, pid: int, name: str):
        self.svg = PROFILES / f"notify-{name}.svg"
        self.raw = PROFILES / f"notify-{name}.txt"
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        PROFILES.mkdir(parents=True, exist_ok=True)
        common = [binary, "record", "--pid", str(pid), "--nonblocking", "--gil", "--rate", "100"]
        self.processes = [
            subprocess.Popen([*common, "-o", str(self.svg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(
                [*common, "--format", "raw", "-o", str(self.raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ),
        ]

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGINT)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def top_functions(raw: Path, count: int = 15) -> list[tuple[str, float, float]]:
    """(function, share of samples with it anywhere on the stack, share where it is the leaf)."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        weight = int(samples)
        frames = [frame.split(" (")[0] + " (" + frame.split(" (")[-1].split(":")[0] + ")" for frame in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        total += weight
        for frame in set(frames):
            inclusive[frame] += weight
        leaf[frames[-1]] += weight
    if not total:
        return []
    return [(name, inclusive[name] / total, leaf[name] / total) for name, _ in leaf.most_common(count)]


def run_once(database: str, options) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as folder_name:
        folder = Path(folder_name)
        databases = None
        extra = {"MESH_TOPIC_PARTITIONS": str(options.partitions)}
        if database == "postgres":
            from benchmarks.scaleout import Databases

            databases = Databases(os.environ.get("TEST_POSTGRES_URL"))
            extra["MESH_NOTIFY_DATABASE_URL"] = databases.create("notify")
        env = isolated_env(folder, **extra)
        env.setdefault("KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
        config = settings_from(env)
        prepare_kafka(config, "bench-notify", give_up_after=60)
        stack = Stack(env=env, log_dir=folder / "logs")
        log_file = folder / "logs" / "notify.log"
        process = stack.start("notify")
        try:
            wait_healthy(stack, config.notify_web_port, log_file)
            return measure(database, config, process.pid, stack, options, log_file)
        finally:
            stack.stop_all()
            if databases is not None:
                databases.drop_all()


def clear(config, watcher: NotificationsSeen, inputs, stack: Stack, timeout: float) -> tuple[set[str], float]:
    """Produce the inputs, wait until the worker cleared them; (expected ids, seconds taken)."""
    expected: set[str] = set()
    for _, envelope in inputs:
        expected |= expected_notifications(envelope)
    group = stream_app_id(config.topic_prefix, "notify")
    input_topics = [config.topic(spec.base_name) for spec in (REFERRAL_EVENTS, ASSIGNMENTS, ESCALATIONS)]
    offsets = InputOffsets(config, group, input_topics)
    try:
        began = time.perf_counter()
        produce(config, inputs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stack.crashed():
                raise RuntimeError("notify stopped during the run")
            if watcher.count_of(expected) == len(expected) and offsets.behind() == 0:
                return expected, time.perf_counter() - began
            time.sleep(0.2)
    finally:
        offsets.close()
    raise TimeoutError(f"only {watcher.count_of(expected)} of {len(expected)} notifications within {timeout:.0f}s")


def measure(database: str, config, pid: int, stack: Stack, options, log_file: Path) -> dict:
    watcher = NotificationsSeen(config.kafka_bootstrap, config.topic(NOTIFICATIONS.base_name))
    watcher.ready()
    watcher.start()
    try:
        print(f"[{database}] warming up ({options.warmup} referrals)")
        clear(config, watcher, make_inputs("warm-", options.warmup, options.escalating), stack, timeout=120)
        inputs = make_inputs("bench-", options.referrals, options.escalating)
        load_before = load_average()
        profiler = Profiler(pid, database) if options.profile else None
        cpu_before = process_cpu_seconds(pid)
        print(f"[{database}] {len(inputs)} input events for {options.referrals} referrals (load {load_before:.1f})")
        expected, seconds = clear(config, watcher, inputs, stack, timeout=options.timeout)
        cpu = process_cpu_seconds(pid) - cpu_before
        load_after = load_average()
        if profiler is not None:
            profiler.stop()
    finally:
        watcher.stopping.set()
        watcher.join(timeout=10)
    repeated = sum(1 for notification_id in expected if watcher.sent[notification_id] > 1)
    figures = {
        "database": database,
        "referrals": options.referrals,
        "input_events": len(inputs),
        "notifications": len(expected),
        "notifications_sent_more_than_once": repeated,
        "seconds": round(seconds, 2),
        "events_per_s": round(len(inputs) / seconds, 1),
        "referrals_per_s": round(options.referrals / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_ms_per_event": round(cpu * 1000 / len(inputs), 3),
        "cpu_ms_per_referral": round(cpu * 1000 / options.referrals, 3),
        "cpu_ms_per_notification": round(cpu * 1000 / len(expected), 3),
        "cores_used": round(cpu / seconds, 2),
        "load_average": [round(load_before, 1), round(load_after, 1)],
    }
    print(
        f"[{database}] {figures['events_per_s']:.0f} events/s ({figures['referrals_per_s']:.0f} referrals/s), "
        f"CPU {figures['cpu_ms_per_event']:.2f} ms/event, {figures['cpu_ms_per_referral']:.2f} ms/referral, "
        f"{figures['cores_used']:.2f} cores; load {load_before:.1f} -> {load_after:.1f}"
    )
    if profiler is not None and profiler.raw.exists():
        top = top_functions(profiler.raw)
        figures["profile"] = {"svg": str(profiler.svg), "top_self": [[n, round(i, 3), round(s, 3)] for n, i, s in top]}
        print(f"[{database}] flame graph: {profiler.svg}\n  self%  total%  function")
        for name, inclusive, own in top:
            print(f"  {own * 100:5.1f}  {inclusive * 100:6.1f}  {name}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=2000, help="referrals in the measured backlog")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--escalating", type=float, default=0.2, help="share of cases that also escalate")
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the backlog to clear")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graphs in bench-results/profiles/")
    options = parser.parse_args(argv)
    databases = ("sqlite", "postgres") if options.database == "both" else (options.database,)
    runs = {database: run_once(database, options) for database in databases}
    path = write_results("notify", {"by_database": runs})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
