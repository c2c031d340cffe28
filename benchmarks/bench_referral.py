"""Referral service benchmark: concurrent agencies against a running service with real Kafka.

    python -m benchmarks.bench_referral [--seconds 20] [--agencies 16] [--backends sqlite,postgresql]

For each backend a fresh database and a referral service process are started (as the tests
do: Kafka from scripts/kafka.sh, PostgreSQL from scripts/postgres.sh). Every agency worker
walks referrals through the whole lifecycle (create, acknowledge, accept, start, complete)
as fast as the service answers. Printed and written to bench-results/referral.json:
operations per second (creates + transitions), p50/p99 latency per operation, and whether
the outbox relay kept up (rows still unpublished when the load stopped, and after 10 s).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import grpc
import psycopg
from sqlalchemy import func, select

from meshcli.client import ReferralClient, consent_for
from meshcli.supervisor import Stack, kafka_answers, start_kafka, wait_for
from meshkernel.config import PROJECT_ROOT, MeshSettings
from meshkernel.kafka import prepare_kafka
from referralmesh.v1 import common_pb2, referral_service_pb2 as api
from services.referral.adapters.storage import make_engine
from services.referral.adapters.tables import outbox

RESULTS = PROJECT_ROOT / "bench-results" / "referral.json"
POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres.sh"
# (sender, receiver) pairs from the agency directory; consent covers both.
PAIRS = [
    ("central-amsterdam", "shelter-amsterdam"), ("exit-the-hague", "shelter-utrecht"),
    ("central-rotterdam", "care-rotterdam"), ("central-the-hague", "legal-the-hague"),
    ("central-utrecht", "shelter-utrecht"), ("exit-amsterdam", "advocacy-amsterdam"),
    ("municipality-westerdijk", "shelter-amsterdam"), ("health-rotterdam", "care-rotterdam"),
]
LIFECYCLE = ("Acknowledge", "Accept", "Start", "Complete")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database(backend: str, folder: Path) -> tuple[str, callable]:
    if backend == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}", lambda: None
    subprocess.run([str(POSTGRES_SCRIPT), "start"], check=True, capture_output=True)
    base = subprocess.run([str(POSTGRES_SCRIPT), "url"], check=True, capture_output=True, text=True).stdout.strip()
    admin = base.rsplit("/", 1)[0] + "/postgres"
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return base.rsplit("/", 1)[0] + f"/{name}", drop


def _request(sender: str, receiver: str) -> api.CreateReferralRequest:
    case_id = f"bench-{uuid.uuid4().hex[:12]}"
    return api.CreateReferralRequest(
        request_key=uuid.uuid4().hex, case_id=case_id, receiver_agency=receiver,
        need_domains=["shelter"], urgency=common_pb2.NORMAL, languages=["nl"], asked_in="GM0363",
        facts=common_pb2.BindingFacts(grew_up_in=["GM0363"]), consent=consent_for(sender, receiver),
    )


def _worker(address: str, pair: tuple[str, str], stop: threading.Event, out: dict, lock: threading.Lock):
    sender_id, receiver_id = pair
    sender, receiver = ReferralClient(address, sender_id), ReferralClient(address, receiver_id)
    latencies: dict[str, list[float]] = {"CreateReferral": [], **{method: [] for method in LIFECYCLE}}
    errors = 0
    try:
        while not stop.is_set():
            try:
                began = time.perf_counter()
                referral = sender.create(_request(sender_id, receiver_id))
                latencies["CreateReferral"].append(time.perf_counter() - began)
                version = referral.version
                for method in LIFECYCLE:
                    fields = {"outcome": common_pb2.HELPED} if method == "Complete" else {}
                    began = time.perf_counter()
                    version = receiver.transition(method, referral.referral_id, version, **fields).version
                    latencies[method].append(time.perf_counter() - began)
            except grpc.RpcError:
                errors += 1
    finally:
        sender.close()
        receiver.close()
    with lock:
        for method, values in latencies.items():
            out.setdefault(method, []).extend(values)
        out["errors"] = out.get("errors", 0) + errors


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _unpublished(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))).scalar_one()


def run_backend(backend: str, seconds: float, agencies: int, kafka: str) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-referral-{backend}-"))
    database_url, drop = _database(backend, folder)
    env = dict(os.environ)
    env.update({
        "KAFKA_BOOTSTRAP": kafka, "MESH_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}.",
        "DATABASE_URL": database_url, "MESH_STATE_DIR": str(folder / "state"),
        "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{_free_port()}", "MESH_LOG_LEVEL": "WARNING",
    })
    config = MeshSettings(
        kafka_bootstrap=kafka, topic_prefix=env["MESH_TOPIC_PREFIX"], database_url=database_url,
        referral_grpc_address=env["MESH_REFERRAL_GRPC_ADDRESS"],
    )
    prepare_kafka(config, "bench-referral", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    engine = None
    try:
        stack.start("referral")
        probe = ReferralClient(config.referral_grpc_address, PAIRS[0][0])
        probe.wait_until_ready(timeout=60)
        probe.close()
        engine = make_engine(database_url)

        # Warm-up: connections, pools, first Kafka batches.
        warm_stop, warm = threading.Event(), {}
        warm_threads = [threading.Thread(target=_worker, args=(config.referral_grpc_address, PAIRS[i % len(PAIRS)],
                                                               warm_stop, warm, threading.Lock()))
                        for i in range(agencies)]
        for thread in warm_threads:
            thread.start()
        time.sleep(min(3.0, seconds / 5))
        warm_stop.set()
        for thread in warm_threads:
            thread.join()

        stop, results, lock = threading.Event(), {}, threading.Lock()
        threads = [threading.Thread(target=_worker, args=(config.referral_grpc_address, PAIRS[i % len(PAIRS)],
                                                          stop, results, lock))
                   for i in range(agencies)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        backlog_at_stop = _unpublished(engine)
        wait_for(lambda: _unpublished(engine) == 0, timeout=10)
        backlog_after = _unpublished(engine)
        crashed = stack.crashed()
    finally:
        stack.stop_all()
        if engine is not None:
            engine.dispose()
        drop()

    errors = results.pop("errors", 0)
    everything = [value for values in results.values() for value in values]
    creates = len(results.get("CreateReferral", []))
    transitions = sum(len(results.get(method, [])) for method in LIFECYCLE)
    return {
        "backend": backend,
        "agencies": agencies,
        "seconds": round(elapsed, 2),
        "creates": creates,
        "transitions": transitions,
        "errors": errors,
        "ops_per_second": round((creates + transitions) / elapsed, 1),
        "creates_per_second": round(creates / elapsed, 1),
        "transitions_per_second": round(transitions / elapsed, 1),
        "p50_ms": round(1000 * _percentile(everything, 0.50), 2),
        "p99_ms": round(1000 * _percentile(everything, 0.99), 2),
        "mean_ms": round(1000 * statistics.fmean(everything), 2) if everything else 0.0,
        "per_operation": {
            method: {"count": len(values), "p50_ms": round(1000 * _percentile(values, 0.5), 2),
                     "p99_ms": round(1000 * _percentile(values, 0.99), 2)}
            for method, values in results.items()
        },
        "outbox_unpublished_at_stop": backlog_at_stop,
        "outbox_unpublished_10s_later": backlog_after,
        "service_crashed": bool(crashed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured load per backend (default 20)")
    parser.add_argument("--agencies", type=int, default=16, help="concurrent agency workers (default 16)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    kafka = os.environ.get("KAFKA_BOOTSTRAP")
    if not kafka:
        if not kafka_answers():
            start_kafka()
        kafka = "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")

    runs = []
    for backend in [name.strip() for name in args.backends.split(",") if name.strip()]:
        print(f"referral benchmark: {backend}, {args.agencies} agencies, {args.seconds:.0f}s ...", flush=True)
        result = run_backend(backend, args.seconds, args.agencies, kafka)
        runs.append(result)
        print(f"  {result['ops_per_second']:8.1f} ops/s  (creates {result['creates_per_second']:.1f}/s, "
              f"transitions {result['transitions_per_second']:.1f}/s)  p50 {result['p50_ms']:.1f} ms  "
              f"p99 {result['p99_ms']:.1f} ms  errors {result['errors']}  "
              f"outbox backlog {result['outbox_unpublished_at_stop']} -> {result['outbox_unpublished_10s_later']}",
              flush=True)

    report = {
        "benchmark": "referral",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        "target": {"transitions_per_second": 1000, "p99_ms": 50, "backend": "postgresql"},
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0 if all(not run["service_crashed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
