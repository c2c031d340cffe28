"""Publishes the events of coordinator actions (overrides, alert actions) from the notify
store's action outbox to Kafka, oldest first, and marks each one published once the broker
has acknowledged it.

The action and its events are recorded in one transaction (AlertDesk.act); this relay is the
only way they reach Kafka. So a coordinator's action is accepted while the broker is away and
delivered when it is back, and a crash between recording and publishing leaves the event in
the outbox for the next relay. A crash between publishing and marking sends it again after a
restart: at least once, under the same event id, which the region service deduplicates.

With several replicas on one PostgreSQL, one relay publishes at a time (the claim's advisory
lock), so a case's events leave in the order they were recorded.

Metric: `referralmesh.notify.actions_unpublished`, the backlog of recorded, unpublished
action events (a count only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from opentelemetry.metrics import CallbackOptions, Observation

from meshkernel.metrics import meter
from services.notify.adapters.store import NotifyStore, PendingEvent

log = logging.getLogger(__name__)

Publish = Callable[[PendingEvent], Awaitable[None]]


class ActionRelay:
    def __init__(
        self,
        store: NotifyStore,
        publish: Publish,
        *,
        batch_size: int = 100,
        idle_poll: float = 2.0,
        send_timeout: float = 30.0,
        keep_published_seconds: float = 7 * 86400,
    ):
        self.store = store
        self.publish = publish
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self.send_timeout = send_timeout
        self.keep_published_seconds = keep_published_seconds
        self.wake = asyncio.Event()
        self.backlog = 0
        self._last_purge = 0.0
        meter("referralmesh.notify").create_observable_gauge(
            "referralmesh.notify.actions_unpublished",
            callbacks=[self._observe],
            unit="{event}",
            description="coordinator actions' events recorded and not yet published to Kafka",
        )

    def _observe(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(self.backlog)]

    async def run(self) -> None:
        """Publish until cancelled; after a failure (broker away) try again, waiting longer
        each time up to 30 s; an action recorded meanwhile wakes the relay at once."""
        failures = 0
        while True:
            try:
                await self.publish_pending()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as problem:
                failures += 1
                log.warning(
                    "coordinator actions not published yet; trying again",
                    extra={"unpublished": self.backlog, "error": type(problem).__name__},
                )
            pause = self.idle_poll if not failures else min(30.0, self.idle_poll * 2**failures)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), pause)
            self.wake.clear()

    async def publish_pending(self) -> int:
        """Publish every unpublished action event, in batches; returns how many went out."""
        total = 0
        try:
            while True:
                claim = await self.store.aio.claim_unpublished_events(self.batch_size)
                published: list[int] = []
                try:
                    for event in claim.events:
                        await asyncio.wait_for(self.publish(event), self.send_timeout)
                        published.append(event.seq)
                finally:
                    # What the broker acknowledged is marked even when the rest failed.
                    await asyncio.shield(self.store.aio.run(claim.finish, published))
                total += len(published)
                if len(claim.events) < self.batch_size:
                    break
        finally:
            self.backlog = await self.store.aio.unpublished_event_count()
        if time.time() - self._last_purge > 3600:
            self._last_purge = time.time()
            await self.store.aio.purge_published_events(time.time() - self.keep_published_seconds)
        return total
