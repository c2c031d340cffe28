"""Realistic cases against the shipped region table."""

import pytest

from services.region.domain import InvalidInput, resolve
from tests.unit.region.region_testkit import (
    AMSTERDAM,
    DEN_HAAG,
    GRONINGEN,
    ROTTERDAM,
    SHIPPED,
    UTRECHT,
    lived,
    request,
    worked,
)


def test_example_help_asked_in_amsterdam_handover_to_groningen():
    decision = resolve(
        request(
            AMSTERDAM,
            residence=[lived("GM0014", "2015-01-01", "2026-10-01")],
            grew_up_in=["GM0599"],
            work=[worked("GM0363", "2025-01-01")],
        ),
        SHIPPED,
    )
    assert decision.region == AMSTERDAM and decision.responsible_because == "help_asked_here"
    assert decision.handover_to == GRONINGEN
    assert decision.rule == "handover_to_better_bound_region"
    assert [c.region for c in decision.candidates] == [
        GRONINGEN,
        ROTTERDAM,
        AMSTERDAM,
    ]  # residence 4 > grew up 3 > work 1
    assert [c.rank for c in decision.candidates] == [1, 2, 3]
    assert not decision.bound_nowhere and not decision.no_programme_accepts and decision.tie_broken is None


def test_client_from_abroad_who_worked_three_years_in_salons_in_two_regions_without_registering():
    # 18 months in Capelle aan den IJssel (Rotterdam region), then 18 months in The Hague, staying where she
    # worked but never registered: not long enough to be bound by residence, but bound by work in
    # both regions equally. She asks for shelter in Amsterdam.
    decision = resolve(
        request(
            AMSTERDAM,
            residence=[
                lived("GM0502", "2023-05-01", "2025-04-30", registered=False),
                lived("GM0518", "2025-05-01", None, registered=False),
            ],
            work=[worked("GM0502", "2023-05-01", "2025-04-30"), worked("GM0518", "2025-05-01")],
        ),
        SHIPPED,
    )
    assert decision.region == AMSTERDAM  # responsible from the first minute, where help was asked
    assert decision.handover_to == DEN_HAAG  # equal ties: the fixed order (lower region code) decides
    assert decision.tie_broken is not None
    assert decision.tie_broken.between == (DEN_HAAG, ROTTERDAM) and decision.tie_broken.by == "lowest_region_code"
    for code in (DEN_HAAG, ROTTERDAM):
        candidate = decision.candidate(code)
        assert candidate.qualifies and [o.kind for o in candidate.evidence_for] == ["work"]
        assert "residence" in [o.kind for o in candidate.evidence_against]
    assert not decision.candidate(AMSTERDAM).bound
    assert "fixed order" in decision.explanation.en


def test_client_moving_between_municipalities_is_bound_nowhere_and_stays_where_she_asked():
    decision = resolve(
        request(
            ROTTERDAM,
            residence=[
                lived("GM0363", "2025-01-01", "2025-06-30", registered=False),
                lived("GM0772", "2025-07-01", None, registered=False),
            ],
            work=[
                worked("GM0363", "2025-01-01", "2025-06-30"),
                worked("GM0772", "2025-07-01", "2025-12-31"),
                worked("GM0014", "2026-01-01"),
            ],
        ),
        SHIPPED,
    )
    assert decision.region == ROTTERDAM and decision.handover_to is None
    assert decision.bound_nowhere and decision.rule == "bound_nowhere"
    assert not decision.no_programme_accepts


@pytest.mark.parametrize(
    ("asked_in", "handover_to", "rule"),
    [
        ("GM0355", None, "bound_here"),  # asked in Zeist: Utrecht is responsible and best bound
        ("GM0599", UTRECHT, "handover_to_better_bound_region"),  # asked where she grew up
        ("GM0479", UTRECHT, "handover_to_better_bound_region"),  # asked in Zaanstad: its own region, no tie
    ],
)
def test_client_who_grew_up_in_one_region_and_is_registered_in_another(asked_in, handover_to, rule):
    decision = resolve(request(asked_in, residence=[lived("GM0355", "2020-03-01")], grew_up_in=["GM0502"]), SHIPPED)
    assert decision.region == SHIPPED.region_of(asked_in).code
    assert decision.handover_to == handover_to and decision.rule == rule
    assert decision.candidate(ROTTERDAM).qualifies  # grew up there: bound, but ranked below residence
    assert decision.candidates[0].region == UTRECHT


