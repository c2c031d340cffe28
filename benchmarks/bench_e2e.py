"""Whole-mesh benchmark: `python -m benchmarks.bench_e2e` (or `make bench-e2e`).

Drives referrals through the running mesh (referral gRPC -> outbox -> Kafka -> region ->
Kafka -> notify -> Kafka) at a steady rate and prints p50/p99/max latency from the start of
the CreateReferral call to the assignment event and to the first notification, read back
from Kafka. In the same run it measures the raw Kafka produce-to-consume latency of records
of the same size at the same rate: the floor the mesh figures stand on. Figures go to
bench-results/e2e.json. Needs Java and Maven for the local broker, or KAFKA_BOOTSTRAP.

`--replicas N` (`make bench-e2e REPLICAS=N`) runs N replicas of every service
(benchmarks/replicas.py) on one PostgreSQL and spreads the calls over the referral replicas;
`--compare-replicas` (`make bench-e2e-replicas`) runs the mesh with 1 and then with 2
replicas and prints their rates side by side. On a machine with few cores the second column
shows what replication costs (more processes on the same cores, claims, rebalancing), not a
speed-up: the gain needs more machines.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from benchmarks.common import isolated_env, latency_summary, write_results
from benchmarks.replicas import ReplicaStack, shared_notify_env
from meshcli.demo import RECEIVER, SENDER, demo_request
from meshcli.supervisor import Stack, kafka_answers, settings_from, start_kafka
from meshkernel.callers import DEV_AGENCY_HEADER
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.kafka import connect_admin, prepare_kafka
from meshkernel.tls import open_channel
from meshkernel.topics import ASSIGNMENTS, NOTIFICATIONS, REFERRAL_EVENTS
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc

MAX_IN_FLIGHT = 512


class Arrivals(threading.Thread):
    """Notes when the first event of each case arrives on each watched topic."""

    def __init__(self, bootstrap: str, topics: dict[str, str]):
        super().__init__(daemon=True)
        self.kinds = topics  # topic name -> label
        self.first_seen: dict[str, dict[str, float]] = {label: {} for label in topics.values()}
        self.sizes: list[int] = []
        self.consumer = KafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=f"bench-{uuid.uuid4()}",
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
        )
        self.stopping = threading.Event()

    def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.consumer.assignment() and time.monotonic() < deadline:
            self.consumer.poll(timeout_ms=100)

    def run(self) -> None:
        while not self.stopping.is_set():
            for records in self.consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for record in records:
                    try:
                        envelope = decode(record.value)
                    except MalformedEvent:
                        continue
                    seen = self.first_seen[self.kinds[record.topic]]
                    seen.setdefault(envelope.case_id, now)
                    if record.topic.endswith(REFERRAL_EVENTS.base_name):
                        self.sizes.append(len(record.value))
        self.consumer.close()


async def drive_all(addresses: list[str], rate: float, seconds: float, prefix: str) -> dict[str, float]:
    """The offered rate split evenly over the referral replicas, as a load balancer would."""
    shares = await asyncio.gather(
        *(
            drive(address, rate / len(addresses), seconds, f"{prefix}{index}-")
            for index, address in enumerate(addresses)
        )
    )
    return {case: begun for share in shares for case, begun in share.items()}


async def drive(address: str, rate: float, seconds: float, prefix: str) -> dict[str, float]:
    """Fire CreateReferral calls on a fixed schedule; return case id -> call start time."""
    started: dict[str, float] = {}
    errors = 0
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    async with open_channel(address, None, aio=True) as channel:  # a local-mode mesh
        await asyncio.wait_for(channel.channel_ready(), timeout=60)
        stub = api_grpc.ReferralServiceStub(channel)
        metadata = ((DEV_AGENCY_HEADER, SENDER),)

        async def one(case_id: str) -> None:
            nonlocal errors
            async with in_flight:
                started[case_id] = time.perf_counter()
                try:
                    await stub.CreateReferral(demo_request(case_id), metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                    started.pop(case_id, None)

        tasks = []
        begin = time.perf_counter()
        for index in range(int(rate * seconds)):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(f"{prefix}{index:07d}")))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - begin
    print(f"  offered {len(tasks)} creates in {elapsed:.1f}s ({len(tasks) / elapsed:.0f}/s), {errors} errors")
    return started


def raw_kafka_latency(bootstrap: str, topic: str, size: int, rate: float, seconds: float) -> dict:
    """Produce records of `size` bytes at `rate` and time each from send to consume."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4()}",
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    latencies: list[float] = []
    total = int(rate * seconds)
    done = threading.Event()

    def consume():
        while len(latencies) < total and not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                latencies.extend((now - struct.unpack(">d", record.value[:8])[0]) * 1000 for record in records)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    padding = os.urandom(max(0, size - 8))
    begin = time.perf_counter()
    for index in range(total):
        delay = begin + index / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.send(topic, key=f"raw-{index % 64}".encode(), value=struct.pack(">d", time.perf_counter()) + padding)
    producer.flush()
    reader.join(timeout=30)
    done.set()
    producer.close()
    consumer.close()
    return latency_summary(latencies)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=None, help="referrals per second offered (500; 40 comparing)")
    parser.add_argument("--seconds", type=float, default=None, help="length of the run (60; 20 comparing)")
    parser.add_argument("--raw-seconds", type=float, default=15.0)
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each service (more than 1: PostgreSQL)")
    parser.add_argument("--compare-replicas", action="store_true", help="1 and 2 replicas, rates side by side")
    options = parser.parse_args(argv)
    comparing = options.compare_replicas
    options.rate = options.rate or (40.0 if comparing else 500.0)
    options.seconds = options.seconds or (20.0 if comparing else 60.0)

    if "KAFKA_BOOTSTRAP" not in os.environ and not kafka_answers():
        start_kafka()
    if not comparing:
        results = _run_mesh(options, options.replicas, raw_latency=True)
        return 0 if results else 1
    runs = {replicas: _run_mesh(options, replicas, raw_latency=False) for replicas in (1, 2)}
    if not all(runs.values()):
        return 1
    _print_side_by_side(runs)
    path = write_results("e2e-replicas", {"offered_rate_per_s": options.rate, "by_replicas": runs})
    print(f"\nwrote {path}")
    return 0


