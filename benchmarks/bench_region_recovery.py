"""Region worker recovery time: `python -m benchmarks.bench_region_recovery [--cases 50000]`.

How long a region worker takes from its start to ready (`GET /ready` 200: partitions assigned,
both tables recovered) with N open cases in its tables, three ways:
  1. `memory`: the tables rebuilt from their changelog topics (every record of every case);
  2. `rocksdb, empty store`: the same, written into a new local RocksDB store (a first start, or
     a restart after a crash, when the local store is not trusted);
  3. `rocksdb, after a clean stop`: the local store reused, only the changelog tail read;
and, for the fixed cost of starting the process, the same worker with no cases at all.

The cases are written straight onto the two changelog topics (as the worker would have written
them: a `cases` record and an `escalation-state` record with pending deadlines per case, keyed
and partitioned like the worker's), so the figures measure recovery, not the decisions. Uses
its own topic prefix and state folder. Writes bench-results/region_recovery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.partitioner.default import murmur2

from meshcli.supervisor import Stack, private_mesh_env, settings_from
from meshkernel.config import PROJECT_ROOT
from meshkernel.kafka import prepare_kafka
from services.region.adapters.escalating import RECORD_FORMAT
from services.region.adapters.streams import ESCALATION_TABLE, TABLE
from services.region.domain.escalation import EscalationEngine, ReferralFacts, load_escalation_policy, state_to_dict

RESULTS = PROJECT_ROOT / "bench-results" / "region_recovery.json"


def partition_of(case_id: str, partitions: int) -> int:
    """The partition of the case on the input topics (Kafka's default partitioner)."""
    return (murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


def case_record(case_id: str, now: str) -> dict:
    entry = {
        "at": now,
        "event_id": f"assignment-{case_id}",
        "caused_by": f"event-{case_id}",
        "trigger": "ReferralRequested",
        "referral_id": f"ref-{case_id}",
        "region": "GM0363",
        "previous_region": "",
        "handover_to": "GM0014",
        "rule": "handover_to_better_bound_region",
        "reason_code": "",
        "bound_nowhere": False,
        "no_programme_accepts": False,
        "policy_version": "2026.2",
    }
    return {
        "state": {"base_region": "GM0363", "override": None, "proposed": "GM0014", "provisional": False},
        "referral_id": f"ref-{case_id}",
        "referral_ids": [f"ref-{case_id}"],
        "sender": "central-amsterdam",
        "receiver": "shelter-amsterdam",
        "parties": ["central-amsterdam", "shelter-amsterdam"],
        "seen": [f"event-{case_id}"],
        "history": [entry],
        "resolved": ["GM0363", "GM0014", "handover_to_better_bound_region", False, False],
        "updated_at": now,
    }


def open_case_records(
    engine: EscalationEngine, case_id: str, partition: int, requested_at: float, now_text: str
) -> tuple[bytes, bytes, bytes]:
    """The key and the two changelog values (cases table, escalation table) the worker writes for
    one case just requested, encoded as the worker encodes them."""
    engine.on_referral_event(
        ReferralFacts(
            case_id=case_id,
            referral_id=f"ref-{case_id}",
            event_type="ReferralRequested",
            to_status="REQUESTED",
            version=1,
            occurred_at=requested_at,
            urgency="NORMAL",
            addressee="shelter-amsterdam",
            holder="central-amsterdam",
        )
    )
    state = {
        "format": RECORD_FORMAT,
        "partition": partition,
        "state": state_to_dict(engine.states.pop(case_id)),
        "traces": {},
        "outbox": {},
    }
    return json.dumps(case_id).encode(), json.dumps(case_record(case_id, now_text)).encode(), json.dumps(state).encode()


def write_cases(config, count: int) -> float:
    """Produce `count` open cases onto both changelog topics; returns the seconds it took."""
    app_id = f"{config.topic_prefix}referral-mesh-region"
    cases_topic, state_topic = (f"{app_id}-{name}-changelog" for name in (TABLE, ESCALATION_TABLE))
    engine = EscalationEngine(load_escalation_policy(config.escalation_policy_path))
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, linger_ms=20, batch_size=256 * 1024)
    started = time.monotonic()
    now = time.time()
    now_text = datetime.now(UTC).isoformat()
    run = uuid.uuid4().hex[:8]
    for index in range(count):
        case_id = f"case-{run}-{index:08d}"
        partition = partition_of(case_id, config.topic_partitions)
        key, case_value, state_value = open_case_records(engine, case_id, partition, now, now_text)
        producer.send(cases_topic, key=key, value=case_value, partition=partition)
        producer.send(state_topic, key=key, value=state_value, partition=partition)
    producer.flush()
    producer.close()
    return time.monotonic() - started


def remove_topics(config) -> None:
    admin = KafkaAdminClient(bootstrap_servers=config.kafka_bootstrap)
    try:
        mine = [name for name in admin.list_topics() if name.startswith(config.topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def time_to_ready(stack: Stack, port: int, timeout: float) -> float:
    started = time.monotonic()
    stack.start("region")
    while not ready(port):
        if stack.crashed():
            raise RuntimeError("the region worker stopped while recovering")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the region worker was not ready within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for one recovery")
    args = parser.parse_args()

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    folder = Path(tempfile.mkdtemp(prefix="region-recovery-"))
    figures: dict[str, float] = {}

    def run(label: str, store: str, *, stop: str = "stop", fresh: bool = False) -> float:
        env = dict(base_env, MESH_REGION_TABLE_STORE=store)
        stack = Stack(env=env, log_dir=folder / "logs")
        seconds = time_to_ready(stack, config.region_web_port, args.timeout)
        (stack.kill if stop == "kill" else stack.stop)("region")
        figures[label] = round(seconds, 2)
        print(f"  {label:<48} {seconds:8.2f} s to ready", flush=True)
        return seconds

    # A worker with no cases: the fixed cost of a start (imports, Kafka, group join).
    base_env = private_mesh_env(folder / "empty", bootstrap, MESH_REGION_TABLE_STORE="rocksdb")
    config = settings_from(base_env)
    prepare_kafka(config, "bench-region-recovery", give_up_after=60)
    print(f"region worker recovery, {args.cases} open cases, {config.topic_partitions} partitions")
    run("no cases (fixed cost of a start)", "rocksdb")
    remove_topics(config)

    base_env = private_mesh_env(folder / "cases", bootstrap)
    config = settings_from(base_env)
    prepare_kafka(config, "bench-region-recovery", give_up_after=60)
    run("(creating the changelog topics)", "memory")  # the worker creates its changelogs
    figures.pop("(creating the changelog topics)")
    written = write_cases(config, args.cases)
    print(f"  {args.cases} cases written to both changelogs in {written:.1f} s")
    run("memory: from the changelogs", "memory")
    run("rocksdb, empty store: from the changelogs", "rocksdb")
    run("rocksdb, after a clean stop: local store + tail", "rocksdb", stop="kill")
    run("rocksdb, after a crash (SIGKILL): from the changelogs", "rocksdb")

    remove_topics(config)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "region_recovery",
                "cases": args.cases,
                "partitions": config.topic_partitions,
                "seconds_to_ready": figures,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "at": datetime.now(UTC).isoformat(),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written to {RESULTS.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
