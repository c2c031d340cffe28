"""Publishes committed outbox rows to Kafka, oldest first, and only then marks them published.

A crash between publish and mark sends a row again after restart: at-least-once, and every
receiver deduplicates by event id. The producer is idempotent with acks=all, so retries
inside one run neither duplicate nor reorder a partition.

Any number of referral replicas may run a relay against one PostgreSQL: each batch is a claim
(ReferralStore.claim_unpublished) held while it is published, so one relay at a time publishes
a row, a case's rows leave in order, and the rows of a relay that dies go to the next claim.

A row that can never be published (its envelope does not decode, or Kafka refuses the record
for good, e.g. too large) is parked with a reason code instead of blocking the relay: counted
in `referralmesh.outbox.parked`, logged without its content, shown by `mesh outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from aiokafka import AIOKafkaProducer
from aiokafka.errors import InvalidTopicError, MessageSizeTooLargeError, RecordTooLargeError

from meshkernel import envelope as envelopes
from meshkernel import tracing
from meshkernel.metrics import meter
from services.referral.adapters.storage import OutboxRecord, ReferralStore

log = logging.getLogger(__name__)

# Seconds the relay waits before its first publish. Only for crash tests and drills: it
# opens a window in which committed events sit in the outbox, unpublished.
START_DELAY_ENV = "MESH_OUTBOX_RELAY_START_DELAY"


# Kafka refuses these records whatever the relay does; trying again would block the relay.
_REFUSED_FOR_GOOD = {
    MessageSizeTooLargeError: "too_large",
    RecordTooLargeError: "too_large",
    InvalidTopicError: "invalid_topic",
}


class Unpublishable(Exception):
    """This row can never be published; `reason` is a code, never the row's content."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def refusal_reason(error: BaseException) -> str | None:
    for error_type, reason in _REFUSED_FOR_GOOD.items():
        if isinstance(error, error_type):
            return reason
    return None


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
        self.parked_total = 0
        self._parked_counter = meter("referralmesh.referral").create_counter(
            "referralmesh.outbox.parked",
            unit="{event}",
            description="outbox rows the relay set aside because they can never be published, by reason",
        )

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
        """Publish one claimed batch; returns how many rows it settled (published or parked)."""
        assert self._producer is not None, "start() first"
        claim = await asyncio.to_thread(self.store.claim_unpublished, self.batch_size)
        finished = False
        try:
            if not claim.rows:
                return 0
            parked: list[tuple[int, str]] = []
            sent: list[tuple[int, asyncio.Future]] = []
            for position, record in claim.rows:
                try:
                    sent.append((position, await self._send(record)))
                except Unpublishable as refusal:
                    parked.append((position, refusal.reason))
            outcomes = await asyncio.gather(*(delivery for _, delivery in sent), return_exceptions=True)
            published, unacknowledged = [], 0
            for (position, _), outcome in zip(sent, outcomes, strict=True):
                if not isinstance(outcome, BaseException):
                    published.append(position)
                elif (reason := refusal_reason(outcome)) is not None:
                    parked.append((position, reason))
                else:  # the row stays unpublished and a later claim tries again
                    unacknowledged += 1
            await asyncio.to_thread(claim.finish, published, parked)
            finished = True
            self._report_parked(claim.rows, parked)
            self.published_total += len(published)
            if unacknowledged:
                raise RuntimeError(f"{unacknowledged} outbox row(s) not acknowledged by Kafka; tried again later")
            return len(published) + len(parked)
        finally:
            if not finished:
                await asyncio.to_thread(claim.abandon)

    async def _send(self, record: OutboxRecord) -> asyncio.Future:
        assert self._producer is not None
        try:
            parsed = envelopes.decode(record.value)
        except Exception as error:
            raise Unpublishable("undecodable_envelope") from error
        # The row keeps the context of the request that committed it; the send span is
        # its child, and the consumer continues from the send span named in the headers.
        stored = tracing.context_from(parsed.trace.traceparent, parsed.trace.tracestate)
        with tracing.publishing(record.topic, case_id=parsed.case_id, parent=stored, event_id=parsed.event_id):
            headers = envelopes.kafka_headers(parsed, tracing.inject_current())
            try:
                return await self._producer.send(
                    record.topic, key=record.key.encode(), value=record.value, headers=headers
                )
            except Exception as error:
                if (reason := refusal_reason(error)) is not None:
                    raise Unpublishable(reason) from error
                raise

    def _report_parked(self, rows: list[tuple[int, OutboxRecord]], parked: list[tuple[int, str]]) -> None:
        topics = {position: record.topic for position, record in rows}
        for position, reason in parked:
            self.parked_total += 1
            self._parked_counter.add(1, {"referralmesh.outbox.park_reason": reason})
            # Position, topic and reason only: the row itself holds binding facts and contacts.
            log.error(
                "outbox row parked: it can never be published (see `mesh outbox`)",
                extra={"position": position, "topic": topics.get(position, ""), "reason": reason},
            )
