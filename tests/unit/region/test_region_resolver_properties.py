"""Invariants of the resolver over random facts and random valid region configurations.

DESIGN.md section 4: every referral has exactly one responsible region at every moment, the
resolver never moves responsibility itself, and every decision names the rule that made it.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.region.domain import (
    DECISION_RULES,
    LANGUAGES,
    RULE_KINDS,
    BindingFacts,
    ResidencePeriod,
    ResolutionRequest,
    WorkPeriod,
    build_policy,
    decision_to_dict,
    parse_request,
    request_to_dict,
    resolve,
)
from services.region.domain.explanation import explain
from tests.unit.region.region_testkit import SHIPPED

POOL = [f"GM{n:04d}" for n in range(1, 13)]
SERVICES = ["shelter", "exit_programme"]


@st.composite
def rule_data(draw):
    kind = draw(st.sampled_from(RULE_KINDS))
    if kind == "residence":
        years = draw(st.integers(1, 4))
        rule = {"kind": kind, "years": years}
        if draw(st.booleans()):
            rule["within_years"] = draw(st.integers(years, 6))
        if draw(st.booleans()):
            rule["registered_only"] = draw(st.booleans())
        return rule
    if kind == "work":
        months = draw(st.integers(1, 36))
        rule = {"kind": kind, "months": months}
        if draw(st.booleans()):
            rule["within_years"] = draw(st.integers(math.ceil(months * 30 / 365), 6))
        return rule
    return {"kind": kind}


@st.composite
def policies(draw):
    """Small random configurations: 1-4 regions of 1-3 municipalities, random ties,
    random local requirements, random (often equal) ranking weights to provoke ties."""
    codes = draw(st.permutations(POOL))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=4))
    regions, at = [], 0
    for i, size in enumerate(sizes):
        members = codes[at : at + size]
        at += size
        services = {}
        for service in SERVICES:
            choice = draw(st.sampled_from(["inherit", "requires", "rules"]))
            if choice == "requires":
                services[service] = {"requires": draw(st.lists(rule_data(), min_size=1, max_size=2))}
            elif choice == "rules":
                services[service] = {"rules": draw(st.lists(rule_data(), min_size=1, max_size=3))}
        regions.append(
            {
                "code": draw(st.sampled_from(members)),
                "name": f"Region {i}",
                "municipalities": [{"code": c, "name": f"Town {c}"} for c in members],
                "services": services,
            }
        )
    data = {
        "version": f"test-{draw(st.integers(1, 99))}",
        "ranking": {kind: draw(st.integers(1, 3)) for kind in RULE_KINDS},
        "defaults": {
            "services": {
                s: {
                    "rules": draw(st.lists(rule_data(), min_size=1, max_size=3)),
                    "requires": draw(st.lists(rule_data(), max_size=1)),
                }
                for s in SERVICES
            }
        },
        "regions": regions,
    }
    return build_policy(data, "<random>")


@st.composite
def requests_for(draw, policy):
    municipalities = sorted(m.code for r in policy.regions for m in r.municipalities)
    decided = draw(st.dates(date(2020, 1, 1), date(2030, 12, 31)))
    place = st.sampled_from(municipalities)

    def span():
        start = draw(st.dates(decided - timedelta(days=9 * 365), decided))
        end = draw(st.one_of(st.none(), st.dates(start, decided)))
        return start, end

    residence = [ResidencePeriod(draw(place), *span(), draw(st.booleans())) for _ in range(draw(st.integers(0, 4)))]
    work = [WorkPeriod(draw(place), *span()) for _ in range(draw(st.integers(0, 3)))]
    return ResolutionRequest(
        asked_in=draw(place),
        service=draw(st.sampled_from(policy.service_kinds)),
        decision_date=decided,
        current_region=draw(st.one_of(st.none(), st.sampled_from([r.code for r in policy.regions]))),
        facts=BindingFacts(
            residence=tuple(residence),
            grew_up_in=tuple(draw(st.lists(place, max_size=2))),
            family_in=tuple(draw(st.lists(place, max_size=2))),
            work=tuple(work),
        ),
    )


@st.composite
def random_cases(draw):
    policy = draw(policies())
    return policy, draw(requests_for(policy))


@st.composite
def shipped_cases(draw):
    return SHIPPED, draw(requests_for(SHIPPED))


cases = st.one_of(random_cases(), shipped_cases())


def _strictly_better(a, b):
    return a.qualifies and (not b.qualifies or a.score > b.score)


@given(cases)
def test_exactly_one_responsible_region_and_the_resolver_never_moves_it(case):
    policy, req = case
    decision = resolve(req, policy)
    assert isinstance(decision.region, str) and policy.region(decision.region) is not None
    expected = req.current_region or policy.region_of(req.asked_in).code
    assert decision.region == expected
    assert decision.handover_to != decision.region
    assert sum(1 for c in decision.candidates if c.region == decision.region) == 1


@given(cases, st.randoms(use_true_random=False))
def test_same_input_same_decision_whatever_the_order_of_the_facts(case, rnd):
    policy, req = case
    first = resolve(req, policy)
    assert resolve(req, policy) == first
    facts = req.facts
    shuffled = [list(facts.residence), list(facts.work), list(facts.grew_up_in), list(facts.family_in)]
    for items in shuffled:
        rnd.shuffle(items)
    reordered = replace(
        req, facts=BindingFacts(residence=shuffled[0], work=shuffled[1], grew_up_in=shuffled[2], family_in=shuffled[3])
    )
    assert resolve(reordered, policy) == first


@given(cases)
def test_handover_target_is_strictly_better_bound_and_the_best_there_is(case):
    policy, req = case
    decision = resolve(req, policy)
    responsible = decision.candidate(decision.region)
    if decision.handover_to is None:
        # Null only when no region is better: the resolver never withholds a better place.
        assert not any(_strictly_better(c, responsible) for c in decision.candidates)
    else:
        target = decision.candidate(decision.handover_to)
        assert _strictly_better(target, responsible)
        assert not any(_strictly_better(c, target) for c in decision.candidates)
        equal = sorted(c.region for c in decision.candidates if c.qualifies and c.score == target.score)
        assert target.region == equal[0]  # ties go to the lowest region code
        assert (decision.tie_broken is not None) == (len(equal) > 1)


@given(cases)
def test_bound_nowhere_stays_with_the_region_where_help_was_asked(case):
    policy, req = case
    req = replace(req, current_region=None)
    decision = resolve(req, policy)
    assert decision.region == policy.region_of(req.asked_in).code
    if decision.bound_nowhere:
        assert decision.handover_to is None
        assert decision.rule in ("bound_nowhere", "no_programme_accepts")
        assert not any(c.bound for c in decision.candidates)


@given(cases)
def test_every_decision_names_a_rule_consistent_with_its_flags(case):
    policy, req = case
    decision = resolve(req, policy)
    assert decision.rule in DECISION_RULES
    assert (decision.rule == "handover_to_better_bound_region") == (decision.handover_to is not None)
    if decision.rule == "bound_nowhere":
        assert decision.bound_nowhere
    if decision.no_programme_accepts:
        assert decision.handover_to is None and not decision.candidate(decision.region).accepts
    assert decision.policy_version == policy.version
    ranks = [c.rank for c in decision.candidates]
    assert ranks == list(range(1, len(ranks) + 1))


@given(cases)
def test_explanation_in_every_language_names_the_responsible_region(case):
    policy, req = case
    decision = resolve(req, policy)
    texts = decision.explanation.as_dict()
    assert tuple(texts) == LANGUAGES
    for text in texts.values():
        assert decision.region_name in text
        assert "{" not in text and "}" not in text
        if decision.handover_to_name:
            assert decision.handover_to_name in text


@settings(max_examples=50)
@given(cases)
def test_json_round_trip_of_request_and_decision(case):
    policy, req = case
    assert parse_request(json.loads(json.dumps(request_to_dict(req)))) == req
    rendered = decision_to_dict(resolve(req, policy))
    assert json.loads(json.dumps(rendered, ensure_ascii=False)) == rendered


@given(cases, st.lists(st.sampled_from([*LANGUAGES, "ar", "xx"]), max_size=7))
def test_explanation_written_when_asked_equals_the_one_written_in_all_languages_at_once(case, asked):
    policy, req = case
    eager = explain(resolve(req, policy)).as_dict()  # every language, in one go
    for language in LANGUAGES:
        assert resolve(req, policy).explained([language]) == {language: eager[language]}
    wanted = [language for language in dict.fromkeys(asked) if language in LANGUAGES]
    lazy = decision_to_dict(resolve(req, policy), asked)["explanation"]
    assert lazy == {language: eager[language] for language in wanted}
    assert list(lazy) == wanted  # in the order asked, languages the catalogue lacks left out
    assert resolve(req, policy).explanation.as_dict() == eager
