"""Figures for a region's insight page. Pure: times in, numbers out; the caller gives "now".

Weeks run Monday 00:00 to Monday 00:00 (UTC), labelled by their Monday. Percentiles use the
nearest-rank method (the value at rank ceil(q * n) of the sorted values), so a reported p90
is always a time some referral actually took. Only counts and durations come out of here:
nothing identifies a case.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WEEK = timedelta(days=7)

# Time from request to acceptance, in hours: the bars of the distribution chart. The last bin
# is open-ended.
ACCEPTANCE_BINS_HOURS: tuple[float, ...] = (0.0, 4.0, 24.0, 48.0, 96.0, 168.0)


def week_start(moment: datetime) -> datetime:
    """The Monday 00:00 that starts the week of `moment` (same time zone as `moment`)."""
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def recent_weeks(now: datetime, count: int) -> list[datetime]:
    """The starts of the last `count` weeks, oldest first; the last is the current week."""
    if count < 1:
        raise ValueError("count: at least one week")
    current = week_start(now)
    return [current - WEEK * back for back in range(count - 1, -1, -1)]


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (0 < q <= 1) of `values`; None for no values."""
    if not 0 < q <= 1:
        raise ValueError("q: between 0 (excluded) and 1")
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def median(values: Iterable[float]) -> float | None:
    return percentile(values, 0.5)


@dataclass(frozen=True)
class WeeklyDurations:
    week: datetime
    count: int
    median: float | None
    p90: float | None


def weekly_durations(samples: Iterable[tuple[datetime, float]], weeks: Sequence[datetime]) -> list[WeeklyDurations]:
    """Median and p90 of the durations whose moment falls in each week; weeks without any count 0."""
    by_week: dict[datetime, list[float]] = {week: [] for week in weeks}
    for moment, duration in samples:
        start = week_start(moment)
        if start in by_week:
            by_week[start].append(duration)
    return [
        WeeklyDurations(week, len(values), median(values), percentile(values, 0.9)) for week, values in by_week.items()
    ]


def distribution(durations: Iterable[float], edges: Sequence[float] = ACCEPTANCE_BINS_HOURS) -> list[int]:
    """How many durations fall in [edges[i], edges[i+1]); the last bin has no upper edge.
    Durations below the first edge count in the first bin (a clock a little off is no reason to drop one)."""
    if not edges or list(edges) != sorted(set(edges)):
        raise ValueError("edges: strictly increasing, at least one")
    counts = [0] * len(edges)
    for duration in durations:
        index = 0
        for position, edge in enumerate(edges):
            if duration >= edge:
                index = position
        counts[index] += 1
    return counts


@dataclass(frozen=True)
class Interval:
    """Something open from `opened` until `closed` (None: still open), of a kind (e.g. a level)."""

    opened: datetime
    closed: datetime | None
    kind: str


def open_at(intervals: Iterable[Interval], moments: Sequence[datetime], kinds: Sequence[str]) -> list[dict[str, int]]:
    """For each moment, how many intervals of each kind were open then (opened <= moment < closed)."""
    chosen = list(intervals)
    result = []
    for moment in moments:
        counts = dict.fromkeys(kinds, 0)
        for interval in chosen:
            if (
                interval.kind in counts
                and interval.opened <= moment
                and (interval.closed is None or interval.closed > moment)
            ):
                counts[interval.kind] += 1
        result.append(counts)
    return result


def weekly_counts(
    events: Iterable[tuple[datetime, str]], weeks: Sequence[datetime], kinds: Sequence[str]
) -> list[dict[str, int]]:
    """For each week, how many events of each kind happened in it (other weeks and kinds are left out)."""
    by_week = {week: dict.fromkeys(kinds, 0) for week in weeks}
    for moment, kind in events:
        counts = by_week.get(week_start(moment))
        if counts is not None and kind in counts:
            counts[kind] += 1
    return list(by_week.values())


def ranked(keys: Iterable[str]) -> list[tuple[str, int]]:
    """Each key with how often it occurs, most frequent first (ties by key, so the order is stable)."""
    return sorted(Counter(keys).items(), key=lambda item: (-item[1], item[0]))
