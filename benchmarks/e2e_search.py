"""The sustained-rate search of `make bench-e2e`: which offered rate to try next, and whether a
step held. Pure: no clock, no I/O, so the step logic is unit-tested (tests/unit/benchmarks/).

A step is **good** while p99 create -> notification stays under the limit, every referral sent
in the step was notified by the end of its drain, and fewer than 1 % of its requests could not
be sent on schedule. The rate climbs a ladder (25, 50, 100, ... /s) while steps are good; after
the first bad step it bisects between the highest good rate below it and the lowest bad rate.
The sustained rate is the highest good rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LADDER: tuple[float, ...] = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0)
P99_LIMIT_MS = 250.0
NOT_ON_SCHEDULE_LIMIT = 0.01


@dataclass(frozen=True)
class StepOutcome:
    """What a step measured that decides whether it held."""

    sent: int
    notified: int
    not_on_schedule: int
    p99_create_to_notification_ms: float


def judge(outcome: StepOutcome, p99_limit_ms: float = P99_LIMIT_MS) -> tuple[bool, str]:
    """(good, reason): the first condition the step broke, or "held"."""
    if outcome.sent == 0:
        return False, "nothing was sent"
    if outcome.not_on_schedule / outcome.sent >= NOT_ON_SCHEDULE_LIMIT:
        return False, f"{outcome.not_on_schedule} of {outcome.sent} not sent on schedule (>= 1 %)"
    if outcome.notified < outcome.sent:
        return False, f"{outcome.sent - outcome.notified} of {outcome.sent} not notified by the end of the drain"
    if not outcome.p99_create_to_notification_ms < p99_limit_ms:
        return (
            False,
            f"p99 create -> notification {outcome.p99_create_to_notification_ms:.0f} ms >= {p99_limit_ms:g} ms",
        )
    return True, "held"


def surely_bad(overdue: int, planned: int) -> bool:
    """True once more than 1 % of a step's planned requests are overdue (older than the p99
    limit and not notified): the step's p99 is then over the limit whatever happens next, so
    it can stop early instead of piling up a backlog the next step would inherit."""
    return planned > 0 and overdue > planned * NOT_ON_SCHEDULE_LIMIT


@dataclass
class RateSearch:
    """Climb `ladder` while steps hold; then bisect until the gap is within `resolution`
    (as a fraction of the lower rate) or `max_bisections` steps were spent on it."""

    ladder: tuple[float, ...] = LADDER
    resolution: float = 0.2
    max_bisections: int = 2
    results: dict[float, bool] = field(default_factory=dict)
    bisections: int = 0

    def record(self, rate: float, good: bool) -> None:
        self.results[rate] = good
        if self._lowest_bad() is not None and rate not in self.ladder:
            self.bisections += 1

    @property
    def sustained_rate(self) -> float | None:
        good = [rate for rate, held in self.results.items() if held]
        return max(good) if good else None

    def next_rate(self) -> float | None:
        lowest_bad = self._lowest_bad()
        if lowest_bad is None:
            untried = [rate for rate in self.ladder if rate not in self.results]
            return untried[0] if untried else None
        below = [rate for rate, held in self.results.items() if held and rate < lowest_bad]
        highest_good = max(below, default=0.0)
        if self.bisections >= self.max_bisections:
            return None
        if highest_good > 0 and lowest_bad - highest_good <= highest_good * self.resolution:
            return None
        middle = float(round((highest_good + lowest_bad) / 2))
        if middle in self.results or middle <= 0:
            return None
        return middle

    def _lowest_bad(self) -> float | None:
        bad = [rate for rate, held in self.results.items() if not held]
        return min(bad) if bad else None
