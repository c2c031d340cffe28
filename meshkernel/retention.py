"""Retention that runs by itself: a job run on a schedule inside the service, with metrics.

Each job deletes what is past its retention and returns how many records it removed. A failed
run is counted and logged (by exception type only) and the next run tries again; serving goes
on either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from meshkernel.metrics import meter

log = logging.getLogger(__name__)


class RetentionMetrics:
    def __init__(self) -> None:
        instruments = meter("referralmesh.retention")
        self.removed = instruments.create_counter(
            "referralmesh.retention.removed",
            unit="{record}",
            description="records removed because their retention ran out, per job",
        )
        self.runs = instruments.create_counter(
            "referralmesh.retention.runs", unit="{run}", description="retention runs, per job and outcome"
        )


async def run_periodically(
    job: str, remove_expired: Callable[[], int], every_seconds: float, metrics: RetentionMetrics | None = None
) -> None:
    """Run `remove_expired` in a worker thread now and then every `every_seconds`, until cancelled."""
    metrics = metrics or RetentionMetrics()
    while True:
        try:
            removed = await asyncio.to_thread(remove_expired)
        except Exception as error:
            metrics.runs.add(1, {"referralmesh.retention.job": job, "outcome": "failed"})
            log.warning("retention run failed: %s", type(error).__name__, extra={"job": job})
        else:
            metrics.runs.add(1, {"referralmesh.retention.job": job, "outcome": "ok"})
            metrics.removed.add(removed, {"referralmesh.retention.job": job})
            if removed:
                log.info("removed records past their retention", extra={"job": job, "count": removed})
        await asyncio.sleep(every_seconds)
