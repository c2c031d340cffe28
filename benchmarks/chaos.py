"""Faults under load: `python -m benchmarks.chaos` (or `make chaos`).

A private mesh (its own Kafka broker and PostgreSQL on free ports, its own data folders, the
three services in MESH_MODE=local with the demo escalation policy's short deadlines) takes a
steady stream of CreateReferral calls through the real gRPC API while, one after the other:
the referral, region and notify services are killed with SIGKILL, the broker is killed, the
PostgreSQL server is killed, and the broker is stopped with SIGSTOP for 30 s (a hung broker,
not a dead one) and then continued. Killed processes are started again by the harness, as an
orchestrator would. A client retries a failed call with the same request key, as agencies'
systems do. Then the load stops, the mesh settles, and benchmarks/chaos_checks.py compares
what was accepted with what the databases and topics hold.

Prints `faults: N, referrals: M, lost: 0, duplicated: 0, recovered in: ...` and writes the
figures to bench-results/chaos.json. Exits 1 when anything was lost or duplicated, a stranded
outbox row or consumer lag remains, or a fault did not recover. `--quick` is the CI size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from kafka import KafkaConsumer, TopicPartition

from benchmarks.chaos_checks import ASSIGNMENT_TEMPLATES, Findings, check, consumer_lag, faust_groups
from benchmarks.common import isolated_env, write_results
from benchmarks.private_infra import PrivateKafka, PrivatePostgres
from meshcli.demo import DEMO_ESCALATION_POLICY, SENDER, demo_request
from meshcli.supervisor import Stack, settings_from, wait_for
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import NOTIFICATIONS
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc
from services.referral.adapters.identity import DEV_AGENCY_HEADER

SERVICES = ("referral", "region", "notify")
FAULTS = ("kill referral", "kill region", "kill notify", "kill broker", "kill postgres", "stop broker")


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def say_findings(findings: Findings) -> None:
    """The examples and the checked counts behind a run's summary line."""
    for example in findings.examples:
        say(f"  {example}")
    say(
        f"stranded outbox rows: {findings.stranded_outbox_rows}, consumer lag: {findings.lag}, "
        f"escalations checked: {findings.escalations_checked}, notifications checked: "
        f"{findings.notifications_checked}, redelivered (same id): {dict(findings.redelivered)}"
    )


class Load(threading.Thread):
    """CreateReferral at a steady rate; each call retried with its request key until it succeeds."""

    def __init__(self, address: str, rate: float, prefix: str, give_up_after: float = 120.0):
        super().__init__(daemon=True)
        self.address, self.rate, self.prefix, self.give_up_after = address, rate, prefix, give_up_after
        self.accepted: dict[str, float] = {}  # case id -> time its first attempt began
        self.failed_attempts = 0
        self.abandoned: list[str] = []
        self.offered = 0
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=16)
        self.lock = threading.Lock()

    def figures(self) -> dict:
        """What was offered and what became of it, for the results file."""
        return {
            "offered": self.offered,
            "accepted": len(self.accepted),
            "failed_attempts_retried": self.failed_attempts,
            "abandoned": len(self.abandoned),
        }

    def run(self) -> None:
        begin = time.monotonic()
        while not self.stopping.is_set():
            delay = begin + self.offered / self.rate - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
                continue
            case_id = f"{self.prefix}{self.offered:06d}"
            self.offered += 1
            self.pool.submit(self._create, case_id)

    def _create(self, case_id: str) -> None:
        first_attempt = time.time()
        request = demo_request(case_id)
        channel = grpc.insecure_channel(self.address)
        stub = api_grpc.ReferralServiceStub(channel)
        try:
            while time.time() - first_attempt < self.give_up_after:
                try:
                    stub.CreateReferral(request, metadata=((DEV_AGENCY_HEADER, SENDER),), timeout=5)
                    with self.lock:
                        self.accepted[case_id] = first_attempt
                    return
                except grpc.RpcError:
                    with self.lock:
                        self.failed_attempts += 1
                    time.sleep(0.5)
            with self.lock:
                self.abandoned.append(case_id)
        finally:
            channel.close()

    def finish(self) -> None:
        self.stopping.set()
        self.join()
        self.pool.shutdown(wait=True)


