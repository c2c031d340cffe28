"""Region service benchmark: `python -m benchmarks.bench_region` (or `make bench-region`).

Measures, in one run and on the same broker:
  1. decisions per CPU second of the pure resolver on one core (no I/O), three ways in: the
     domain call, the region worker's call, and JSON document in / decision out with the
     explanation in all five languages (`--pure-only` stops after this part, needing no broker);
  2. decisions/s end to end through Kafka: N ReferralRequested events produced onto the
     referral topic, timed until N assignment events are read back from the assignments topic,
     with a real region worker (a child process, as `mesh serve region` runs it), and the
     worker process's own CPU time per event over that window (`--profile NAME` records a py-spy
     flame graph of the worker meanwhile: bench-results/profiles/region-NAME.svg);
  3. the raw Kafka produce->consume rate for N records of the same size, same client settings,
     as the ceiling the end-to-end figure should be read against.
Writes the figures to bench-results/region.json. Uses its own topic prefix and removes its
topics afterwards. Needs a broker (scripts/kafka.sh start, or KAFKA_BOOTSTRAP=host:port).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from meshcli.supervisor import free_port
from meshkernel import envelope as envelopes
from meshkernel.config import PROJECT_ROOT, MeshSettings
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ASSIGNMENTS, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2
from services.region.adapters.facts_mapping import assignment_from, request_from_proto
from services.region.decide import load_resolver
from services.region.domain import explanation_languages, parse_request

RESULTS = PROJECT_ROOT / "bench-results" / "region.json"
PROFILES = PROJECT_ROOT / "bench-results" / "profiles"
DOCUMENT = {
    "asked_in": "GM0363",
    "service": "shelter",
    "decision_date": "2026-11-01",
    "current_region": None,
    "facts": {
        "residence": [{"municipality": "GM0014", "from": "2015-01-01", "to": "2026-10-01", "registered": True}],
        "grew_up_in": ["GM0599"],
        "family_in": [],
        "work": [{"municipality": "GM0363", "from": "2025-01-01", "to": None}],
    },
}
FACTS = common_pb2.BindingFacts(
    residence=[common_pb2.Period(municipality="GM0014", from_date="2015-01-01", to_date="2026-10-01", registered=True)],
    grew_up_in=["GM0599"],
    work=[common_pb2.Period(municipality="GM0363", from_date="2025-01-01")],
)


def _rate(call: Callable[[], object], count: int, repeats: int) -> dict[str, float]:
    """Decisions per second of CPU time on this process's one thread (the figure holds on a busy
    machine), with the wall-clock rate beside it; the median of `repeats` runs."""
    call()  # warm up
    cpu_rates, wall_rates = [], []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(count):
            call()
        cpu_rates.append(count / max(time.process_time() - cpu, 1e-9))
        wall_rates.append(count / (time.perf_counter() - wall))
    return {
        "decisions_per_cpu_second": round(statistics.median(cpu_rates), 1),
        "best_decisions_per_cpu_second": round(max(cpu_rates), 1),
        "decisions_per_wall_second": round(statistics.median(wall_rates), 1),
    }


def bench_pure(count: int, repeats: int = 3) -> dict:
    """Three ways into the resolver, one core each:
    domain: request object -> Decision, no explanation written (what deciding itself costs);
    worker: proto facts -> request -> decision -> AssignmentEvent with the explanation in the case's
            languages (here English, and Dutch), as the region worker calls it;
    document: JSON document in, JSON decision out with the explanation in all five languages (the
            gRPC Resolve / `mesh region resolve` path)."""
    resolver = load_resolver(MeshSettings().region_policy_path)
    request = parse_request(DOCUMENT)
    case_languages = explanation_languages(["en"])

    def worker() -> object:
        request = request_from_proto(
            asked_in="GM0363", service="shelter", decision_date="2026-11-01", current_region=None, facts=FACTS
        )
        return assignment_from(resolver.decide_request(request), case_languages, service="shelter")

    paths = {
        "domain": _rate(lambda: resolver.decide_request(request), count, repeats),
        "worker": _rate(worker, count, repeats),
        "document": _rate(lambda: resolver.decide(DOCUMENT), count, repeats),
    }
    policy = resolver.policy
    return {
        "decisions": count,
        "repeats": repeats,
        "paths": paths,
        # The JSON document path with all five explanations, as this figure was measured before.
        "decisions_per_second": paths["document"]["decisions_per_cpu_second"],
        "regions": len(policy.regions),
        "municipalities": sum(len(region.municipalities) for region in policy.regions),
    }


def requested_event(case_id: str, occurred_at: float | None = None) -> bytes:
    """A ReferralRequested event as the referral service publishes it (now, unless given)."""
    envelope = envelopes.new_envelope(
        case_id=case_id,
        producer="bench",
        event_id=str(uuid.uuid4()),
        occurred_at=None if occurred_at is None else datetime.fromtimestamp(occurred_at, UTC),
        referral=events_pb2.ReferralEvent(
            referral_id=f"ref-{case_id}",
            event_type="ReferralRequested",
            version=1,
            need_domains=["shelter"],
            languages=["en"],
            asked_in="GM0363",
            facts=FACTS,
            sender="central-amsterdam",
            receiver="shelter-amsterdam",
            holder="central-amsterdam",
        ),
    )
    return envelopes.encode(envelope)


def _producer(config: MeshSettings) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=config.kafka_bootstrap, linger_ms=5, batch_size=64 * 1024)


def _consumer(config: MeshSettings, topic: str) -> KafkaConsumer:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=config.kafka_bootstrap,
        group_id=f"bench-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        consumer.poll(timeout_ms=100)
    return consumer


def _drain(consumer: KafkaConsumer, wanted: int, timeout: float, accept=lambda record: True) -> int:
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < wanted and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=100, max_records=5000).values():
            seen += sum(1 for record in records if accept(record))
    return seen


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _profiler(pid: int, name: str | None) -> subprocess.Popen | None:
    """py-spy recording the worker until stopped (SIGINT), as a flame graph."""
    if name is None:
        return None
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("  (no py-spy in the environment: no profile)", flush=True)
        return None
    PROFILES.mkdir(parents=True, exist_ok=True)
    command = [str(py_spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking"]
    return subprocess.Popen(
        [*command, "--format", "flamegraph", "--output", str(PROFILES / f"region-{name}.svg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_profiler(profiler: subprocess.Popen | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            profiler.wait(timeout=60)
        except subprocess.TimeoutExpired:
            profiler.kill()
            profiler.wait()


def bench_end_to_end(config: MeshSettings, env: dict, count: int, log_dir: Path, profile: str | None = None) -> dict:
    from meshcli.supervisor import Stack

    stack = Stack(env=env, log_dir=log_dir)
    started = time.monotonic()
    worker = stack.start("region")
    try:
        _wait_serving(config.region_grpc_address, timeout=90)
        startup = time.monotonic() - started
        consumer = _consumer(config, config.topic(ASSIGNMENTS.base_name))
        producer = _producer(config)
        source = config.topic(REFERRAL_EVENTS.base_name)
        # Warm-up: one case through, so partition assignment and first-fetch latency are not timed.
        producer.send(source, key=b"warm-up", value=requested_event("warm-up"))
        producer.flush()
        if _drain(consumer, 1, 60) < 1:
            raise RuntimeError("the region worker produced no assignment for the warm-up event")
        payloads = [(f"bench-{i:07d}", requested_event(f"bench-{i:07d}")) for i in range(count)]
        size = statistics.mean(len(value) for _key, value in payloads)
        profiler = _profiler(worker.pid, profile)
        cpu_before = _cpu_seconds(worker.pid)
        begin = time.perf_counter()
        for key, value in payloads:
            producer.send(source, key=key.encode(), value=value)
        producer.flush()
        produced = time.perf_counter() - begin
        got = _drain(consumer, count, timeout=max(60, count / 20))
        elapsed = time.perf_counter() - begin
        worker_cpu = _cpu_seconds(worker.pid) - cpu_before
        _stop_profiler(profiler)
        producer.close()
        consumer.close()
        if stack.crashed():
            raise RuntimeError("the region worker stopped during the benchmark")
        return {
            "events": count,
            "assignments_read": got,
            "seconds": round(elapsed, 3),
            "decisions_per_second": round(got / elapsed, 1),
            # The worker's own CPU (all its threads) from the first send to the last assignment read.
            "worker_cpu_seconds": round(worker_cpu, 3),
            "worker_cpu_ms_per_event": round(1000 * worker_cpu / max(got, 1), 3),
            "produce_seconds": round(produced, 3),
            "message_bytes": round(size),
            "worker_startup_seconds": round(startup, 2),
        }
    finally:
        stack.stop_all()


def bench_raw_kafka(config: MeshSettings, count: int, size: int) -> dict:
    topic = config.topic("bench.raw")
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=config.topic_partitions, replication_factor=1)])
    finally:
        admin.close()
    consumer = _consumer(config, topic)
    producer = _producer(config)
    value = os.urandom(size)
    begin = time.perf_counter()
    for i in range(count):
        producer.send(topic, key=f"bench-{i:07d}".encode(), value=value)
    producer.flush()
    produced = time.perf_counter() - begin
    got = _drain(consumer, count, timeout=60)
    elapsed = time.perf_counter() - begin
    producer.close()
    consumer.close()
    return {
        "records": count,
        "records_read": got,
        "message_bytes": size,
        "seconds": round(elapsed, 3),
        "records_per_second": round(got / elapsed, 1),
        "produce_seconds": round(produced, 3),
    }


def _wait_serving(address: str, timeout: float) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs of grpcio-health-checking lack Check
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.3)
    raise TimeoutError(f"the region worker never answered on {address}")


def _delete_topics(config: MeshSettings) -> None:
    try:
        admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
        mine = [name for name in admin.list_topics() if name.startswith(config.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
        admin.close()
    except Exception as problem:  # leftovers are harmless: unique prefix
        print(f"(could not delete benchmark topics: {type(problem).__name__})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pure", type=int, default=5000, help="resolver decisions per repeat (default 5000)")
    parser.add_argument("--events", type=int, default=3000, help="events through Kafka (default 3000)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="record a py-spy flame graph of the worker during the Kafka run: bench-results/profiles/region-NAME.svg",
    )
    parser.add_argument(
        "--pure-only", action="store_true", help="only the pure resolver (no broker needed; nothing written)"
    )
    options = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-region-"))
    env = dict(os.environ)
    env.update(
        {
            "MESH_MODE": "local",  # a private worker on loopback, as every private mesh of tests and benchmarks
            "MESH_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}.",
            "MESH_STATE_DIR": str(workdir / "state"),
            "MESH_REGION_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_REGION_WEB_PORT": str(free_port()),
            "MESH_LOG_LEVEL": "WARNING",
        }
    )
    os.environ.update({k: v for k, v in env.items() if k.startswith("MESH_")})
    config = MeshSettings()

    print(f"pure resolver: {options.pure} decisions x3 ...", flush=True)
    pure = bench_pure(options.pure)
    for name, rates in pure["paths"].items():
        print(
            f"  {name:<8} {rates['decisions_per_cpu_second']:>9,.0f} decisions per CPU second "
            f"({rates['decisions_per_wall_second']:,.0f}/s wall)",
            flush=True,
        )
    print(f"  ({pure['municipalities']} municipalities in {pure['regions']} regions loaded)", flush=True)
    if options.pure_only:
        return 0

    prepare_kafka(config, "bench-region", give_up_after=30)
    try:
        print(f"end to end through Kafka: {options.events} ReferralRequested events ...", flush=True)
        e2e = bench_end_to_end(config, env, options.events, workdir / "logs", options.profile)
        print(
            f"  {e2e['decisions_per_second']:,.0f} decisions/s ({e2e['assignments_read']} assignments in "
            f"{e2e['seconds']} s, {e2e['message_bytes']} B/event); worker CPU "
            f"{e2e['worker_cpu_ms_per_event']:.2f} ms per event",
            flush=True,
        )
        print(f"raw Kafka produce->consume: {options.events} records of {e2e['message_bytes']} B ...", flush=True)
        raw = bench_raw_kafka(config, options.events, e2e["message_bytes"])
        print(f"  {raw['records_per_second']:,.0f} records/s", flush=True)
        print(
            f"region worker through Kafka: {e2e['decisions_per_second'] / raw['records_per_second']:.1%} of raw "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    finally:
        _delete_topics(config)

    result = {
        "benchmark": "region",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "host": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "kafka_bootstrap": config.kafka_bootstrap,
        "topic_partitions": config.topic_partitions,
        "pure_resolver": pure,
        "end_to_end": e2e,
        "raw_kafka": raw,
        "end_to_end_share_of_raw_kafka": round(e2e["decisions_per_second"] / raw["records_per_second"], 4),
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written to {options.out}")
    return 0 if e2e["assignments_read"] == options.events and raw["records_read"] == options.events else 1


if __name__ == "__main__":
    raise SystemExit(main())
