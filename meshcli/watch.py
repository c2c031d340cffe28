"""Reads mesh topics from the start and yields the decoded events of chosen cases."""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Iterator

from kafka import KafkaConsumer

from meshkernel.config import MeshSettings
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.kafka_security import kafka_python_options
from meshkernel.topics import TopicSpec
from referralmesh.v1 import events_pb2


class EventWatcher:
    def __init__(self, config: MeshSettings, specs: list[TopicSpec]):
        self.names = {config.topic(spec.base_name): spec for spec in specs}
        self.consumer = KafkaConsumer(
            *self.names,
            **kafka_python_options(
                config,
                group_id=f"mesh-watch-{uuid.uuid4()}",  # kafka_acl.OBSERVER_GROUP_PREFIXES
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                consumer_timeout_ms=200,
            ),
        )
        self._pending: deque[tuple[str, events_pb2.EventEnvelope]] = deque()

    def events(self, case_ids: set[str], timeout: float) -> Iterator[tuple[str, events_pb2.EventEnvelope]]:
        """Yield matching events until `timeout`; what one call polled but did not yield is
        kept for the next call, so a caller may stop at the event it waited for."""
        deadline = time.monotonic() + timeout
        while True:
            while self._pending:
                topic, envelope = self._pending.popleft()
                if envelope.case_id in case_ids:
                    yield topic, envelope
            if time.monotonic() >= deadline:
                return
            polled = []
            for records in self.consumer.poll(timeout_ms=200).values():
                for record in records:
                    try:
                        polled.append((record.topic, decode(record.value)))
                    except MalformedEvent:
                        continue
            # One poll spans several topics; their order of occurrence reads best.
            polled.sort(key=lambda item: item[1].occurred_at.ToNanoseconds())
            self._pending.extend(polled)

    def close(self) -> None:
        self.consumer.close()