class NotificationWatch(threading.Thread):
    """When each case's assignment notifications were first seen (survives broker faults)."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.seen: dict[str, set[str]] = {}
        self.complete_at: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=30000,
        )
        partitions = None
        while not self.stopping.is_set():
            try:
                if partitions is None:
                    found = consumer.partitions_for_topic(self.topic)
                    if not found:
                        time.sleep(0.5)
                        continue
                    partitions = [TopicPartition(self.topic, p) for p in found]
                    consumer.assign(partitions)
                    consumer.seek_to_beginning(*partitions)
                for batch in consumer.poll(timeout_ms=200).values():
                    for record in batch:
                        self._note(record.value)
            except Exception:  # a broker fault: the consumer reconnects on its next poll
                time.sleep(0.5)
        consumer.close()

    def _note(self, value: bytes) -> None:
        try:
            envelope = decode(value, expect="notification")
        except MalformedEvent:
            return
        templates = self.seen.setdefault(envelope.case_id, set())
        templates.add(envelope.notification.template)
        if templates >= ASSIGNMENT_TEMPLATES:
            self.complete_at.setdefault(envelope.case_id, time.time())


class Keeper(threading.Thread):
    """Starts again any service that exited by itself (counted: the faults should not cause any)."""

    def __init__(self, stack: Stack):
        super().__init__(daemon=True)
        self.stack = stack
        self.lock = threading.Lock()
        self.unplanned_restarts: dict[str, int] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            with self.lock:
                for service in self.stack.crashed():
                    say(
                        f"  {service} exited by itself (code {self.stack.processes[service].returncode}); "
                        "starting it again"
                    )
                    self.unplanned_restarts[service] = self.unplanned_restarts.get(service, 0) + 1
                    self.stack.processes.pop(service)
                    self.stack.start(service)

    def restart(self, service: str) -> None:
        with self.lock:
            self.stack.kill(service)
            self.stack.start(service)


def inject(fault: str, keeper: Keeper, kafka: PrivateKafka, postgres: PrivatePostgres, pause: float) -> None:
    target = fault.split()[1]
    if target in SERVICES:
        keeper.restart(target)
    elif fault == "kill broker":
        kafka.kill()
        time.sleep(2)
        kafka.start()
    elif fault == "kill postgres":
        postgres.kill()
        time.sleep(2)
        postgres.start()
    elif fault == "stop broker":
        kafka.pause()
        time.sleep(pause)
        kafka.resume()


def recovery_seconds(load: Load, watch: NotificationWatch, since: float, timeout: float) -> float | None:
    """From `since` until a referral first tried after it has all its assignment notifications."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with load.lock:
            fresh = [case for case, began in load.accepted.items() if began >= since]
        done = [watch.complete_at[case] for case in fresh if case in watch.complete_at]
        if done:
            return round(min(done) - since, 1)
        time.sleep(0.5)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2.0, help="CreateReferral calls per second")
    parser.add_argument("--between", type=float, default=10.0, help="seconds of steady load between faults")
    parser.add_argument("--pause", type=float, default=30.0, help="seconds the broker stays stopped")
    parser.add_argument("--recover-within", type=float, default=120.0)
    parser.add_argument("--settle-within", type=float, default=150.0)
    parser.add_argument("--results", default="chaos", help="name of the bench-results/*.json file")
    options = parser.parse_args(argv)

    started = time.monotonic()
    kafka, postgres = PrivateKafka(), PrivatePostgres()
    with tempfile.TemporaryDirectory(prefix="chaos-") as folder:
        stack: Stack | None = None
        try:
            say(f"private Kafka on {kafka.bootstrap}, private PostgreSQL on 127.0.0.1:{postgres.port}")
            kafka.start()
            postgres.start()
            env = isolated_env(
                Path(folder),
                KAFKA_BOOTSTRAP=kafka.bootstrap,
                DATABASE_URL=postgres.url,
                MESH_ESCALATION_POLICY_PATH=str(DEMO_ESCALATION_POLICY),
                MESH_LOG_LEVEL="INFO",
                # Few partitions: a broker killed outright recovers every log at start.
                MESH_TOPIC_PARTITIONS="2",
            )
            config = settings_from(env)
            prepare_kafka(config, "chaos", give_up_after=60)
            stack = Stack(env=env, log_dir=Path(folder) / "logs")
            for service in SERVICES:
                stack.start(service)
            result = _run(options, config, stack, kafka, postgres, started)
            if result != 0:
                say(f"service logs were in {folder}/logs; last lines:")
                for service in SERVICES:
                    lines = (Path(folder) / "logs" / f"{service}.log").read_text(errors="replace").splitlines()
                    for line in lines[-5:]:
                        print(f"  {service}: {line[:300]}")
            return result
        finally:
            if stack is not None:
                stack.stop_all()
            kafka.remove()
            postgres.remove()


