"""The sustained-rate search of `make bench-e2e` (benchmarks/e2e_search.py)."""

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.e2e_search import LADDER, RateSearch, StepOutcome, judge, surely_bad


def _run(search: RateSearch, holds) -> list[float]:
    tried = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, holds(rate))
    return tried


def test_the_rate_climbs_the_ladder_while_every_step_holds():
    search = RateSearch()
    assert _run(search, lambda rate: True) == list(LADDER)
    assert search.sustained_rate == LADDER[-1]


def test_after_the_first_bad_step_it_bisects_between_the_highest_good_and_the_lowest_bad_rate():
    search = RateSearch(max_bisections=2)
    tried = _run(search, lambda rate: rate <= 80)
    assert tried == [25, 50, 100, 75, 88]
    assert search.sustained_rate == 75


def test_the_bisection_stops_once_the_gap_is_within_the_resolution():
    search = RateSearch(ladder=(100.0, 200.0), resolution=0.3, max_bisections=5)
    tried = _run(search, lambda rate: rate < 160)
    assert tried == [100, 200, 150, 175]  # 150 good, 175 bad: a gap of 25 is within 30 % of 150
    assert search.sustained_rate == 150


def test_when_even_the_first_rate_fails_it_tries_below_it():
    search = RateSearch(max_bisections=2)
    tried = _run(search, lambda rate: rate < 10)
    assert tried == [25, 12, 6]
    assert search.sustained_rate == 6


def test_no_good_step_means_no_sustained_rate():
    search = RateSearch(max_bisections=1)
    _run(search, lambda rate: False)
    assert search.sustained_rate is None


@given(st.lists(st.booleans(), min_size=12, max_size=12), st.integers(min_value=0, max_value=4))
def test_the_search_ends_never_repeats_a_rate_and_reports_the_highest_good_one(verdicts, bisections):
    search = RateSearch(max_bisections=bisections)
    answers = iter(verdicts)
    tried = _run(search, lambda rate: next(answers))
    assert len(tried) == len(set(tried)) <= len(LADDER) + bisections
    good = [rate for rate in tried if search.results[rate]]
    assert search.sustained_rate == (max(good) if good else None)


def test_a_step_holds_only_when_every_condition_is_met():
    assert judge(StepOutcome(sent=1000, notified=1000, not_on_schedule=9, p99_create_to_notification_ms=249)) == (
        True,
        "held",
    )


def test_a_step_fails_on_one_percent_not_sent_on_schedule():
    good, reason = judge(StepOutcome(sent=1000, notified=1000, not_on_schedule=10, p99_create_to_notification_ms=10))
    assert not good and "not sent on schedule" in reason


def test_a_step_fails_when_a_referral_was_not_notified_by_the_end_of_the_drain():
    good, reason = judge(StepOutcome(sent=1000, notified=999, not_on_schedule=0, p99_create_to_notification_ms=10))
    assert not good and "not notified" in reason


def test_a_step_fails_at_the_p99_limit_and_without_a_p99():
    assert not judge(StepOutcome(sent=10, notified=10, not_on_schedule=0, p99_create_to_notification_ms=250))[0]
    assert not judge(StepOutcome(sent=10, notified=10, not_on_schedule=0, p99_create_to_notification_ms=float("nan")))[
        0
    ]
    assert not judge(StepOutcome(sent=0, notified=0, not_on_schedule=0, p99_create_to_notification_ms=1))[0]


def test_a_step_is_surely_bad_once_more_than_one_percent_of_its_plan_is_overdue():
    assert not surely_bad(overdue=10, planned=1000)
    assert surely_bad(overdue=11, planned=1000)
    assert not surely_bad(overdue=5, planned=0)
