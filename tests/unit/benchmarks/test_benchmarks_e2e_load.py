"""The open-loop schedule and the not-sent-on-schedule count of `make bench-e2e`
(benchmarks/e2e_load.py)."""

import pytest

from benchmarks.e2e_load import OnScheduleTally, Schedule


def test_every_request_is_due_at_its_own_place_in_the_schedule():
    schedule = Schedule(rate=200, seconds=2.5, start=100.0, prefix="s1-")
    assert schedule.planned == 500
    assert schedule.due(0) == 100.0
    assert schedule.due(200) == pytest.approx(101.0)
    assert schedule.case_id(7) == "s1-0000007"


def test_due_by_counts_the_requests_whose_time_has_come():
    schedule = Schedule(rate=10, seconds=3, start=50.0, prefix="x")
    assert schedule.due_by(49.99) == 0
    assert schedule.due_by(50.0) == 1
    assert schedule.due_by(50.95) == 10
    assert schedule.due_by(1000.0) == 30


def test_only_requests_later_than_the_tolerance_count_as_not_sent_on_schedule():
    tally = OnScheduleTally(tolerance=0.010)
    tally.note(due=1.0, sent_at=1.0)
    tally.note(due=1.0, sent_at=1.009)
    tally.note(due=1.0, sent_at=0.999)  # early (the loop woke first): on schedule
    tally.note(due=2.0, sent_at=2.011)
    tally.note(due=3.0, sent_at=3.5)
    assert (tally.sent, tally.late) == (5, 2)
    assert tally.worst_lateness == pytest.approx(0.5)
