"""Hostile input everywhere: `python -m benchmarks.fuzz` (or `make fuzz`).

1. Every decoder and parser in process (benchmarks/fuzz_parsers.py): the event envelope and
   each payload kind, binding facts (JSON and protobuf), the `mesh region resolve` JSON input,
   the region and escalation policy files (YAML text and parsed data). FUZZ_EXAMPLES each.
2. Every gRPC method of the three services, live (benchmarks/fuzz_grpc.py): generated and
   mutated requests and raw bytes, FUZZ_GRPC_EXAMPLES per method.
3. FUZZ_RECORDS (100,000) malformed records into each consumed topic (random bytes, empty
   and null values, valid envelopes made invalid), produced with a raw Kafka producer: every
   one must reach the dead-letter topic with a reason, from every consumer of that topic, no
   consumer may stop, and the consumers' lag must return to 0.

Steps 2 and 3 use a private broker on free ports (the shared one never sees the flood).
Prints `inputs: N, crashes: 0, dead-lettered: M`, writes bench-results/fuzz.json, and exits
1 on any crash, hang, missing dead letter or remaining lag.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.chaos_checks import consumer_lag, faust_groups
from benchmarks.common import isolated_env, write_results
from benchmarks.fuzz_grpc import GrpcTally, fuzz_service
from benchmarks.fuzz_parsers import VALID_ENVELOPES, run_all
from benchmarks.private_infra import PrivateKafka
from meshcli.supervisor import Stack, settings_from
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ASSIGNMENTS, DEAD_LETTERS, ESCALATIONS, OVERRIDES, REFERRAL_EVENTS
from referralmesh.v1 import events_pb2

# Which services consume which topic: a malformed record gets one dead letter from each.
CONSUMERS = {
    REFERRAL_EVENTS: ("region", "notify"),
    OVERRIDES: ("region",),
    ASSIGNMENTS: ("notify",),
    ESCALATIONS: ("notify",),
}
FLOOD_KEY = b"fuzz-flood-"
PROGRESS_EVERY = 30.0  # seconds between progress lines while waiting


@dataclass
class FloodLetters:
    """What the dead-letter topic holds for the flood: counts only, no letters kept."""

    read: int = 0
    found: Counter = field(default_factory=Counter)
    distinct: set = field(default_factory=set)
    reasons: Counter = field(default_factory=Counter)
    complete: bool = True

    def add(self, letter: events_pb2.DeadLetter) -> None:
        self.read += 1
        if not letter.key.startswith(FLOOD_KEY):
            return
        self.found[(letter.source_topic, letter.consumer)] += 1
        self.distinct.add((letter.source_topic, letter.consumer, letter.partition, letter.offset))
        self.reasons[letter.reason] += 1

    @property
    def letters(self) -> int:
        return sum(self.found.values())


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _broken_envelope(rng: random.Random) -> bytes | None:
    """A valid envelope with one thing wrong that every consumer must refuse."""
    envelope = events_pb2.EventEnvelope.FromString(rng.choice(VALID_ENVELOPES))
    damage = rng.choice(("schema", "event_id", "case_id", "payload", "truncate", "garbage"))
    if damage == "schema":
        envelope.schema_version = rng.choice((0, 2, 99, 2**32 - 1))
    elif damage == "event_id":
        envelope.event_id = ""
    elif damage == "case_id":
        envelope.case_id = ""
    elif damage == "payload":
        envelope.ClearField("payload")
    raw = envelope.SerializeToString()
    if damage == "truncate":
        raw = raw[: rng.randrange(1, len(raw))]
    elif damage == "garbage":
        raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + raw
    return raw


def malformed_records(count: int, seed: int) -> list[bytes | None]:
    """`count` values that decode() refuses whatever payload a consumer expects."""
    rng = random.Random(seed)
    values: list[bytes | None] = []
    while len(values) < count:
        roll = rng.random()
        if roll < 0.01:
            candidate = None if rng.random() < 0.5 else b""
        elif roll < 0.5:
            candidate = rng.randbytes(rng.randrange(1, 200))
        else:
            candidate = _broken_envelope(rng)
        if candidate:
            try:
                decode(candidate)
                continue  # valid by chance: not part of a malformed flood
            except MalformedEvent:
                pass
        values.append(candidate)
    return values


def flood(config, per_topic: int, seed: int) -> dict[str, int]:
    """Produce the malformed records as fast as the broker takes them; return per topic."""
    producer = KafkaProducer(
        bootstrap_servers=config.kafka_bootstrap,
        acks=1,
        linger_ms=20,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=5,
    )
    sent = {}
    for index, spec in enumerate(CONSUMERS):
        name = config.topic(spec.base_name)
        for number, value in enumerate(malformed_records(per_topic, seed + index)):
            producer.send(name, key=FLOOD_KEY + str(number).encode(), value=value)
        sent[name] = per_topic
        say(f"  {per_topic} records handed to the producer for {name}")
    producer.flush(timeout=600)
    producer.close()
    return sent


def read_flood_letters(config, stall_after: float) -> FloodLetters:
    """Read the whole dead-letter topic once and tally the flood's letters as they stream past
    (half a million letters are not kept in memory). Gives up only when reading stops moving
    for `stall_after` seconds, never after a fixed time that a loaded machine may not meet."""
    topic = config.topic(DEAD_LETTERS.base_name)
    consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, group_id=None, enable_auto_commit=False)
    tally = FloodLetters()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        last_moved = last_said = time.monotonic()
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            read = 0
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in batch:
                    tally.add(events_pb2.DeadLetter.FromString(record.value))
                read += len(batch)
            now = time.monotonic()
            if read:
                last_moved = now
            elif now - last_moved > stall_after:
                say(f"  reading the dead letters stalled for {stall_after:.0f} s; tallied {tally.read}")
                tally.complete = False
                break
            if now - last_said >= PROGRESS_EVERY:
                last_said = now
                say(f"  read {tally.read} of {sum(ends.values())} dead letters")
        return tally
    finally:
        consumer.close()


def dead_letter_count(config) -> int:
    topic = config.topic(DEAD_LETTERS.base_name)
    consumer = KafkaConsumer(bootstrap_servers=config.kafka_bootstrap, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples",
        type=int,
        default=int(os.environ.get("FUZZ_EXAMPLES", "500")),
        help="generated inputs per in-process parser (FUZZ_EXAMPLES)",
    )
    parser.add_argument(
        "--grpc-examples",
        type=int,
        default=int(os.environ.get("FUZZ_GRPC_EXAMPLES", "100")),
        help="generated requests per gRPC method (FUZZ_GRPC_EXAMPLES)",
    )
    parser.add_argument(
        "--records",
        type=int,
        default=int(os.environ.get("FUZZ_RECORDS", "100000")),
        help="malformed records per consumed topic (FUZZ_RECORDS)",
    )
    parser.add_argument(
        "--drain-within",
        type=float,
        default=float(os.environ.get("FUZZ_DRAIN_SECONDS", "7200")),
        help="upper bound on the wait for the dead letters (FUZZ_DRAIN_SECONDS)",
    )
    parser.add_argument(
        "--stall-after",
        type=float,
        default=float(os.environ.get("FUZZ_STALL_SECONDS", "300")),
        help="give up when no dead letter arrived for this long (FUZZ_STALL_SECONDS)",
    )
    parser.add_argument("--results", default="fuzz")
    options = parser.parse_args(argv)
    started = time.monotonic()

    say(f"parsers: {options.examples} inputs each")
    parsers = run_all(options.examples)
    for crash in parsers.crashes:
        say(f"  crash in {crash.target}: {crash.error} on {crash.sample}")

    kafka = PrivateKafka()
    grpc_tally = GrpcTally()
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        stack = None
        try:
            say(f"private Kafka on {kafka.bootstrap}")
            kafka.start()
            env = isolated_env(Path(folder), KAFKA_BOOTSTRAP=kafka.bootstrap, MESH_TOPIC_PARTITIONS="2")
            config = settings_from(env)
            prepare_kafka(config, "fuzz", give_up_after=60)
            stack = Stack(env=env, log_dir=Path(folder) / "logs")
            for service in ("referral", "region", "notify"):
                stack.start(service)
            addresses = {
                "referral": config.referral_grpc_address,
                "region": config.region_grpc_address,
                "notify": config.notify_grpc_address,
            }
            for service, address in addresses.items():
                say(f"gRPC {service}: {options.grpc_examples} requests per method")
                fuzz_service(address, service, options.grpc_examples, grpc_tally)
            for problem in grpc_tally.crashes:
                say(f"  {problem}")
            flood_figures = _flood_and_drain(config, stack, options)
            stopped = stack.crashed()
        finally:
            if stack is not None:
                stack.stop_all()
            kafka.remove()

    inputs = sum(parsers.inputs.values()) + grpc_tally.total + flood_figures["records"]
    crashes = len(parsers.crashes) + len(grpc_tally.crashes) + len(stopped)
    passed = (
        crashes == 0
        and flood_figures["missing"] == 0
        and flood_figures["without_reason"] == 0
        and flood_figures["read_completely"]
        and not any(flood_figures["lag"].values())
    )
    figures = {
        "inputs": inputs,
        "crashes": crashes,
        "dead_lettered": flood_figures["dead_lettered"],
        "passed": passed,
        "parser_inputs": parsers.inputs,
        "parser_crashes": [vars(crash) for crash in parsers.crashes],
        "grpc_calls": grpc_tally.calls,
        "grpc_status_codes": grpc_tally.codes,
        "grpc_crashes": grpc_tally.crashes,
        "services_stopped": stopped,
        **{f"flood_{key}": value for key, value in flood_figures.items()},
        "run_seconds": round(time.monotonic() - started, 1),
    }
    path = write_results(options.results, figures)
    print(f"inputs: {inputs}, crashes: {crashes}, dead-lettered: {flood_figures['dead_lettered']}", flush=True)
    print(f"wrote {path}", flush=True)
    return 0 if passed else 1


def _flood_and_drain(config, stack: Stack, options) -> dict:
    baseline = dead_letter_count(config)
    expected = {
        (config.topic(spec.base_name), consumer): options.records
        for spec, consumers in CONSUMERS.items()
        for consumer in consumers
    }
    say(f"flood: {options.records} malformed records into each of {len(CONSUMERS)} consumed topics")
    begin = time.monotonic()
    flood(config, options.records, seed=20261130)
    produced_in = round(time.monotonic() - begin, 1)
    total = sum(expected.values())
    say(f"  produced in {produced_in} s; waiting for {total} dead letters")
    _wait_for_dead_letters(config, stack, baseline, total, options)
    drained_in = round(time.monotonic() - begin, 1)
    lag = _wait_for_no_lag(config, stack, options.stall_after)
    tally = read_flood_letters(config, options.stall_after)
    missing = sum(max(0, count - tally.found.get(key, 0)) for key, count in expected.items())
    say(f"  {tally.letters} dead letters in {drained_in} s; reasons: {dict(tally.reasons.most_common(8))}")
    return {
        "records": options.records * len(CONSUMERS),
        "dead_lettered": len(tally.distinct),
        "missing": missing,
        "redelivered": tally.letters - len(tally.distinct),
        "without_reason": tally.reasons.get("", 0),
        "reasons": dict(tally.reasons),
        "produced_in_s": produced_in,
        "drained_in_s": drained_in,
        "read_completely": tally.complete,
        "lag": lag,
    }


def _wait_for_dead_letters(config, stack: Stack, baseline: int, total: int, options) -> bool:
    """Wait while the dead letters keep coming: report progress every PROGRESS_EVERY seconds
    and give up when none arrived for `stall_after` seconds (or after `drain_within`), so a slow,
    loaded machine only takes longer, and a consumer that stopped ends the run instead of
    leaving it waiting in silence."""
    started = last_moved = last_said = time.monotonic()
    seen = said = dead_letter_count(config) - baseline
    while True:
        done = dead_letter_count(config) - baseline
        now = time.monotonic()
        if done >= total:
            return True
        if stack.crashed():
            say(f"  a service stopped: {stack.crashed()}")
            return False
        if done > seen:
            seen, last_moved = done, now
        if now - last_said >= PROGRESS_EVERY:
            rate = (done - said) / max(now - last_said, 1e-9)  # over the last interval only
            last_said, said = now, done
            left = f"{(total - done) / rate:.0f} s" if rate > 0 else "unknown"
            lag = consumer_lag(config, faust_groups(config))
            say(f"  {done} of {total} dead letters ({rate:.0f}/s, about {left} left); lag {lag}")
        if now - last_moved > options.stall_after:
            say(f"  no new dead letter for {options.stall_after:.0f} s: {done} of {total}; giving up")
            return False
        if now - started > options.drain_within:
            say(f"  not drained within {options.drain_within:.0f} s: {done} of {total}; giving up")
            return False
        time.sleep(5.0)


def _wait_for_no_lag(config, stack: Stack, stall_after: float) -> dict[str, int]:
    """The consumers commit after they process; wait until their lag is 0 while it keeps falling."""
    best = None
    last_moved = time.monotonic()
    while True:
        lag = consumer_lag(config, faust_groups(config))
        behind = sum(value for value in lag.values() if value > 0)
        if not any(lag.values()) or stack.crashed():
            return lag
        if best is None or behind < best:
            best, last_moved = behind, time.monotonic()
        if time.monotonic() - last_moved > stall_after:
            say(f"  lag stayed at {lag} for {stall_after:.0f} s")
            return lag
        time.sleep(5.0)


if __name__ == "__main__":
    sys.exit(main())
