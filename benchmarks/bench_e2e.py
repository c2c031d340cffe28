"""Whole-mesh benchmark: `python -m benchmarks.bench_e2e` (or `make bench-e2e`).

Drives CreateReferral calls through the running mesh (referral gRPC -> outbox -> Kafka ->
region -> Kafka -> notify -> Kafka) with an open-loop load (benchmarks/e2e_load.py): each
request has a scheduled send time, latency counts from that time (no coordinated omission) and
requests that could not go out on schedule are counted. It steps the offered rate up and
bisects (benchmarks/e2e_search.py) to find the **sustained rate**: the highest rate whose step
keeps p99 create -> notification under 250 ms, notifies every referral by the end of the
step's drain and sends at least 99 % of its requests on schedule. Each step measures the CPU
time of every service's own processes (benchmarks/e2e_cpu.py) per referral completed. In the
same run it measures the raw Kafka floor (benchmarks/e2e_kafka.py): produce -> consume latency
of records of the same size at the sustained rate, and the raw client's rate. The whole run
keeps within `--budget-seconds` (6 minutes). Figures go to bench-results/e2e.json.

`--rate R --seconds S` runs one step at a fixed rate instead of the search. `--profile` runs
one step at `--profile-rate` with py-spy attached to every service (benchmarks/e2e_profile.py;
flame graphs in bench-results/profiles/). `--replicas N` (`make bench-e2e REPLICAS=N`) runs N
replicas of every service (benchmarks/replicas.py) on one PostgreSQL and spreads the calls over
the referral replicas; `--compare-replicas` (`make bench-e2e-replicas`) runs the mesh with 1
and then with 2 replicas at a fixed rate and prints their rates side by side. On a machine with
few cores the second column shows what replication costs, not a speed-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kafka.admin import NewTopic

from benchmarks.common import RESULTS_DIR, isolated_env, latency_summary, write_results
from benchmarks.e2e_cpu import ServiceCpu, cpu_ms_per_unit, less_idle
from benchmarks.e2e_kafka import Arrivals, raw_kafka_burst, raw_kafka_latency
from benchmarks.e2e_load import LoadProcess, LoadResult, Schedule
from benchmarks.e2e_profile import finish_recording, render, start_recording
from benchmarks.e2e_search import LADDER, P99_LIMIT_MS, RateSearch, StepOutcome, judge, surely_bad
from benchmarks.replicas import ReplicaStack, shared_notify_env
from meshcli.demo import RECEIVER, SENDER
from meshcli.supervisor import kafka_answers, settings_from, start_kafka
from meshkernel.config import PROJECT_ROOT, MeshSettings
from meshkernel.kafka import connect_admin, prepare_kafka
from meshkernel.topics import ASSIGNMENTS, NOTIFICATIONS, REFERRAL_EVENTS

SERVICES = ("referral", "region", "notify")
SERVICE_OUTPUT = {"referral": "referral_event", "region": "assignment", "notify": "notification"}
START_LEAD_S = 0.5  # the generator gets the step this long before its first request is due
RECOVERY_S = 30.0  # after a bad step: how long to let the backlog drain before the next
MIN_STEADY_S = 2.0  # a bad step still runs this long in its steady part: CPU figures need work done
RESERVE_S = 45.0  # the raw floor and the teardown, kept out of the search's time


def main(argv: list[str] | None = None) -> int:
    began = time.monotonic()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress shows in a log too
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=None, help="one step at this rate instead of the search")
    parser.add_argument("--seconds", type=float, default=None, help="length of that step (20)")
    parser.add_argument("--step-seconds", type=float, default=15.0, help="load per search step")
    parser.add_argument("--drain-seconds", type=float, default=8.0, help="wait for the step's notifications")
    parser.add_argument("--budget-seconds", type=float, default=345.0, help="the whole run, start-up included")
    parser.add_argument("--raw-seconds", type=float, default=8.0)
    parser.add_argument("--profile", action="store_true", help="one step with py-spy on every service")
    parser.add_argument("--profile-rate", type=float, default=50.0)
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the referral and notify stores: embedded SQLite (default) or fresh PostgreSQL databases",
    )
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each service (more than 1: PostgreSQL)")
    parser.add_argument("--compare-replicas", action="store_true", help="1 and 2 replicas, rates side by side")
    options = parser.parse_args(argv)
    options.began = began
    if options.compare_replicas:
        options.rate = options.rate or 40.0
        options.seconds = options.seconds or 20.0
    options.seconds = options.seconds or 20.0

    if "KAFKA_BOOTSTRAP" not in os.environ and not kafka_answers():
        start_kafka()
    if not options.compare_replicas:
        results = _run_mesh(options, options.replicas, raw_floor=True)
        print(f"\nelapsed {time.monotonic() - began:.0f} s")
        return 0 if results else 1
    runs = {replicas: _run_mesh(options, replicas, raw_floor=False) for replicas in (1, 2)}
    if not all(runs.values()):
        return 1
    _print_side_by_side(runs)
    path = write_results("e2e-replicas", {"offered_rate_per_s": options.rate, "by_replicas": runs})
    print(f"\nwrote {path}\nelapsed {time.monotonic() - began:.0f} s")
    return 0


def _run_mesh(options, replicas: int, *, raw_floor: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder_name:
        folder = Path(folder_name)
        databases = None
        extra: dict[str, str] = {}
        if replicas > 1 or options.compare_replicas or options.database == "postgres":
            from benchmarks.scaleout import Databases

            databases = Databases(os.environ.get("TEST_POSTGRES_URL"))
            # One database every referral replica shares; notify's replicas share one store:
            # SQLite unless --database postgres.
            notify_url = databases.create("notify") if options.database == "postgres" else None
            extra = {"DATABASE_URL": databases.create("referral"), **shared_notify_env(folder, notify_url)}
        env = isolated_env(folder, **extra)
        if "KAFKA_BOOTSTRAP" not in env:
            env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
        config = settings_from(env)
        prepare_kafka(config, "bench-e2e", give_up_after=60)
        stack = ReplicaStack(env=env, log_dir=folder / "logs", state_root=folder / "replicas")
        load = LoadProcess()
        try:
            stack.start_all(replicas)
            print(f"\n{replicas} replica(s) of each service, started after {time.monotonic() - options.began:.0f} s")
            run = MeshRun(config=config, stack=stack, load=load, options=options, replicas=replicas)
            return run.measure(raw_floor=raw_floor)
        finally:
            load.close()
            stack.stop_all()
            if databases is not None:
                databases.drop_all()


@dataclass
class MeshRun:
    """One running mesh, its load generator and its Kafka reader: steps and their figures."""

    config: MeshSettings
    stack: ReplicaStack
    load: LoadProcess
    options: argparse.Namespace
    replicas: int
    steps: list[dict] = field(default_factory=list)
    sent_cases: list[str] = field(default_factory=list)
    idle_cpu: dict[str, float] = field(default_factory=dict)

    def measure(self, *, raw_floor: bool) -> dict:
        config = self.config
        topics = {
            config.topic(REFERRAL_EVENTS.base_name): "referral_event",
            config.topic(ASSIGNMENTS.base_name): "assignment",
            config.topic(NOTIFICATIONS.base_name): "notification",
        }
        referral_topic = next(iter(topics))
        self.arrivals = Arrivals(config.kafka_bootstrap, topics, size_topic=referral_topic)
        self.arrivals.ready()
        self.arrivals.start()
        self.cpu = ServiceCpu({name: process.pid for name, process in self.stack.processes.items()})
        self.addresses = [self.stack.address(name) for name in self.stack.names("referral")]
        load_average_start = os.getloadavg()
        try:
            if not self._warm_up():
                return {}
            idle = self.idle_cpu = self._idle_cpu()
            if self.options.profile:
                self._profiled_step()
                figures = self._figures_at_fixed_rate()
            elif self.options.rate:
                self.step(self.options.rate, self.options.seconds)
                figures = self._figures_at_fixed_rate()
            else:
                figures = self._search()
            if self.stack.crashed():
                print(f"a service stopped: {self.stack.crashed()}", file=sys.stderr)
                return {}
        finally:
            self.arrivals.stopping.set()
            self.arrivals.join(timeout=10)
        if raw_floor:
            figures["raw_kafka"] = self._raw_floor(figures.get("sustained_rate") or figures["steps"][0]["rate"])
        figures.update(
            stores={
                "referral": "postgres" if self.options.database == "postgres" or self.replicas > 1 else "sqlite",
                "notify": self.options.database,
            },
            idle_cpu_percent_of_a_core=idle,
            replicas=self.replicas,
            load_average={"start": load_average_start, "end": os.getloadavg()},
            git_commit=_git_commit(),
            elapsed_s=round(time.monotonic() - self.options.began, 1),
        )
        _print_summary(figures)
        if not raw_floor:
            return figures
        name = "e2e" if self.replicas == 1 else f"e2e-{self.replicas}-replicas"
        if self.options.database == "postgres":
            name += "-postgres"
        if self.options.profile:
            name += "-profile"
        print(f"\nwrote {write_results(name, figures)}")
        return figures

    def _warm_up(self) -> bool:
        """20 referrals at 5/s; warm once 15 are notified and the rest had 10 s more."""
        print(f"warming up the mesh ({SENDER} -> {RECEIVER})")
        schedule = Schedule(rate=5, seconds=4, start=time.monotonic() + START_LEAD_S, prefix="warm-")
        self.load.begin(self.addresses, schedule)
        notified = self.arrivals.first_seen["notification"]
        deadline = time.monotonic() + 150
        result: LoadResult | None = None
        while time.monotonic() < deadline and not self.stack.crashed():
            if result is None:
                result = self.load.poll(0.5)
                continue
            if sum(1 for case in result.scheduled if case in notified) >= 15:
                self._drain(result, until=time.monotonic() + 10)
                print(f"  warm after {time.monotonic() - self.options.began:.0f} s")
                return True
            time.sleep(0.2)
        seen = {label: len(cases) for label, cases in self.arrivals.first_seen.items()}
        errors = result.errors if result else "?"
        print(f"the mesh did not warm up: seen {seen}, {errors} create errors", file=sys.stderr)
        for name in self.stack.processes:
            log = self.stack.log_dir / f"{name}.log"
            lines = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
            print(f"  {name} (stopped: {name in self.stack.crashed()}): " + " | ".join(lines), file=sys.stderr)
        return False

    def _idle_cpu(self, seconds: float = 3.0) -> dict[str, float]:
        """Each service's CPU with no load (timers, heartbeats, polling), in % of one core: the
        part of a step's CPU per referral that does not scale with the rate."""
        time.sleep(1.0)  # the warm-up's last events handled
        before, began = self.cpu.sample(), time.monotonic()
        time.sleep(seconds)
        after, took = self.cpu.sample(), time.monotonic() - began
        idle = {service: round(100 * (after[service] - before[service]) / took, 1) for service in after}
        print("  idle CPU, % of a core: " + ", ".join(f"{service} {share:g}" for service, share in idle.items()))
        return idle

    def step(self, rate: float, seconds: float, *, profile: bool = False) -> dict:
        """One step of load at `rate`: figures, CPU per referral, and whether it held."""
        index = len(self.steps) + 1
        schedule = Schedule(rate=rate, seconds=seconds, start=time.monotonic() + START_LEAD_S, prefix=f"s{index}-")
        print(f"step {index}: {rate:g} referrals/s for {seconds:g} s", end="", flush=True)
        load_average = os.getloadavg()
        bench_cpu_before = time.process_time()
        whole_step = [(time.monotonic(), self.cpu.sample())]
        self.load.begin(self.addresses, schedule)
        steady_from = schedule.start + min(2.0, seconds / 5)
        steady_until = schedule.start + seconds
        samplers: dict[str, list[subprocess.Popen]] = {}
        cpu_window: list[tuple[float, dict[str, float]]] = []
        stopped_at = None
        result: LoadResult | None = None
        while result is None:
            result = self.load.poll(0.2)
            now = time.monotonic()
            if not cpu_window and now >= steady_from:
                cpu_window.append((now, self.cpu.sample()))
                if profile:
                    samplers = self._start_profiles(steady_until - now)
            if len(cpu_window) == 1 and (now >= steady_until or stopped_at is not None):
                cpu_window.append((now, self.cpu.sample()))
            stoppable = not profile and now >= steady_from + MIN_STEADY_S
            if stopped_at is None and stoppable and surely_bad(self._overdue(schedule, now), schedule.planned):
                self.load.stop.set()
                stopped_at = now
            if now > steady_until + 90 or self.stack.crashed():
                raise RuntimeError(f"the load generator did not finish; stopped services: {self.stack.crashed()}")
        if len(cpu_window) == 1:
            cpu_window.append((time.monotonic(), self.cpu.sample()))
        self.sent_cases.extend(result.scheduled)
        notified = self._drain(result, until=max(time.monotonic(), steady_until) + self.options.drain_seconds)
        whole_step.append((time.monotonic(), self.cpu.sample()))
        if len(cpu_window) < 2 or not self._completed_between(cpu_window[0][0], cpu_window[1][0]):
            cpu_window = whole_step  # stopped before its steady part: the whole step, drain included
        figures = self._step_figures(rate, seconds, result, notified, cpu_window)
        figures["cpu_window"] = "whole step" if cpu_window is whole_step else "steady part"
        figures["load_average"] = load_average
        figures["harness_cpu_s"] = {
            "generator": result.generator_cpu_s,
            "reader": round(time.process_time() - bench_cpu_before, 3),
        }
        if stopped_at is not None:
            figures["stopped_early_after_s"] = round(stopped_at - schedule.start, 1)
        if samplers:
            figures["profiles"] = self._finish_profiles(samplers)
        self.steps.append(figures)
        cpu = figures["cpu_ms_per_referral"]
        print(
            f": p99 -> notification {figures['create_to_notification']['p99_ms']:.0f} ms, "
            f"not on schedule {figures['not_sent_on_schedule']}, "
            f"missing {figures['create_to_notification']['missing']}, "
            f"CPU {cpu.get('total', float('nan')):.1f} ms/referral, load {load_average[0]:.1f}: "
            f"{'good' if figures['good'] else 'bad'} ({figures['verdict']})"
        )
        return figures

    def _overdue(self, schedule: Schedule, now: float) -> int:
        """Requests due more than the p99 limit ago and not notified yet."""
        notified = self.arrivals.first_seen["notification"]
        due = schedule.due_by(now - P99_LIMIT_MS / 1000)
        return sum(1 for index in range(due) if schedule.case_id(index) not in notified)

    def _completed_between(self, start: float, end: float, label: str = "notification") -> int:
        """Referrals (of any step) whose first `label` event arrived between `start` and `end`."""
        return sum(
            1
            for case, seen in list(self.arrivals.first_seen[label].items())
            if start <= seen <= end and not case.startswith("warm-")
        )

    def _drain(self, result: LoadResult, until: float) -> dict[str, float]:
        notified = self.arrivals.first_seen["notification"]
        while time.monotonic() < until and not all(case in notified for case in result.scheduled):
            time.sleep(0.2)
        return {case: notified[case] for case in result.scheduled if case in notified}

    def _step_figures(
        self,
        rate: float,
        seconds: float,
        result: LoadResult,
        notified: dict[str, float],
        cpu_window: list[tuple[float, dict[str, float]]],
    ) -> dict:
        (window_start, cpu_before), (window_end, cpu_after) = cpu_window
        completed_in_window = self._completed_between(window_start, window_end)
        # Each service's CPU per what it finished in the window: referral events for the
        # referral service, assignments for region, notifications for notify.
        finished = {
            service: self._completed_between(window_start, window_end, label)
            for service, label in SERVICE_OUTPUT.items()
        }
        scheduled = result.scheduled
        figures: dict = {
            "rate": rate,
            "seconds": seconds,
            "planned": int(rate * seconds),
            "sent": len(scheduled),
            "not_sent_on_schedule": result.not_on_schedule,
            "worst_send_lateness_ms": result.worst_lateness_ms,
            "errors": result.errors,
        }
        for label in ("referral_event", "assignment", "notification"):
            seen = self.arrivals.first_seen[label] if label != "notification" else notified
            latencies = [(seen[case] - due) * 1000 for case, due in scheduled.items() if case in seen]
            figures[f"create_to_{label}"] = {**latency_summary(latencies), "missing": len(scheduled) - len(latencies)}
        if notified:
            first_due = min(scheduled.values())
            figures["completed_per_s"] = round(len(notified) / max(1e-9, max(notified.values()) - first_due), 1)
            figures["created_per_s"] = round(len(scheduled) / max(1e-9, max(scheduled.values()) - first_due), 1)
        else:
            figures["completed_per_s"] = figures["created_per_s"] = 0.0
        figures["cpu_window_s"] = round(window_end - window_start, 1)
        figures["completed_in_cpu_window"] = completed_in_window
        figures["finished_in_cpu_window"] = finished
        figures["cpu_ms_per_referral"] = cpu_ms_per_unit(cpu_before, cpu_after, finished)
        working = less_idle(cpu_before, cpu_after, self.idle_cpu, window_end - window_start)
        figures["cpu_ms_per_referral_less_idle"] = cpu_ms_per_unit(cpu_before, working, finished)
        good, verdict = judge(
            StepOutcome(
                sent=len(scheduled),
                notified=len(notified),
                not_on_schedule=result.not_on_schedule,
                p99_create_to_notification_ms=figures["create_to_notification"]["p99_ms"],
            )
        )
        if result.stopped_early:
            good, verdict = False, f"stopped early: over 1 % overdue past {P99_LIMIT_MS:g} ms ({verdict})"
        figures.update(good=good, verdict=verdict)
        return figures

    def _search(self) -> dict:
        search = RateSearch()
        step_cost = START_LEAD_S + self.options.step_seconds + self.options.drain_seconds + 2
        while (rate := search.next_rate()) is not None:
            # The first step runs whatever the start-up took: a run always has a figure.
            elapsed = time.monotonic() - self.options.began
            if self.steps and elapsed + step_cost + RESERVE_S > self.options.budget_seconds:
                print(f"time budget reached after {elapsed:.0f} s: the search stops here")
                break
            figures = self.step(rate, self.options.step_seconds)
            search.record(rate, figures["good"])
            if not figures["good"]:
                self._recover()
        sustained = search.sustained_rate
        at = next((s for s in self.steps if s["rate"] == sustained), None)
        if at is None:  # no step held: the figures of the gentlest step, marked as such
            at = min(self.steps, key=lambda s: s["rate"])
        return {
            "sustained_rate": sustained or 0.0,
            **_headline(at),
            "search": {
                "ladder": list(LADDER),
                "step_seconds": self.options.step_seconds,
                "drain_seconds": self.options.drain_seconds,
                "p99_limit_ms": P99_LIMIT_MS,
            },
            "steps": self.steps,
        }

    def _figures_at_fixed_rate(self) -> dict:
        at = self.steps[-1]
        return {"sustained_rate": at["rate"] if at["good"] else 0.0, **_headline(at), "steps": self.steps}

    def _recover(self) -> None:
        """After a bad step, let the backlog drain so the next step starts on an idle mesh."""
        notified = self.arrivals.first_seen["notification"]
        pending = [case for case in self.sent_cases if case not in notified]
        deadline = time.monotonic() + RECOVERY_S
        while pending and time.monotonic() < deadline:
            time.sleep(0.5)
            pending = [case for case in pending if case not in notified]
        if pending:
            print(f"  {len(pending)} referrals of earlier steps still not notified after {RECOVERY_S:g} s")

    def _profiled_step(self) -> None:
        self.step(self.options.profile_rate, self.options.profile_seconds, profile=True)

    def _start_profiles(self, seconds: float) -> dict[str, list[subprocess.Popen]]:
        folder = RESULTS_DIR / "profiles"
        return {
            name: start_recording(process.pid, seconds, folder / f"e2e-{name}.svg")
            for name, process in self.stack.processes.items()
        }

    def _finish_profiles(self, samplers: dict[str, list[subprocess.Popen]]) -> dict:
        summaries = {}
        for name, running in samplers.items():
            output = RESULTS_DIR / "profiles" / f"e2e-{name}.svg"
            summary = finish_recording(name, running, output, timeout=60)
            if summary:
                print("\n" + render(name, summary))
                print(f"  flame graph: {output}")
            summaries[name] = summary
        return summaries

    def _raw_floor(self, rate: float) -> dict:
        """The bare Kafka client on topics of this run's own (read from their start)."""
        config = self.config
        size = self.arrivals.record_size()
        latency_topic, burst_topic = config.topic("bench.raw.latency"), config.topic("bench.raw.burst")
        admin = connect_admin(config, "bench-e2e", give_up_after=30)
        partitions, replication = config.topic_partitions, config.topic_replication
        admin.create_topics([NewTopic(topic, partitions, replication) for topic in (latency_topic, burst_topic)])
        admin.close()
        bootstrap = config.kafka_bootstrap
        print(f"raw Kafka: {rate:g} records/s of {size} bytes for {self.options.raw_seconds:g} s, then a burst")
        latency = raw_kafka_latency(bootstrap, latency_topic, size, rate, self.options.raw_seconds)
        burst = raw_kafka_burst(bootstrap, burst_topic, size, records=10_000)
        return {"record_bytes": size, "latency_at_rate": latency, "burst": burst}


