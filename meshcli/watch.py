"""Reads mesh topics from the start and yields the decoded events of chosen cases."""
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from kafka import KafkaConsumer

from meshkernel.config import MeshSettings
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.topics import TopicSpec
from referralmesh.v1 import events_pb2


class EventWatcher:
    def __init__(self, config: MeshSettings, specs: list[TopicSpec]):
        self.names = {config.topic(spec.base_name): spec for spec in specs}
        self.consumer = KafkaConsumer(
            *self.names,
            bootstrap_servers=config.kafka_bootstrap,
            group_id=f"mesh-watch-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )

    def events(self, case_ids: set[str], timeout: float) -> Iterator[tuple[str, events_pb2.EventEnvelope]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batches = self.consumer.poll(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        envelope = decode(record.value)
                    except MalformedEvent:
                        continue
                    if envelope.case_id in case_ids:
                        yield record.topic, envelope

    def close(self) -> None:
        self.consumer.close()
