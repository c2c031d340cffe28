"""The retention sweep of the region worker: closed cases leave both tables after the retention
period (services/region/domain/retention.py decides which), with a tombstone in each changelog
topic, so that compaction removes them there too and a restart no longer reads them.

It looks only at the cases of the partitions this worker owns (the stall detector's states),
and checks each case again just before deleting it, with no await in between: an event handled
meanwhile that reopened the case keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meshkernel.metrics import meter
from services.region.adapters import tables
from services.region.adapters.escalating import Escalator
from services.region.domain.retention import ClosedCaseRetention

log = logging.getLogger(__name__)


class ClosedCaseSweep:
    def __init__(self, retention: ClosedCaseRetention, escalator: Escalator, cases_table: Any, *, batch: int = 1000):
        self.retention = retention
        self.escalator = escalator
        self.cases = cases_table
        self.batch = batch
        m = meter(__name__)
        self._runs = m.create_counter(
            "referralmesh.region.retention.runs", unit="{run}", description="retention sweeps of closed cases"
        )
        self._removed = m.create_counter(
            "referralmesh.region.retention.removed",
            unit="{case}",
            description="closed cases removed from the region tables after the retention period",
        )

    async def sweep(self) -> int:
        """Remove every expired closed case of the owned partitions; returns how many."""
        if not self.escalator.ready:  # partitions moving or tables recovering: next time
            return 0
        removed = 0
        candidates = self.retention.expired(list(self.escalator.engine.states.values()))
        for start in range(0, len(candidates), self.batch):
            sends = []
            for case_id in candidates[start : start + self.batch]:
                state = self.escalator.engine.state(case_id)
                partition = self.escalator.partitions.get(case_id)
                if state is None or partition is None or not self.retention.is_expired(state):
                    continue  # reopened, erased or no longer ours since the list was made
                sends.append(tables.delete(self.cases, case_id, partition))
                sends.append(self.escalator.forget(case_id, partition))
                removed += 1
            pending = [s for s in sends if s is not None]
            if pending:
                await asyncio.gather(*pending)  # the tombstones are in the changelogs
        self._runs.add(1)
        if removed:
            self._removed.add(removed)
            log.info("closed cases removed after the retention period", extra={"count": removed})
        return removed
