"""Measuring ties: counting days, windows, registered-only periods, thresholds."""

from datetime import date

from services.region.domain import BindingFacts, FamilyRule, GrewUpRule, ResidenceRule, WorkRule
from services.region.domain.rules import BINDING, covered_days, evaluate, shift_years, window_start
from tests.unit.region.region_testkit import DECIDED, lived, worked

D = date.fromisoformat
REGION = frozenset({"GM0599", "GM0606"})


def test_overlapping_periods_count_once_and_adjacent_ones_join():
    spans = [(D("2020-01-01"), D("2020-01-10")), (D("2020-01-05"), D("2020-01-20")), (D("2020-01-21"), D("2020-01-21"))]
    assert covered_days(spans, date.min, date.max) == 21


def test_spans_are_clipped_to_the_window():
    spans = [(D("2019-12-25"), D("2020-01-05")), (D("2020-03-01"), D("2020-03-31"))]
    assert covered_days(spans, D("2020-01-01"), D("2020-03-10")) == 5 + 10


def test_window_holds_exactly_the_last_n_calendar_years():
    assert window_start(D("2026-11-01"), 3) == D("2023-11-02")
    assert window_start(D("2026-11-01"), None) == date.min
    assert shift_years(D("2028-02-29"), 1) == D("2027-02-28")


def test_residence_in_two_municipalities_of_one_region_adds_up():
    facts = BindingFacts(
        residence=(lived("GM0599", "2024-01-01", "2024-12-31"), lived("GM0606", "2025-01-01", "2025-12-31"))
    )
    outcome = evaluate(ResidenceRule(years=2, within_years=3), BINDING, 0, facts, REGION, DECIDED)
    assert outcome.days == 731 and outcome.needed_days == 730 and outcome.met


def test_registered_only_ignores_declared_stays():
    facts = BindingFacts(residence=(lived("GM0599", "2015-01-01", None, registered=False),))
    assert evaluate(ResidenceRule(years=2), BINDING, 0, facts, REGION, DECIDED).met
    outcome = evaluate(ResidenceRule(years=2, registered_only=True), BINDING, 0, facts, REGION, DECIDED)
    assert outcome.days == 0 and not outcome.met


def test_residence_before_the_window_does_not_count():
    facts = BindingFacts(residence=(lived("GM0599", "2010-01-01", "2020-01-01"),))
    assert not evaluate(ResidenceRule(years=2, within_years=3), BINDING, 0, facts, REGION, DECIDED).met
    assert evaluate(ResidenceRule(years=2), BINDING, 0, facts, REGION, DECIDED).met


def test_work_threshold_is_inclusive_at_thirty_days_a_month():
    exactly = BindingFacts(work=(worked("GM0606", "2026-01-01", "2026-06-29"),))  # 180 days
    short = BindingFacts(work=(worked("GM0606", "2026-01-01", "2026-06-28"),))  # 179 days
    assert evaluate(WorkRule(months=6), BINDING, 0, exactly, REGION, DECIDED).met
    assert not evaluate(WorkRule(months=6), BINDING, 0, short, REGION, DECIDED).met


def test_ongoing_period_counts_up_to_the_decision_date():
    facts = BindingFacts(work=(worked("GM0599", "2026-10-01"),))
    assert evaluate(WorkRule(months=1), BINDING, 0, facts, REGION, DECIDED).days == 32


def test_facts_outside_the_region_are_ignored():
    facts = BindingFacts(residence=(lived("GM0363", "2000-01-01"),), grew_up_in=("GM0363",), family_in=("GM0606",))
    assert not evaluate(ResidenceRule(years=1), BINDING, 0, facts, REGION, DECIDED).met
    assert not evaluate(GrewUpRule(), BINDING, 1, facts, REGION, DECIDED).met
    family = evaluate(FamilyRule(), BINDING, 2, facts, REGION, DECIDED)
    assert family.met and family.municipalities == ("GM0606",)