def _headline(step: dict) -> dict:
    return {
        "p99_create_to_notification_ms": step["create_to_notification"]["p99_ms"],
        "cpu_ms_per_referral": step["cpu_ms_per_referral"],
        "cpu_ms_per_referral_less_idle": step["cpu_ms_per_referral_less_idle"],
        "not_sent_on_schedule": step["not_sent_on_schedule"],
        "at_step": {key: step[key] for key in ("rate", "sent", "good", "verdict")},
    }


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _print_summary(figures: dict) -> None:
    print(
        "\n  step  rate/s   sent  late  missing  p50 ms  p99 ms   max ms"
        "   CPU ms/referral (referral region notify = total)"
    )
    for number, step in enumerate(figures["steps"], 1):
        latency, cpu = step["create_to_notification"], step["cpu_ms_per_referral"]
        shares = " ".join(f"{cpu.get(service, float('nan')):5.2f}" for service in SERVICES)
        print(
            f"  {number:4d} {step['rate']:7g} {step['sent']:6d} {step['not_sent_on_schedule']:5d}"
            f" {latency['missing']:8d}"
            f" {latency['p50_ms']:7.0f} {latency['p99_ms']:7.0f} {latency['max_ms']:8.0f}"
            f"   {shares} = {cpu.get('total', float('nan')):5.2f}  {'good' if step['good'] else 'bad'}"
        )
    cpu = figures["cpu_ms_per_referral"]
    print(
        f"\n  sustained rate: {figures['sustained_rate']:g} referrals/s "
        f"(p99 create -> notification {figures['p99_create_to_notification_ms']:.0f} ms, limit {P99_LIMIT_MS:g} ms)"
    )
    print(
        "  CPU per referral at that rate: "
        + ", ".join(f"{service} {cpu.get(service, float('nan')):.2f} ms" for service in SERVICES)
        + f"; total {cpu.get('total', float('nan')):.2f} ms"
    )
    working = figures["cpu_ms_per_referral_less_idle"]
    print(
        "  the same less each service's idle CPU: "
        + ", ".join(f"{service} {working.get(service, float('nan')):.2f} ms" for service in SERVICES)
        + f"; total {working.get('total', float('nan')):.2f} ms"
    )
    at = next((s for s in figures["steps"] if s["rate"] == figures["at_step"]["rate"]), figures["steps"][-1])
    for label in ("assignment", "notification"):
        latency = at[f"create_to_{label}"]
        print(
            f"  create -> {label:13s} p50 {latency['p50_ms']:7.1f}  p90 {latency['p90_ms']:7.1f}  "
            f"p99 {latency['p99_ms']:7.1f}  max {latency['max_ms']:7.1f} ms"
        )
    raw = figures.get("raw_kafka")
    if raw:
        latency = raw["latency_at_rate"]
        print(
            f"  raw Kafka floor, {raw['record_bytes']} B records at {latency['rate_per_s']:g}/s: "
            f"p50 {latency['p50_ms']:.1f}  p90 {latency['p90_ms']:.1f}  p99 {latency['p99_ms']:.1f}  "
            f"max {latency['max_ms']:.1f} ms; raw client rate {raw['burst']['produce_to_consume_rate_per_s']:g}/s"
        )
    start, end = figures["load_average"]["start"], figures["load_average"]["end"]
    print(f"  load average: {start[0]:.1f} at the start, {end[0]:.1f} at the end ({os.cpu_count()} cores)")


