"""Which cases the region worker may forget: those closed longer ago than the retention period.

State and recovery time of the worker should follow the open cases, not every case it ever saw.
A case is closed when it has at least one referral, every referral of it has ended (COMPLETED,
CANCELLED, FAILED, CONTACT_LOST) and no deadline of it is pending (a CONTACT_LOST case keeps its
"at risk" deadline until that fired). It closed when its last referral ended: the latest status
change among its referrals, in event time, so that a replay decides the same. A case known only
from an assignment or an override (no referral event yet) is never closed.

Pure: no I/O; the clock is injectable (`clock() -> POSIX seconds`), or `now` is passed in.
Guarantees (tests/unit/region/test_region_retention.py):
- an open case is never expired, however old;
- a closed case is expired exactly when `now - closed_at >= retention`;
- the outcome does not depend on the order of the states given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.region.domain.escalation.model import TERMINAL, CaseState

DAY = 86_400.0


def closed_at(state: CaseState) -> float | None:
    """When the case closed (POSIX seconds), or None while it is open."""
    if not state.tracks or state.pending:
        return None
    ended: list[float] = []
    for track in state.tracks:
        if track.status not in TERMINAL or not track.history:
            return None
        ended.append(track.history[-1][1])
    return max(ended)


@dataclass(frozen=True)
class ClosedCaseRetention:
    """Closed cases are kept `retention_seconds` after they closed, then forgotten."""

    retention_seconds: float
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if not self.retention_seconds > 0:
            raise ValueError(f"retention_seconds must be positive, got {self.retention_seconds!r}")

    @classmethod
    def of_days(cls, days: float, clock: Callable[[], float] = time.time) -> ClosedCaseRetention:
        return cls(days * DAY, clock)

    def is_expired(self, state: CaseState, now: float | None = None) -> bool:
        closed = closed_at(state)
        if closed is None:
            return False
        return (self.clock() if now is None else now) - closed >= self.retention_seconds

    def expired(self, states: Iterable[CaseState], now: float | None = None) -> list[str]:
        """The ids of the expired cases among `states`, sorted."""
        moment = self.clock() if now is None else now
        return sorted(state.case_id for state in states if self.is_expired(state, moment))
