"""Whole-mesh benchmark: `python -m benchmarks.bench_e2e` (or `make bench-e2e`).

Drives referrals through the running mesh (referral gRPC -> outbox -> Kafka -> region ->
Kafka -> notify -> Kafka) at a steady rate and prints p50/p99/max latency from the start of
the CreateReferral call to the assignment event and to the first notification, read back
from Kafka. In the same run it measures the raw Kafka produce-to-consume latency of records
of the same size at the same rate: the floor the mesh figures stand on. Figures go to
bench-results/e2e.json. Needs Java and Maven for the local broker, or KAFKA_BOOTSTRAP.
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
    parser.add_argument("--rate", type=float, default=500.0, help="referrals per second offered")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--raw-seconds", type=float, default=15.0)
    options = parser.parse_args(argv)

    if "KAFKA_BOOTSTRAP" not in os.environ and not kafka_answers():
        start_kafka()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as folder:
        env = isolated_env(Path(folder))
        if "KAFKA_BOOTSTRAP" not in env:
            env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
        config = settings_from(env)
        prepare_kafka(config, "bench-e2e", give_up_after=60)
        stack = Stack(env=env, log_dir=Path(folder) / "logs")
        for service in ("referral", "region", "notify"):
            stack.start(service)
        try:
            return _measure(config, stack, options)
        finally:
            stack.stop_all()


def _measure(config, stack: Stack, options) -> int:
    topics = {
        config.topic(REFERRAL_EVENTS.base_name): "referral_event",
        config.topic(ASSIGNMENTS.base_name): "assignment",
        config.topic(NOTIFICATIONS.base_name): "notification",
    }
    arrivals = Arrivals(config.kafka_bootstrap, topics)
    arrivals.ready()
    arrivals.start()
    print(f"warming up the mesh ({SENDER} -> {RECEIVER})")
    asyncio.run(drive(config.referral_grpc_address, rate=5, seconds=4, prefix="warm-"))
    deadline = time.monotonic() + 120
    while len(arrivals.first_seen["notification"]) < 20 and time.monotonic() < deadline:
        time.sleep(0.5)
    if stack.crashed():
        print(f"a service stopped: {stack.crashed()}", file=sys.stderr)
        return 1

    print(f"offering {options.rate:.0f} referrals/s for {options.seconds:.0f}s")
    started = asyncio.run(drive(config.referral_grpc_address, options.rate, options.seconds, prefix="bench-"))
    settle_until = time.monotonic() + 60
    while time.monotonic() < settle_until:
        if all(case in arrivals.first_seen["notification"] for case in started):
            break
        time.sleep(0.5)
    arrivals.stopping.set()
    arrivals.join(timeout=10)

    results = {"offered_rate_per_s": options.rate, "seconds": options.seconds, "created": len(started)}
    for label in ("referral_event", "assignment", "notification"):
        seen = arrivals.first_seen[label]
        latencies = [(seen[case] - begun) * 1000 for case, begun in started.items() if case in seen]
        results[f"create_to_{label}"] = latency_summary(latencies)
        results[f"create_to_{label}"]["missing"] = len(started) - len(latencies)
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
    path = write_results("e2e", results)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
