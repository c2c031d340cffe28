"""The region worker builds the resolver's request straight from the proto and the assignment
straight from the Decision (issue 13). Both must give exactly what the JSON document path gives:
the same request, the same refusal naming the field, the same assignment event."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from referralmesh.v1 import common_pb2
from services.region.adapters.facts_mapping import (
    assignment_from,
    assignment_from_decision,
    request_document,
    request_from_proto,
)
from services.region.decide import Resolver
from services.region.domain import InvalidInput, decision_to_dict, explanation_languages, parse_request
from tests.unit.region.region_testkit import SHIPPED

# Mostly real municipalities (one abolished: Weesp) with a few codes the policy refuses.
CODES = st.sampled_from(["GM0363", "GM0014", "GM0599", "GM0518", "GM0457", "GM9999", "", " "])
DATES = st.sampled_from(
    ["2015-01-01", "2024-02-29", "2026-10-01", "2026-11-01", "2027-01-01", "2025-02-30", "20250101", "", " "]
)
SERVICES = st.sampled_from(["shelter", "exit_programme", "income", "", "unknown"])
# Input the resolver accepts, so that the assignments compared are many and varied.
VALID_CODES = st.sampled_from(["GM0363", "GM0014", "GM0599", "GM0518", "GM0457", "GM0344", "GM0772"])
VALID_DATES = st.sampled_from(["2012-05-01", "2015-01-01", "2020-02-29", "2024-06-30", "2025-01-01"])


def _period(draw, codes, dates, *, registered: bool) -> common_pb2.Period:
    period = common_pb2.Period(
        municipality=draw(codes), from_date=draw(dates), to_date=draw(st.one_of(st.just(""), dates))
    )
    if registered:
        period.registered = draw(st.booleans())
    return period


@st.composite
def proto_requests(draw, codes=CODES, dates=DATES, services=SERVICES, decision_dates=DATES) -> dict:
    facts = common_pb2.BindingFacts(
        residence=[_period(draw, codes, dates, registered=True) for _ in range(draw(st.integers(0, 3)))],
        grew_up_in=draw(st.lists(codes, max_size=2)),
        family_in=draw(st.lists(codes, max_size=2)),
        work=[_period(draw, codes, dates, registered=False) for _ in range(draw(st.integers(0, 2)))],
    )
    return {
        "asked_in": draw(codes),
        "service": draw(services),
        "decision_date": draw(decision_dates),
        "current_region": draw(st.one_of(st.none(), st.sampled_from(["GM0363", "GM0014", "GM0362", ""]))),
        "facts": facts,
    }


def accepted_requests():
    """Requests the resolver decides (periods may still end before they start: refused)."""
    return proto_requests(
        codes=VALID_CODES,
        dates=VALID_DATES,
        services=st.sampled_from(["shelter", "exit_programme", "income"]),
        decision_dates=st.just("2026-11-01"),
    )


def _outcome(call):
    try:
        return call()
    except InvalidInput as problem:
        return ("refused", str(problem))


@settings(max_examples=300, deadline=None)
@given(proto_requests())
def test_the_request_from_the_proto_is_the_request_the_document_parses_to(fields):
    direct = _outcome(lambda: request_from_proto(**fields))
    via_document = _outcome(lambda: parse_request(request_document(**fields)))
    assert direct == via_document


@settings(max_examples=150, deadline=None)
@given(accepted_requests(), st.lists(st.sampled_from(["en", "es", "pl", "ro", "nl", "fr"]), max_size=3))
def test_the_assignment_from_the_decision_is_the_assignment_from_its_json(fields, languages):
    resolver = Resolver(SHIPPED)
    try:
        decision = resolver.decide_request(request_from_proto(**fields))
    except InvalidInput:
        return
    explained_in = explanation_languages(languages)
    context = {"service": fields["service"], "referral_id": "ref-1", "languages": languages}
    direct = assignment_from(decision, explained_in, **context)
    via_json = assignment_from_decision(decision_to_dict(decision, explained_in), **context)
    assert direct == via_json
    assert direct.explanation.keys() == set(explained_in)