def _print_side_by_side(runs: dict[int, dict]) -> None:
    print(f"\n  {'':40s}{'1 replica':>14s}{'2 replicas':>14s}")

    def at(run: dict) -> dict:
        step: dict = run["steps"][-1]
        return step

    rows = (
        ("created per second", lambda r: f"{at(r)['created_per_s']:.1f}"),
        ("completed per second (notified)", lambda r: f"{at(r)['completed_per_s']:.1f}"),
        ("create -> notification p50 ms", lambda r: f"{at(r)['create_to_notification']['p50_ms']:.0f}"),
        ("create -> notification p99 ms", lambda r: f"{at(r)['create_to_notification']['p99_ms']:.0f}"),
        ("not notified within the run", lambda r: str(at(r)["create_to_notification"]["missing"])),
        ("CPU ms per referral (all services)", lambda r: f"{at(r)['cpu_ms_per_referral'].get('total', 0):.2f}"),
    )
    for label, show in rows:
        print(f"  {label:40s}{show(runs[1]):>14s}{show(runs[2]):>14s}")
    cores = os.cpu_count() or 1
    print(
        f"\n  {cores} core(s): every replica shares them, so the second column shows the cost of running "
        "replicas (processes, claims, rebalancing), not a speed-up; that needs more machines."
    )


if __name__ == "__main__":
    sys.exit(main())