def test_five_year_rule_for_exit_programme_met_nowhere_keeps_responsibility_and_says_no_programme_accepts():
    decision = resolve(request(AMSTERDAM, "exit_programme", residence=[lived("GM0362", "2023-06-01")]), SHIPPED)
    amsterdam = decision.candidate(AMSTERDAM)
    assert amsterdam.bound and not amsterdam.accepts and not amsterdam.qualifies
    assert [o.role for o in amsterdam.evidence_against] == ["binding", "binding", "binding", "requirement"]
    assert decision.region == AMSTERDAM and decision.handover_to is None
    assert decision.no_programme_accepts and decision.rule == "no_programme_accepts"
    assert "5 years registered" in decision.explanation.en
    assert "5 lat zameldowania" in decision.explanation.pl


def test_same_client_gets_shelter_in_amsterdam_where_there_is_no_five_year_rule():
    decision = resolve(request(AMSTERDAM, "shelter", residence=[lived("GM0362", "2023-06-01")]), SHIPPED)
    assert decision.rule == "bound_here" and not decision.no_programme_accepts


def test_five_registered_years_meet_the_exit_programme_rule():
    decision = resolve(request(AMSTERDAM, "exit_programme", residence=[lived("GM0362", "2021-01-01")]), SHIPPED)
    assert decision.rule == "bound_here" and decision.candidate(AMSTERDAM).accepts


def test_declared_years_do_not_meet_a_registered_only_rule():
    decision = resolve(
        request(AMSTERDAM, "exit_programme", residence=[lived("GM0362", "2015-01-01", registered=False)]), SHIPPED
    )
    assert decision.rule == "no_programme_accepts"


def test_exit_programme_elsewhere_without_local_rule_gets_a_handover():
    decision = resolve(
        request(
            AMSTERDAM,
            "exit_programme",
            residence=[lived("GM0362", "2023-06-01", "2024-05-31"), lived("GM0599", "2024-06-01")],
        ),
        SHIPPED,
    )
    assert decision.region == AMSTERDAM and decision.handover_to == ROTTERDAM
    assert not decision.no_programme_accepts


def test_bound_only_where_the_programme_refuses_means_no_better_region():
    decision = resolve(request(ROTTERDAM, "exit_programme", residence=[lived("GM0363", "2023-06-01")]), SHIPPED)
    assert decision.region == ROTTERDAM and decision.handover_to is None
    assert decision.rule == "no_better_bound_region" and not decision.no_programme_accepts
    assert "Amsterdam" in decision.explanation.en


def test_a_case_with_a_responsible_region_keeps_it_even_when_asked_elsewhere():
    decision = resolve(
        request(AMSTERDAM, residence=[lived("GM0014", "2015-01-01")], current_region=ROTTERDAM),
        SHIPPED,
    )
    assert decision.region == ROTTERDAM and decision.responsible_because == "already_responsible"
    assert decision.asked_in_region == AMSTERDAM
    assert decision.handover_to == GRONINGEN


def test_equal_tie_with_the_responsible_region_changes_nothing():
    decision = resolve(
        request(ROTTERDAM, work=[worked("GM0599", "2024-01-01", "2025-06-30"), worked("GM0518", "2025-07-01")]),
        SHIPPED,
    )
    assert decision.region == ROTTERDAM and decision.handover_to is None and decision.rule == "bound_here"
    assert decision.tie_broken.by == "responsible_region_stays" and decision.tie_broken.chosen == ROTTERDAM


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (request("GM9999"), "asked_in"),
        (request("GM0140"), "asked_in"),  # Littenseradiel: divided in 2018, no single successor
        (request(AMSTERDAM, grew_up_in=["GM0788"]), "facts.grew_up_in[0]"),  # Haaren: divided in 2021
        (request(AMSTERDAM, "massage"), "service"),
        (request(AMSTERDAM, current_region="GM0362"), "current_region"),
        (request(AMSTERDAM, residence=[lived("GM0363", "2020-01-01", "2019-01-01")]), "facts.residence[0].to"),
        (
            request(AMSTERDAM, work=[worked("GM0363", "2020-01-01"), worked("GM0363", "2027-01-01")]),
            "facts.work[1].from",
        ),
        (request(AMSTERDAM, family_in=["GM0363", "GM1234"]), "facts.family_in[1]"),
    ],
)
def test_requests_the_policy_cannot_answer_are_refused_naming_the_field(req, field):
    with pytest.raises(InvalidInput) as caught:
        resolve(req, SHIPPED)
    assert caught.value.field == field
