"""Kafka for `make bench-e2e`: reading back when each case reached each topic, and the raw
Kafka floor (a bare producer and consumer, records of the same size) measured in the same run.

Times are `time.monotonic()`, the clock the load generator's schedule uses (one clock for
every process on the machine).
"""

from __future__ import annotations

import os
import struct
import threading
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.common import latency_summary
from meshkernel.envelope import MalformedEvent, decode


class Arrivals(threading.Thread):
    """Notes when the first event of each case arrives on each watched topic."""

    def __init__(self, bootstrap: str, topics: dict[str, str], size_topic: str):
        super().__init__(daemon=True)
        self.kinds = topics  # topic name -> label
        self.size_topic = size_topic
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
                now = time.monotonic()
                for record in records:
                    try:
                        envelope = decode(record.value)
                    except MalformedEvent:
                        continue
                    seen = self.first_seen[self.kinds[record.topic]]
                    seen.setdefault(envelope.case_id, now)
                    if record.topic == self.size_topic and len(self.sizes) < 10_000:
                        self.sizes.append(len(record.value))
        self.consumer.close()

    def record_size(self) -> int:
        return int(sum(self.sizes) / len(self.sizes)) if self.sizes else 300


def _raw_consumer(bootstrap: str, topic: str) -> KafkaConsumer:
    """A reader of every partition of a topic made for this measurement, from its start, with
    no consumer group (no rebalance to wait for): records produced while it starts are read too."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=5)
    deadline = time.monotonic() + 30
    partitions = consumer.partitions_for_topic(topic)
    while not partitions and time.monotonic() < deadline:
        time.sleep(0.2)
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RuntimeError(f"topic {topic} has no partitions after 30 s")
    consumer.assign([TopicPartition(topic, partition) for partition in partitions])
    consumer.seek_to_beginning()
    return consumer


def raw_kafka_latency(bootstrap: str, topic: str, size: int, rate: float, seconds: float) -> dict:
    """Produce records of `size` bytes at `rate` (acks=all, no linger) and time each from its
    scheduled send time to its consumption."""
    consumer = _raw_consumer(bootstrap, topic)
    latencies: list[float] = []
    total = int(rate * seconds)
    done = threading.Event()

    def consume() -> None:
        while len(latencies) < total and not done.is_set():
            for records in consumer.poll(timeout_ms=50).values():
                now = time.monotonic()
                latencies.extend((now - struct.unpack(">d", record.value[:8])[0]) * 1000 for record in records)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    padding = os.urandom(max(0, size - 8))
    begin = time.monotonic()
    for index in range(total):
        due = begin + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.send(topic, key=f"raw-{index % 64}".encode(), value=struct.pack(">d", due) + padding)
    producer.flush()
    reader.join(timeout=30)
    done.set()
    producer.close()
    consumer.close()
    return {**latency_summary(latencies), "rate_per_s": rate, "missing": total - len(latencies)}


def raw_kafka_burst(bootstrap: str, topic: str, size: int, records: int, timeout: float = 30.0) -> dict:
    """The raw client's rate: `records` records of `size` bytes produced as fast as the
    producer takes them (acks=all, linger 5 ms) and consumed by one consumer; the rate is
    records over the time from the first send to the last record read."""
    consumer = _raw_consumer(bootstrap, topic)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    value = os.urandom(size)
    received = 0
    begin = time.monotonic()
    for index in range(records):
        producer.send(topic, key=f"raw-{index % 64}".encode(), value=value)
    producer.flush()
    produced_in = time.monotonic() - begin
    deadline = begin + timeout
    while received < records and time.monotonic() < deadline:
        received += sum(len(batch) for batch in consumer.poll(timeout_ms=100).values())
    elapsed = time.monotonic() - begin
    producer.close()
    consumer.close()
    return {
        "records": records,
        "received": received,
        "produce_rate_per_s": round(records / produced_in, 0),
        "produce_to_consume_rate_per_s": round(received / elapsed, 0),
    }
