"""Publishes committed outbox rows to Kafka, oldest first, and only then marks them published.

A crash between publish and mark sends a row again after restart: at-least-once, and every
receiver deduplicates by event id. The producer is idempotent with acks=all, so retries
inside one run neither duplicate nor reorder a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from aiokafka import AIOKafkaProducer

from meshkernel import envelope as envelopes
from meshkernel import tracing
from services.referral.adapters.storage import ReferralStore

log = logging.getLogger(__name__)

# Seconds the relay waits before its first publish. Only for crash tests and drills: it
# opens a window in which committed events sit in the outbox, unpublished.
START_DELAY_ENV = "MESH_OUTBOX_RELAY_START_DELAY"


def start_delay_from_env() -> float:
    raw = os.environ.get(START_DELAY_ENV, "0") or "0"
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ValueError(f"{START_DELAY_ENV} must be a number of seconds, not {raw!r}") from None


class OutboxRelay:
    def __init__(
        self,
        store: ReferralStore,
        bootstrap: str,
        *,
        batch_size: int = 500,
        idle_poll: float = 0.5,
        start_delay: float | None = None,
        client_options: dict | None = None,
    ):
        self.start_delay = start_delay_from_env() if start_delay is None else start_delay
        self.store = store
        self.bootstrap = bootstrap
        self.client_options = client_options or {}  # TLS and credentials: KafkaSecurity.client_options()
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self.published_total = 0

    def wake(self) -> None:
        """Called after a commit so the event leaves now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id="referral-outbox-relay",
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            **self.client_options,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def run(self) -> None:
        if self.start_delay:
            log.warning("outbox relay waits %.1fs before publishing (%s)", self.start_delay, START_DELAY_ENV)
            await asyncio.sleep(self.start_delay)
        while True:
            try:
                published = await self.publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # keep relaying; the row stays and is tried again
                log.warning("outbox relay could not publish: %s", type(error).__name__)
                published = 0
                await asyncio.sleep(1.0)
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.idle_poll)
                self._wake.clear()

    async def publish_pending(self) -> int:
        assert self._producer is not None, "start() first"
        batch = await asyncio.to_thread(self.store.unpublished, self.batch_size)
        if not batch:
            return 0
        deliveries = []
        for _position, record in batch:
            parsed = envelopes.decode(record.value)
            # The row keeps the context of the request that committed it; the send span is
            # its child, and the consumer continues from the send span named in the headers.
            stored = tracing.context_from(parsed.trace.traceparent, parsed.trace.tracestate)
            with tracing.publishing(record.topic, case_id=parsed.case_id, parent=stored, event_id=parsed.event_id):
                headers = envelopes.kafka_headers(parsed, tracing.inject_current())
                deliveries.append(
                    await self._producer.send(
                        record.topic,
                        key=record.key.encode(),
                        value=record.value,
                        headers=headers,
                    )
                )
        await asyncio.gather(*deliveries)
        await asyncio.to_thread(self.store.mark_published, [position for position, _ in batch])
        self.published_total += len(batch)
        return len(batch)
