"""Referral service benchmark: concurrent agencies against a running service with real Kafka.

    python -m benchmarks.bench_referral [--seconds 20] [--agencies 16] [--backends sqlite,postgresql]
                                        [--profile DIR]

For each backend a fresh database and a referral service process are started (as the tests
do: Kafka from scripts/kafka.sh, PostgreSQL from scripts/postgres.sh; the service runs its
outbox relay to real Kafka). The load comes from a separate client process (grpc.aio, one
channel and one coroutine per agency worker, no threads), so the client's Python never
competes with the service for one interpreter lock. Every agency worker walks referrals
through the whole lifecycle (create, acknowledge, accept, start, complete) as fast as the
service answers. Printed and written to bench-results/referral.json: operations per second
(creates + transitions), p50/p99 latency per operation, CPU seconds used by the service,
the client and PostgreSQL during the measured window, and whether the outbox relay kept up
(rows still unpublished when the load stopped, and after 10 s). With --profile DIR a
py-spy profile of the service (if py-spy is installed) is written there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
from sqlalchemy import func, select

from meshcli.client import ReferralClient, consent_for
from meshcli.supervisor import Stack, free_port, kafka_answers, start_kafka, wait_for
from meshkernel.callers import DEV_AGENCY_HEADER
from meshkernel.config import PROJECT_ROOT, MeshSettings
from meshkernel.kafka import prepare_kafka
from meshkernel.tls import open_channel
from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc
from services.referral.adapters.storage import make_engine
from services.referral.adapters.tables import outbox

RESULTS = PROJECT_ROOT / "bench-results" / "referral.json"
POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres.sh"
# (sender, receiver) pairs from the agency directory; consent covers both.
PAIRS = [
    ("central-amsterdam", "shelter-amsterdam"),
    ("exit-the-hague", "shelter-utrecht"),
    ("central-rotterdam", "care-rotterdam"),
    ("central-the-hague", "legal-the-hague"),
    ("central-utrecht", "shelter-utrecht"),
    ("exit-amsterdam", "advocacy-amsterdam"),
    ("municipality-westerdijk", "shelter-amsterdam"),
    ("health-rotterdam", "care-rotterdam"),
]
LIFECYCLE = ("Acknowledge", "Accept", "Start", "Complete")


def _database(backend: str, folder: Path) -> tuple[str, Callable[[], None]]:
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
        request_key=uuid.uuid4().hex,
        case_id=case_id,
        receiver_agency=receiver,
        need_domains=["shelter"],
        urgency=common_pb2.NORMAL,
        languages=["nl"],
        asked_in="GM0363",
        facts=common_pb2.BindingFacts(grew_up_in=["GM0363"]),
        consent=consent_for(sender, receiver),
    )


async def _agency(address: str, pair: tuple[str, str], stop: asyncio.Event, latencies: dict, errors: list):
    """One agency pair on its own channel: create, then walk the lifecycle, until told to stop."""
    sender_id, receiver_id = pair
    channel = open_channel(address, None, aio=True)  # a local-mode mesh
    stub = api_grpc.ReferralServiceStub(channel)
    as_sender, as_receiver = ((DEV_AGENCY_HEADER, sender_id),), ((DEV_AGENCY_HEADER, receiver_id),)
    clock = time.perf_counter
    try:
        while not stop.is_set():
            try:
                began = clock()
                referral = await stub.CreateReferral(_request(sender_id, receiver_id), metadata=as_sender, timeout=10)
                latencies["CreateReferral"].append(clock() - began)
                version = referral.version
                for method in LIFECYCLE:
                    request: api.CompleteRequest | api.TransitionRequest
                    if method == "Complete":
                        request = api.CompleteRequest(
                            referral_id=referral.referral_id, expected_version=version, outcome=common_pb2.HELPED
                        )
                    else:
                        request = api.TransitionRequest(referral_id=referral.referral_id, expected_version=version)
                    began = clock()
                    version = (await getattr(stub, method)(request, metadata=as_receiver, timeout=10)).version
                    latencies[method].append(clock() - began)
            except grpc.aio.AioRpcError:
                errors.append(1)
    finally:
        await channel.close()


async def _drive_async(address: str, agencies: int, warmup: float, seconds: float) -> dict:
    async def phase(duration: float, latencies: dict, errors: list) -> float:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(_agency(address, PAIRS[i % len(PAIRS)], stop, latencies, errors))
            for i in range(agencies)
        ]
        began = time.perf_counter()
        await asyncio.sleep(duration)
        stop.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - began

    await phase(warmup, {"CreateReferral": [], **{m: [] for m in LIFECYCLE}}, [])
    latencies: dict[str, list[float]] = {"CreateReferral": [], **{m: [] for m in LIFECYCLE}}
    errors: list[int] = []
    print("GO", flush=True)
    cpu_before = time.process_time()
    elapsed = await phase(seconds, latencies, errors)
    cpu = time.process_time() - cpu_before
    print("END", flush=True)
    return {"elapsed": elapsed, "latencies": latencies, "errors": len(errors), "client_cpu_seconds": cpu}


def drive(address: str, agencies: int, warmup: float, seconds: float) -> None:
    """The load generator (its own process): prints GO / END around the measured window, then JSON."""
    result = asyncio.run(_drive_async(address, agencies, warmup, seconds))
    print(json.dumps(result), flush=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds() -> float:
    """CPU of every PostgreSQL process on the machine (backends, WAL writer, checkpointer)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += _cpu_seconds(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return total


def _machine_busy_seconds() -> float:
    """CPU seconds spent not idle, all cores together, from /proc/stat."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _start_profiler(pid: int, seconds: float, folder: Path | None, backend: str) -> subprocess.Popen | None:
    if folder is None:
        return None
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("  (no py-spy in the environment: no profile)", flush=True)
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            str(py_spy),
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, int(seconds) - 1)),
            "-r",
            "200",
            "--nonblocking",
            "-f",
            "raw",
            "-o",
            str(folder / f"referral-{backend}.folded"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _unpublished(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        ).scalar_one()


def run_backend(backend: str, seconds: float, agencies: int, kafka: str, profile: Path | None = None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-referral-{backend}-"))
    database_url, drop = _database(backend, folder)
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP": kafka,
            "MESH_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:8]}.",
            "DATABASE_URL": database_url,
            "MESH_STATE_DIR": str(folder / "state"),
            "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_LOG_LEVEL": "WARNING",
        }
    )
    config = MeshSettings(
        kafka_bootstrap=kafka,
        topic_prefix=env["MESH_TOPIC_PREFIX"],
        database_url=database_url,
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

        # The load runs in its own process; its first seconds warm up connections, pools and
        # the first Kafka batches and are not measured.
        warmup = min(3.0, seconds / 5)
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_referral",
                "--drive",
                config.referral_grpc_address,
                "--agencies",
                str(agencies),
                "--seconds",
                str(seconds),
                "--warmup",
                str(warmup),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=PROJECT_ROOT,
        )
        server_pid = stack.processes["referral"].pid
        assert driver.stdout is not None
        while (line := driver.stdout.readline()) and line.strip() != "GO":
            pass
        before = (_cpu_seconds(server_pid), _cpu_seconds(driver.pid), _postgres_cpu_seconds(), _machine_busy_seconds())
        profiler = _start_profiler(server_pid, seconds, profile, backend)
        while (line := driver.stdout.readline()) and line.strip() != "END":
            pass
        after = (_cpu_seconds(server_pid), _cpu_seconds(driver.pid), _postgres_cpu_seconds(), _machine_busy_seconds())
        measured = json.loads(driver.stdout.read())
        driver.wait()
        if profiler is not None:
            profiler.wait()
        elapsed, results, errors = measured["elapsed"], measured["latencies"], measured["errors"]
        cpu = {
            name: round(end - begin, 2)
            for name, begin, end in zip(("service", "client", "postgresql", "machine"), before, after, strict=False)
        }
        backlog_at_stop = _unpublished(engine)
        wait_for(lambda: _unpublished(engine) == 0, timeout=10)
        backlog_after = _unpublished(engine)
        crashed = stack.crashed()
    finally:
        stack.stop_all()
        if engine is not None:
            engine.dispose()
        drop()

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
            method: {
                "count": len(values),
                "p50_ms": round(1000 * _percentile(values, 0.5), 2),
                "p99_ms": round(1000 * _percentile(values, 0.99), 2),
            }
            for method, values in results.items()
        },
        "cpu_seconds": cpu,
        "cpu_cores_busy": {name: round(value / elapsed, 2) for name, value in cpu.items()},
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
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a py-spy profile of the service per backend into this folder"
    )
    parser.add_argument("--drive", metavar="ADDRESS", help=argparse.SUPPRESS)  # the load process
    parser.add_argument("--warmup", type=float, default=3.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        drive(args.drive, args.agencies, args.warmup, args.seconds)
        return 0

    kafka = os.environ.get("KAFKA_BOOTSTRAP")
    if not kafka:
        if not kafka_answers():
            start_kafka()
        kafka = "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")

    runs = []
    for backend in [name.strip() for name in args.backends.split(",") if name.strip()]:
        print(f"referral benchmark: {backend}, {args.agencies} agencies, {args.seconds:.0f}s ...", flush=True)
        result = run_backend(backend, args.seconds, args.agencies, kafka, args.profile)
        runs.append(result)
        print(
            f"  {result['ops_per_second']:8.1f} ops/s  (creates {result['creates_per_second']:.1f}/s, "
            f"transitions {result['transitions_per_second']:.1f}/s)  p50 {result['p50_ms']:.1f} ms  "
            f"p99 {result['p99_ms']:.1f} ms  errors {result['errors']}  "
            f"outbox backlog {result['outbox_unpublished_at_stop']} -> {result['outbox_unpublished_10s_later']}",
            flush=True,
        )
        busy = result["cpu_cores_busy"]
        print(
            f"           CPU cores busy: service {busy['service']:.2f}, client {busy['client']:.2f}, "
            f"postgresql {busy['postgresql']:.2f}, whole machine {busy['machine']:.2f} of {os.cpu_count()}",
            flush=True,
        )

    report = {
        "benchmark": "referral",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
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
