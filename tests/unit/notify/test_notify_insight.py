"""The insight page's arithmetic: weekly buckets, nearest-rank median and p90, distribution,
escalations open over time, counts per week."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.domain import insight

# A Wednesday afternoon.
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


def test_a_week_starts_on_its_monday_at_midnight():
    assert insight.week_start(NOW) == MONDAY
    assert insight.week_start(MONDAY) == MONDAY
    assert insight.week_start(MONDAY - timedelta(microseconds=1)) == MONDAY - insight.WEEK


def test_recent_weeks_are_oldest_first_and_end_with_the_current_week():
    weeks = insight.recent_weeks(NOW, 3)
    assert weeks == [MONDAY - 2 * insight.WEEK, MONDAY - insight.WEEK, MONDAY]
    with pytest.raises(ValueError):
        insight.recent_weeks(NOW, 0)


def test_nearest_rank_percentiles_are_values_that_occurred():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 7.0, 8.0, 9.0]
    assert insight.median(values) == 5.0
    assert insight.percentile(values, 0.9) == 9.0
    assert insight.percentile([4.0], 0.9) == 4.0
    assert insight.median([]) is None
    with pytest.raises(ValueError):
        insight.percentile(values, 0)


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1), st.floats(0.01, 1.0))
def test_a_percentile_is_one_of_the_values_and_at_least_that_share_is_at_or_below_it(values, q):
    result = insight.percentile(values, q)
    assert result in values
    assert sum(v <= result for v in values) >= q * len(values)


def test_weekly_durations_put_each_sample_in_the_week_of_its_moment():
    weeks = insight.recent_weeks(NOW, 2)
    samples = [
        (MONDAY + timedelta(hours=1), 2.0),
        (MONDAY + timedelta(days=1), 4.0),
        (MONDAY - timedelta(days=3), 30.0),
    ]
    samples.append((MONDAY - timedelta(days=30), 99.0))  # before the period: left out
    last_week, this_week = insight.weekly_durations(samples, weeks)
    assert (last_week.count, last_week.median, last_week.p90) == (1, 30.0, 30.0)
    assert (this_week.count, this_week.median, this_week.p90) == (2, 2.0, 4.0)
    empty = insight.weekly_durations([], weeks)
    assert [(w.count, w.median, w.p90) for w in empty] == [(0, None, None), (0, None, None)]


def test_the_distribution_counts_each_duration_in_its_bin_and_the_last_bin_is_open():
    counts = insight.distribution([0.5, 3.99, 4.0, 23.0, 30.0, 100.0, 500.0, -1.0])
    assert counts == [3, 2, 1, 0, 1, 1]
    with pytest.raises(ValueError):
        insight.distribution([1.0], edges=(4.0, 1.0))


@given(st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False)))
def test_the_distribution_loses_no_duration(durations):
    assert sum(insight.distribution(durations)) == len(durations)


def test_open_at_counts_what_was_open_at_each_moment_by_kind():
    t = MONDAY
    intervals = [
        insight.Interval(t, t + timedelta(days=2), "REGION_COORDINATOR"),
        insight.Interval(t + timedelta(days=1), None, "REGION_COORDINATOR"),
        insight.Interval(t, None, "DISPUTE"),
        insight.Interval(t, None, "UNKNOWN_LEVEL"),
    ]
    moments = [t - timedelta(hours=1), t + timedelta(days=1), t + timedelta(days=2)]
    assert insight.open_at(intervals, moments, ["REGION_COORDINATOR", "DISPUTE"]) == [
        {"REGION_COORDINATOR": 0, "DISPUTE": 0},
        {"REGION_COORDINATOR": 2, "DISPUTE": 1},
        {"REGION_COORDINATOR": 1, "DISPUTE": 1},  # closed at that very moment: no longer open
    ]


def test_weekly_counts_and_ranking():
    weeks = insight.recent_weeks(NOW, 2)
    events = [(MONDAY, "a"), (MONDAY + timedelta(days=2), "a"), (MONDAY - timedelta(days=1), "b"), (MONDAY, "other")]
    assert insight.weekly_counts(events, weeks, ["a", "b"]) == [{"a": 0, "b": 1}, {"a": 2, "b": 0}]
    assert insight.ranked(["x", "y", "y", "z", "x", "y"]) == [("y", 3), ("x", 2), ("z", 1)]
