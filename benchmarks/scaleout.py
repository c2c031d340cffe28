"""Scale-out under kills: `python -m benchmarks.scaleout` (and tests/integration/scaleout/).

Two replicas of every service on one machine, sharing what a cluster shares: the broker with
topics of 6 partitions (a private topic prefix on the shared broker), one referral PostgreSQL
database, one notify PostgreSQL database. A steady stream of CreateReferral calls goes to both referral
replicas (a client that fails over to the other replica and retries with the same request key,
as a load balancer and an agency's system would). Mid-load, one replica of each service is
killed with SIGKILL and started again. Then the load stops, the mesh settles, and
benchmarks/chaos_checks.py compares what was accepted with what the databases and topics hold:
every referral exactly one assignment, its notifications exactly once by event id, every due
escalation fired exactly once, no outbox row left unpublished, consumer lag back to 0.

Prints `referrals: N, kills: K, lost: 0, duplicated: 0` and writes bench-results/scaleout.json.
Exits 1 when anything was lost or duplicated, or rows or lag were left.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import psycopg

from benchmarks.chaos import Keeper, Load, NotificationWatch, recovery_seconds, say, say_findings
from benchmarks.chaos_checks import check, consumer_lag, faust_groups
from benchmarks.common import isolated_env, write_results
from benchmarks.replicas import SERVICES, ReplicaStack, shared_notify_env
from meshcli.demo import DEMO_ESCALATION_POLICY, SENDER, demo_request
from meshcli.supervisor import kafka_answers, settings_from, start_kafka, wait_for
from meshkernel.config import PROJECT_ROOT
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import NOTIFICATIONS
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc
from services.referral.adapters.identity import DEV_AGENCY_HEADER

POSTGRES_SCRIPT = PROJECT_ROOT / "scripts" / "postgres.sh"
# The demo escalation policy's second deadline (25 s) plus the checks' margin (20 s), and slack.
LAST_DEADLINE_DUE_SECONDS = 50.0


class FailoverLoad(Load):
    """CreateReferral spread over the referral replicas; a failed call goes to the next one."""

    def __init__(self, addresses: list[str], rate: float, prefix: str, give_up_after: float = 120.0):
        super().__init__(addresses[0], rate, prefix, give_up_after)
        self.addresses = addresses

    def _create(self, case_id: str) -> None:
        first_attempt = time.time()
        request = demo_request(case_id)
        turn = int(case_id.rsplit("-", 1)[-1])
        while time.time() - first_attempt < self.give_up_after:
            address = self.addresses[turn % len(self.addresses)]
            turn += 1
            try:
                with grpc.insecure_channel(address) as channel:
                    api_grpc.ReferralServiceStub(channel).CreateReferral(
                        request, metadata=((DEV_AGENCY_HEADER, SENDER),), timeout=5
                    )
                with self.lock:
                    self.accepted[case_id] = first_attempt
                return
            except grpc.RpcError:
                with self.lock:
                    self.failed_attempts += 1
                time.sleep(0.3)
        with self.lock:
            self.abandoned.append(case_id)


class Databases:
    """Fresh databases for the run on a PostgreSQL server (the shared one of scripts/postgres.sh)."""

    def __init__(self, server_url: str | None):
        if not server_url:
            subprocess.run([str(POSTGRES_SCRIPT), "start"], check=True, capture_output=True)
            server_url = subprocess.run(
                [str(POSTGRES_SCRIPT), "url"], check=True, capture_output=True, text=True
            ).stdout.strip()
        self.base = server_url.rsplit("/", 1)[0]
        self.names: list[str] = []

    def create(self, purpose: str) -> str:
        name = f"scaleout_{purpose}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(f"{self.base}/postgres", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return f"{self.base}/{name}"

    def drop_all(self) -> None:
        with psycopg.connect(f"{self.base}/postgres", autocommit=True) as connection:
            for name in self.names:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2, help="replicas of each service")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rate", type=float, default=2.0, help="CreateReferral calls per second")
    parser.add_argument("--between", type=float, default=10.0, help="seconds of load between kills")
    parser.add_argument("--settle-within", type=float, default=150.0)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("TEST_POSTGRES_URL"), help="default: scripts/postgres.sh"
    )
    parser.add_argument("--notify-sqlite", action="store_true", help="notify replicas share one SQLite file instead")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy the replicas' logs here after a failure")
    parser.add_argument("--results", default="scaleout", help="name of the bench-results/*.json file")
    options = parser.parse_args(argv)

    started = time.monotonic()
    if "KAFKA_BOOTSTRAP" not in os.environ and not kafka_answers():
        start_kafka()
    databases = Databases(options.postgres_url)
    with tempfile.TemporaryDirectory(prefix="scaleout-") as folder_name:
        folder = Path(folder_name)
        stack: ReplicaStack | None = None
        try:
            env = isolated_env(
                folder,
                DATABASE_URL=databases.create("referral"),
                MESH_ESCALATION_POLICY_PATH=str(DEMO_ESCALATION_POLICY),
                MESH_TOPIC_PARTITIONS=str(options.partitions),
                MESH_LOG_LEVEL="INFO",
                # Notify replicas share one PostgreSQL store (--notify-sqlite: one SQLite file).
                **shared_notify_env(folder, None if options.notify_sqlite else databases.create("notify")),
            )
            if "KAFKA_BOOTSTRAP" not in env:
                env["KAFKA_BOOTSTRAP"] = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
            config = settings_from(env)
            prepare_kafka(config, "scaleout", give_up_after=60)
            stack = ReplicaStack(env=env, log_dir=folder / "logs", state_root=folder / "replicas")
            stack.start_all(options.replicas)
            say(f"{options.replicas} replicas of {', '.join(SERVICES)}; {options.partitions} partitions per topic")
            result = _run(options, config, stack, started)
            if result != 0 and options.keep_logs:
                shutil.copytree(folder / "logs", options.keep_logs, dirs_exist_ok=True)
                say(f"the replicas' logs are in {options.keep_logs}")
            if result != 0:
                say("last lines of the replicas' logs:")
                for log in sorted((folder / "logs").glob("*.log")):
                    for line in log.read_text(errors="replace").splitlines()[-4:]:
                        print(f"  {log.stem}: {line[:300]}")
            return result
        finally:
            if stack is not None:
                stack.stop_all()
            databases.drop_all()


def _run(options, config, stack: ReplicaStack, started: float) -> int:
    keeper = Keeper(stack)
    keeper.start()
    watch = NotificationWatch(config.kafka_bootstrap, config.topic(NOTIFICATIONS.base_name))
    watch.start()
    prefix = f"scale-{uuid.uuid4().hex[:8]}-"
    load = FailoverLoad([stack.address(name) for name in stack.names("referral")], options.rate, prefix)
    load_began = time.time()
    load.start()
    say(f"steady load: {options.rate:g} referrals/s; waiting for the first notifications")
    warm = recovery_seconds(load, watch, load_began, timeout=180)
    if warm is None:
        say("the mesh never delivered a notification; giving up")
        load.finish()
        return 1

    killed = [stack.names(service)[0] for service in SERVICES]
    recovered: dict[str, float | None] = {}
    for name in killed:
        time.sleep(options.between)
        say(f"SIGKILL {name}, started again")
        keeper.restart(name)
        recovered[name] = recovery_seconds(load, watch, time.time(), timeout=45)
        say(f"  a referral made after it was complete in {recovered[name]} s")
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
        if not (notified and time.time() > last_accepted + LAST_DEADLINE_DUE_SECONDS):
            return False
        try:
            return not any(consumer_lag(config, faust_groups(config)).values())
        except Exception:
            return False

    wait_for(settled, timeout=options.settle_within, interval=2.0)
    settle_seconds = round(time.monotonic() - settle_start, 1)
    keeper.stopping.set()
    watch.stopping.set()

    findings = check(config, set(load.accepted), prefix, checked_at=time.time())
    lag_samples: list[dict[str, int]] = []

    def caught_up() -> bool:
        lag_samples.append(consumer_lag(config, faust_groups(config)))
        return not any(lag_samples[-1].values())

    wait_for(caught_up, timeout=60, interval=1.0)
    findings.lag = lag_samples[-1]
    healthy = (
        findings.total_lost == 0
        and findings.total_duplicated == 0
        and findings.stranded_outbox_rows == 0
        and not any(findings.lag.values())
        and not load.abandoned
    )
    figures = {
        "replicas": options.replicas,
        "partitions": options.partitions,
        "kills": len(killed),
        "killed": killed,
        "rate_per_s": options.rate,
        **load.figures(),
        "complete_after_kill_s": recovered,
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
        f"referrals: {findings.referrals}, kills: {len(killed)}, lost: {findings.total_lost}, "
        f"duplicated: {findings.total_duplicated}",
        flush=True,
    )
    print(f"wrote {path}", flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