def _run(options, config, stack: Stack, kafka: PrivateKafka, postgres: PrivatePostgres, started: float) -> int:
    keeper = Keeper(stack)
    keeper.start()
    watch = NotificationWatch(config.kafka_bootstrap, config.topic(NOTIFICATIONS.base_name))
    watch.start()
    prefix = f"chaos-{uuid.uuid4().hex[:8]}-"
    load = Load(config.referral_grpc_address, options.rate, prefix)
    load_began = time.time()
    load.start()
    say(f"steady load: {options.rate:g} referrals/s; waiting for the first notifications")
    warm = recovery_seconds(load, watch, load_began, timeout=180)
    if warm is None:
        say("the mesh never delivered a notification; giving up")
        load.finish()
        return 1

    recovered: dict[str, float | None] = {}
    fault_ended: dict[str, float] = {}
    for fault in FAULTS:
        time.sleep(options.between)
        say(f"fault: {fault}")
        inject(fault, keeper, kafka, postgres, options.pause)
        fault_ended[fault] = time.time()
        recovered[fault] = recovery_seconds(load, watch, fault_ended[fault], options.recover_within)
        say(
            f"  recovered in {recovered[fault]} s"
            if recovered[fault] is not None
            else f"  not yet recovered after {options.recover_within:g} s; going on (measured again at the end)"
        )
    time.sleep(options.between)
    load.finish()
    say(
        f"load stopped: {load.offered} offered, {len(load.accepted)} accepted, "
        f"{load.failed_attempts} failed attempts retried, {len(load.abandoned)} abandoned"
    )

    settle_start = time.monotonic()
    last_accepted = max(load.accepted.values())

    def settled() -> bool:
        notified = all(case in watch.complete_at for case in load.accepted)
        deadlines_due = time.time() > last_accepted + 25 + 25  # the demo policy's second deadline, and margin
        if not (notified and deadlines_due):
            return False
        try:
            return not any(consumer_lag(config, faust_groups(config)).values())
        except Exception:
            return False

    wait_for(settled, timeout=options.settle_within, interval=2.0)
    settle_seconds = round(time.monotonic() - settle_start, 1)
    for fault, seconds in recovered.items():
        if seconds is None:  # slower than the window (a busy machine): how long it did take
            recovered[fault] = recovery_seconds(load, watch, fault_ended[fault], timeout=0.1)
    keeper.stopping.set()
    watch.stopping.set()

    findings = check(config, set(load.accepted), prefix, checked_at=time.time())
    # Climbing alerts still fire for a while after the load, so lag is a moment's figure:
    # it must reach 0, not be 0 at one instant.
    lag_samples: list[dict[str, int]] = []

    def caught_up() -> bool:
        lag_samples.append(consumer_lag(config, faust_groups(config)))
        return not any(lag_samples[-1].values())

    wait_for(caught_up, timeout=60, interval=1.0)
    findings.lag = lag_samples[-1]
    unrecovered = [fault for fault, seconds in recovered.items() if seconds is None]
    healthy = (
        findings.total_lost == 0
        and findings.total_duplicated == 0
        and not unrecovered
        and findings.stranded_outbox_rows == 0
        and not any(findings.lag.values())
    )
    recovered_text = ", ".join(
        f"{fault} {seconds if seconds is not None else 'never'} s" for fault, seconds in recovered.items()
    )
    figures = {
        "faults": len(FAULTS),
        "rate_per_s": options.rate,
        **load.figures(),
        "recovered_in_s": recovered,
        "warm_up_s": warm,
        "settled_in_s": settle_seconds,
        "unplanned_restarts": keeper.unplanned_restarts,
        "run_seconds": round(time.monotonic() - started, 1),
        "passed": healthy,
        **findings.as_dict(),
    }
    path = write_results(options.results, figures)
    say_findings(findings)
    print(
        f"faults: {len(FAULTS)}, referrals: {findings.referrals}, lost: {findings.total_lost}, "
        f"duplicated: {findings.total_duplicated}, recovered in: {recovered_text}",
        flush=True,
    )
    print(f"wrote {path}", flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
