"""Referral service benchmark: concurrent agencies against a running service with real Kafka.

    python -m benchmarks.bench_referral [--seconds 15] [--agencies 16] [--rate 1000]
                                        [--backends sqlite,postgresql] [--profile DIR]

For each backend a fresh database and a referral service process are started (as the tests
do: Kafka from scripts/kafka.sh, PostgreSQL from scripts/postgres.sh; the service runs its
outbox relay to real Kafka). The load comes from a separate client process (grpc.aio, no
threads), so the client's Python never competes with the service for one interpreter lock.
Each referral is walked through the whole lifecycle (create, acknowledge, accept, start,
complete). Two phases run against the same service:

- **capacity** (closed loop): `--agencies` workers, each sending its next call as soon as the
  last one answered. This finds the most the service does; its latency is from send to answer.
- **open loop** at `--rate` operations per second (0 skips it): referrals start on a fixed
  schedule whatever the service does, and each call of a referral has its own scheduled send
  time (`OPEN_LOOP_STEP` apart). Latency counts from the scheduled time, so queueing in the
  service shows up in it (no coordinated omission); calls the client could not send on time
  (the previous call of the referral had not answered, or the client fell behind) are counted
  as `late_sends`.

Printed and written to bench-results/referral.json, per phase: operations per second
(creates + transitions), p50/p99 latency, errors, CPU time of the service process per
operation (from /proc, so it means something on a busy machine), CPU of the client,
PostgreSQL and the whole machine, the load average, and whether the outbox relay kept up
(rows still unpublished when the load stopped, and after 10 s). With --profile DIR py-spy
records the service during the capacity phase: DIR/referral-BACKEND.svg (flame graph) and
DIR/referral-BACKEND.folded (collapsed stacks).
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

from benchmarks.common import isolated_env
from meshcli.client import ReferralClient, consent_for
from meshcli.supervisor import Stack, kafka_answers, start_kafka, wait_for
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


def _lifecycle_request(method: str, referral_id: str, version: int) -> api.CompleteRequest | api.TransitionRequest:
    if method == "Complete":
        return api.CompleteRequest(referral_id=referral_id, expected_version=version, outcome=common_pb2.HELPED)
    return api.TransitionRequest(referral_id=referral_id, expected_version=version)


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
                    request = _lifecycle_request(method, referral.referral_id, version)
                    began = clock()
                    version = (await getattr(stub, method)(request, metadata=as_receiver, timeout=10)).version
                    latencies[method].append(clock() - began)
            except grpc.aio.AioRpcError:
                errors.append(1)
    finally:
        await channel.close()


async def _closed_loop(address: str, agencies: int, warmup: float, seconds: float) -> dict:
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


# Open loop: the calls of one referral are scheduled this far apart (an agency's system that
# acts on an answer at once would be closer, one with people in the loop much further).
OPEN_LOOP_STEP = 0.05
# A call sent later than this after its scheduled time counts as not sent on schedule.
LATE_AFTER = 0.005


async def _open_loop(address: str, rate: float, warmup: float, seconds: float) -> dict:
    """Referrals start on a fixed schedule (rate / 5 a second); every call has a scheduled send
    time, and its latency counts from that time, whether or not it could be sent then."""
    loop = asyncio.get_running_loop()
    channels = {pair: open_channel(address, None, aio=True) for pair in PAIRS}
    stubs = {pair: api_grpc.ReferralServiceStub(channel) for pair, channel in channels.items()}
    latencies: dict[str, list[float]] = {"CreateReferral": [], **{m: [] for m in LIFECYCLE}}
    counts = {"errors": 0, "late_sends": 0, "scheduled": 0}
    calls_per_referral = 1 + len(LIFECYCLE)
    interval = calls_per_referral / rate
    began = loop.time() + 0.2
    window = (began + warmup, began + warmup + seconds)

    async def walk(pair: tuple[str, str], start: float) -> None:
        measured = window[0] <= start < window[1]
        sender_id, receiver_id = pair
        stub = stubs[pair]
        referral_id, version = "", 0
        for step, method in enumerate(("CreateReferral", *LIFECYCLE)):
            scheduled = start + step * OPEN_LOOP_STEP
            if (wait := scheduled - loop.time()) > 0:
                await asyncio.sleep(wait)
            elif measured and -wait > LATE_AFTER:
                counts["late_sends"] += 1
            if measured:
                counts["scheduled"] += 1
            try:
                if method == "CreateReferral":
                    answer = await stub.CreateReferral(
                        _request(sender_id, receiver_id), metadata=((DEV_AGENCY_HEADER, sender_id),), timeout=10
                    )
                    referral_id = answer.referral_id
                else:
                    answer = await getattr(stub, method)(
                        _lifecycle_request(method, referral_id, version),
                        metadata=((DEV_AGENCY_HEADER, receiver_id),),
                        timeout=10,
                    )
            except grpc.aio.AioRpcError:
                if measured:
                    counts["errors"] += 1
                return
            version = answer.version
            if measured:
                latencies[method].append(loop.time() - scheduled)

    tasks = []
    number = 0
    go_printed = False
    cpu_before = 0.0
    while (start := began + number * interval) < window[1]:
        if not go_printed and start >= window[0]:
            print("GO", flush=True)
            go_printed, cpu_before = True, time.process_time()
        if (wait := start - loop.time()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(walk(PAIRS[number % len(PAIRS)], start)))
        number += 1
    print("END", flush=True)
    cpu = time.process_time() - cpu_before
    await asyncio.gather(*tasks)
    for channel in channels.values():
        await channel.close()
    return {
        "elapsed": seconds,
        "latencies": latencies,
        "client_cpu_seconds": cpu,
        "offered_per_second": rate,
        **counts,
    }


def drive(address: str, agencies: int, warmup: float, seconds: float, rate: float) -> None:
    """The load generator (its own process): prints GO / END around the measured window, then JSON."""
    if rate > 0:
        result = asyncio.run(_open_loop(address, rate, warmup, seconds))
    else:
        result = asyncio.run(_closed_loop(address, agencies, warmup, seconds))
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


def _start_profiler(pid: int, seconds: float, folder: Path, backend: str) -> list[subprocess.Popen]:
    """py-spy on the service: a flame graph of every thread (.svg), and the collapsed stacks of
    the thread holding the interpreter lock (.folded, `--gil`): where the Python CPU time goes."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("  (no py-spy in the environment: no profile)", flush=True)
        return []
    folder.mkdir(parents=True, exist_ok=True)
    record = [str(py_spy), "record", "-p", str(pid), "-d", str(max(1, int(seconds) - 1)), "-r", "100", "--nonblocking"]
    return [
        subprocess.Popen(record + options, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for options in (
            ["-f", "flamegraph", "-o", str(folder / f"referral-{backend}.svg")],
            ["--gil", "-f", "raw", "-o", str(folder / f"referral-{backend}.folded")],
        )
    ]


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


def _measure(
    address: str,
    server_pid: int,
    *,
    agencies: int,
    seconds: float,
    rate: float,
    profile: tuple[Path, str] | None = None,
) -> tuple[dict, dict]:
    """One load phase from its own process; CPU of each party over the measured window.

    With `profile` (folder, backend) py-spy records the service during the window."""
    warmup = min(3.0, seconds / 5)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_referral",
            "--drive",
            address,
            "--agencies",
            str(agencies),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--rate",
            str(rate),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert driver.stdout is not None
    while (line := driver.stdout.readline()) and line.strip() != "GO":
        pass
    before = (_cpu_seconds(server_pid), _cpu_seconds(driver.pid), _postgres_cpu_seconds(), _machine_busy_seconds())
    profilers = _start_profiler(server_pid, seconds, *profile) if profile is not None else []
    while (line := driver.stdout.readline()) and line.strip() != "END":
        pass
    after = (_cpu_seconds(server_pid), _cpu_seconds(driver.pid), _postgres_cpu_seconds(), _machine_busy_seconds())
    load = os.getloadavg()[0]
    measured = json.loads(driver.stdout.read())
    driver.wait()
    for profiler in profilers:
        profiler.wait(timeout=180)
    cpu = {
        name: round(end - begin, 2)
        for name, begin, end in zip(("service", "client", "postgresql", "machine"), before, after, strict=True)
    }
    return measured, {"cpu": cpu, "load_average": round(load, 2)}


IDLE_SECONDS = 5.0


def _figures(measured: dict, usage: dict) -> dict:
    elapsed, results = measured["elapsed"], measured["latencies"]
    everything = [value for values in results.values() for value in values]
    creates = len(results.get("CreateReferral", []))
    transitions = sum(len(results.get(method, [])) for method in LIFECYCLE)
    operations = creates + transitions
    cpu = usage["cpu"]
    figures = {
        "seconds": round(elapsed, 2),
        "creates": creates,
        "transitions": transitions,
        "errors": measured["errors"],
        "ops_per_second": round(operations / elapsed, 1),
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
        # CPU time per operation: far less sensitive to other load on the machine than the rate.
        "cpu_ms_per_operation": {
            name: round(1000 * value / operations, 3) if operations else None for name, value in cpu.items()
        },
        "load_average": usage["load_average"],
    }
    if "offered_per_second" in measured:
        figures.update(
            offered_per_second=measured["offered_per_second"],
            scheduled=measured["scheduled"],
            late_sends=measured["late_sends"],
            latency_from="scheduled send time",
        )
    else:
        figures["latency_from"] = "send (closed loop)"
    return figures


def run_backend(
    backend: str, seconds: float, agencies: int, rate: float, kafka: str, profile: Path | None = None
) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-referral-{backend}-"))
    database_url, drop = _database(backend, folder)
    # A local-mode mesh of its own (plaintext on loopback, development identities), metrics off.
    env = isolated_env(folder, KAFKA_BOOTSTRAP=kafka, DATABASE_URL=database_url)
    config = MeshSettings(
        kafka_bootstrap=kafka,
        topic_prefix=env["MESH_TOPIC_PREFIX"],
        database_url=database_url,
        referral_grpc_address=env["MESH_REFERRAL_GRPC_ADDRESS"],
    )
    prepare_kafka(config, "bench-referral", give_up_after=60)
    stack = Stack(env=env, log_dir=folder / "logs")
    engine = None
    phases: dict[str, dict] = {}
    try:
        stack.start("referral")
        probe = ReferralClient(config.referral_grpc_address, PAIRS[0][0])
        probe.wait_until_ready(timeout=60)
        probe.close()
        engine = make_engine(database_url)
        server_pid = stack.processes["referral"].pid
        address = config.referral_grpc_address
        # What the service spends with no calls at all (relay polls, readiness probes, directory
        # checks): reported beside the per-operation figures, which include it.
        idle_began = _cpu_seconds(server_pid)
        time.sleep(IDLE_SECONDS)
        idle_cores = (_cpu_seconds(server_pid) - idle_began) / IDLE_SECONDS

        # Each phase's first seconds warm up connections, pools and the first Kafka batches
        # and are not measured.
        measured, usage = _measure(
            address,
            server_pid,
            agencies=agencies,
            seconds=seconds,
            rate=0,
            profile=(profile, backend) if profile is not None else None,
        )
        phases["capacity"] = {"agencies": agencies, **_figures(measured, usage)}
        phases["capacity"]["outbox_unpublished_at_stop"] = _unpublished(engine)
        wait_for(lambda: _unpublished(engine) == 0, timeout=10)
        phases["capacity"]["outbox_unpublished_10s_later"] = _unpublished(engine)
        if rate > 0:
            measured, usage = _measure(address, server_pid, agencies=agencies, seconds=seconds, rate=rate)
            phases["open_loop"] = _figures(measured, usage)
            phases["open_loop"]["outbox_unpublished_at_stop"] = _unpublished(engine)
            wait_for(lambda: _unpublished(engine) == 0, timeout=10)
            phases["open_loop"]["outbox_unpublished_10s_later"] = _unpublished(engine)
        crashed = stack.crashed()
    finally:
        stack.stop_all()
        if engine is not None:
            engine.dispose()
        drop()
    return {"backend": backend, "service_idle_cores": round(idle_cores, 3), **phases, "service_crashed": bool(crashed)}


def _say(backend: str, phase: str, result: dict) -> None:
    extra = ""
    if "offered_per_second" in result:
        extra = f"  offered {result['offered_per_second']:.0f}/s, late sends {result['late_sends']}"
    print(
        f"  {backend} {phase}: {result['ops_per_second']:8.1f} ops/s  (creates {result['creates_per_second']:.1f}/s, "
        f"transitions {result['transitions_per_second']:.1f}/s)  p50 {result['p50_ms']:.1f} ms  "
        f"p99 {result['p99_ms']:.1f} ms (from {result['latency_from']})  errors {result['errors']}{extra}  "
        f"outbox backlog {result['outbox_unpublished_at_stop']} -> {result['outbox_unpublished_10s_later']}",
        flush=True,
    )
    busy, per_op = result["cpu_cores_busy"], result["cpu_ms_per_operation"]
    if not result["creates"] + result["transitions"]:
        print("           no operation completed: no CPU per operation", flush=True)
        return
    print(
        f"           CPU per operation: service {per_op['service']:.3f} ms, postgresql {per_op['postgresql']:.3f} ms, "
        f"client {per_op['client']:.3f} ms, whole machine {per_op['machine']:.3f} ms; "
        f"cores busy: service {busy['service']:.2f}, postgresql {busy['postgresql']:.2f}, "
        f"whole machine {busy['machine']:.2f} of {os.cpu_count()}; load average {result['load_average']:.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="measured load per phase (default 15)")
    parser.add_argument("--agencies", type=int, default=16, help="concurrent agency workers (default 16)")
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="open-loop phase: operations offered per second (0: no such phase)"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a py-spy profile of the service per backend into this folder"
    )
    parser.add_argument("--drive", metavar="ADDRESS", help=argparse.SUPPRESS)  # the load process
    parser.add_argument("--warmup", type=float, default=3.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        drive(args.drive, args.agencies, args.warmup, args.seconds, args.rate)
        return 0

    kafka = os.environ.get("KAFKA_BOOTSTRAP")
    if not kafka:
        if not kafka_answers():
            start_kafka()
        kafka = "127.0.0.1:" + os.environ.get("KAFKA_PORT", "9092")

    runs = []
    for backend in [name.strip() for name in args.backends.split(",") if name.strip()]:
        print(
            f"referral benchmark: {backend}, capacity with {args.agencies} agencies, then open loop at "
            f"{args.rate:.0f} ops/s, {args.seconds:.0f}s each ...",
            flush=True,
        )
        result = run_backend(backend, args.seconds, args.agencies, args.rate, kafka, args.profile)
        runs.append(result)
        print(f"  {backend}: the idle service used {result['service_idle_cores']:.3f} of a core", flush=True)
        for phase in ("capacity", "open_loop"):
            if phase in result:
                _say(backend, phase, result[phase])

    report = {
        "benchmark": "referral",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
        "target": {"ops_per_second": 1000, "p99_ms": 50, "cpu_ms_per_operation": 0.8, "backend": "postgresql"},
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0 if all(not run["service_crashed"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