def _run_mesh(options, replicas: int, *, raw_latency: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder_name:
        folder = Path(folder_name)
        databases = None
        extra: dict[str, str] = {}
        if replicas > 1 or options.compare_replicas:  # one database every replica shares
            from benchmarks.scaleout import Databases

            databases = Databases(os.environ.get("TEST_POSTGRES_URL"))
            # Notify replicas share one SQLite store until notify's store runs on PostgreSQL.
            extra = {"DATABASE_URL": databases.create("referral"), **shared_notify_env(folder)}
        env = isolated_env(folder, **extra)
        if "KAFKA_BOOTSTRAP" not in env:
            env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
        config = settings_from(env)
        prepare_kafka(config, "bench-e2e", give_up_after=60)
        stack = ReplicaStack(env=env, log_dir=folder / "logs", state_root=folder / "replicas")
        stack.start_all(replicas)
        print(f"\n{replicas} replica(s) of each service")
        try:
            addresses = [stack.address(name) for name in stack.names("referral")]
            return _measure(config, stack, options, addresses, raw_latency=raw_latency, replicas=replicas)
        finally:
            stack.stop_all()
            if databases is not None:
                databases.drop_all()


def _print_side_by_side(runs: dict[int, dict]) -> None:
    print(f"\n  {'':40s}{'1 replica':>14s}{'2 replicas':>14s}")
    rows = (
        ("created per second", lambda r: f"{r['created_per_s']:.1f}"),
        ("completed per second (notified)", lambda r: f"{r['completed_per_s']:.1f}"),
        ("create -> notification p50 ms", lambda r: f"{r['create_to_notification']['p50_ms']:.0f}"),
        ("create -> notification p99 ms", lambda r: f"{r['create_to_notification']['p99_ms']:.0f}"),
        ("not notified within the run", lambda r: str(r["create_to_notification"]["missing"])),
    )
    for label, show in rows:
        print(f"  {label:40s}{show(runs[1]):>14s}{show(runs[2]):>14s}")
    cores = os.cpu_count() or 1
    print(
        f"\n  {cores} core(s): every replica shares them, so the second column shows the cost of running "
        "replicas (processes, claims, rebalancing), not a speed-up; that needs more machines."
    )


def _measure(config, stack: Stack, options, addresses: list[str], *, raw_latency: bool, replicas: int) -> dict:
    topics = {
        config.topic(REFERRAL_EVENTS.base_name): "referral_event",
        config.topic(ASSIGNMENTS.base_name): "assignment",
        config.topic(NOTIFICATIONS.base_name): "notification",
    }
    arrivals = Arrivals(config.kafka_bootstrap, topics)
    arrivals.ready()
    arrivals.start()
    print(f"warming up the mesh ({SENDER} -> {RECEIVER})")
    asyncio.run(drive_all(addresses, rate=5, seconds=4, prefix="warm-"))
    deadline = time.monotonic() + 120
    while len(arrivals.first_seen["notification"]) < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    if stack.crashed():
        print(f"a service stopped: {stack.crashed()}", file=sys.stderr)
        return {}

    print(f"offering {options.rate:.0f} referrals/s for {options.seconds:.0f}s")
    begin = time.perf_counter()
    started = asyncio.run(drive_all(addresses, options.rate, options.seconds, prefix="bench-"))
    created_in = time.perf_counter() - begin
    settle_until = time.monotonic() + 60
    while time.monotonic() < settle_until:
        if all(case in arrivals.first_seen["notification"] for case in started):
            break
        time.sleep(0.5)
    arrivals.stopping.set()
    arrivals.join(timeout=10)

    notified = [
        arrivals.first_seen["notification"][case] for case in started if case in arrivals.first_seen["notification"]
    ]
    results = {
        "replicas": replicas,
        "offered_rate_per_s": options.rate,
        "seconds": options.seconds,
        "created": len(started),
        "created_per_s": round(len(started) / created_in, 1),
        # Referrals through the whole mesh (assigned and notified) per second of the run.
        "completed_per_s": round(len(notified) / max(1e-9, max(notified, default=begin) - begin), 1),
    }
    for label in ("referral_event", "assignment", "notification"):
        seen = arrivals.first_seen[label]
        latencies = [(seen[case] - begun) * 1000 for case, begun in started.items() if case in seen]
        results[f"create_to_{label}"] = latency_summary(latencies)
        results[f"create_to_{label}"]["missing"] = len(started) - len(latencies)
    if not raw_latency:
        return results
    size = int(sum(arrivals.sizes) / len(arrivals.sizes)) if arrivals.sizes else 300
    print(f"raw Kafka: {options.rate:.0f} records/s of {size} bytes for {options.raw_seconds:.0f}s")
    raw_topic = config.topic("bench.raw")
    admin = connect_admin(config, "bench-e2e", give_up_after=30)
    admin.create_topics([NewTopic(raw_topic, config.topic_partitions, config.topic_replication)])
    admin.close()
    results["raw_kafka_produce_to_consume"] = raw_kafka_latency(
        config.kafka_bootstrap, raw_topic, size, options.rate, options.raw_seconds
    )
    results["raw_kafka_produce_to_consume"]["record_bytes"] = size

    print()
    for key in (
        "create_to_referral_event",
        "create_to_assignment",
        "create_to_notification",
        "raw_kafka_produce_to_consume",
    ):
        figures = results[key]
        print(
            f"  {key:32s} p50 {figures['p50_ms']:8.1f} ms   p99 {figures['p99_ms']:8.1f} ms   "
            f"max {figures['max_ms']:8.1f} ms   n={figures['count']}"
            + (f"   missing {figures['missing']}" if figures.get("missing") else "")
        )
    print(f"  completed (notified) per second: {results['completed_per_s']}")
    path = write_results("e2e" if replicas == 1 else f"e2e-{replicas}-replicas", results)
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    sys.exit(main())
