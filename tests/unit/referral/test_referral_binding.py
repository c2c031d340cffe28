from datetime import date

import pytest

from services.referral.domain.binding import FactPeriod, check_binding_facts
from services.referral.domain.errors import InvalidReferral

TODAY = date(2026, 11, 1)


def _check(**overrides):
    facts = dict(asked_in="GM0518", residence=[], work=[], grew_up_in=[], family_in=[], today=TODAY)
    facts.update(overrides)
    check_binding_facts(**facts)


def test_a_client_bound_nowhere_has_no_facts_and_that_is_fine():
    _check()
    _check(work=[FactPeriod("GM0363", "2025-01-01", "")], grew_up_in=["GM0599"])


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"asked_in": ""}, "asked_in"),
        ({"asked_in": "Den Haag"}, "asked_in"),
        ({"residence": [FactPeriod("Damstraat 1", "2020-01-01", "")]}, "facts.residence[0].municipality"),
        ({"work": [FactPeriod("GM0363", "1 jan", "")]}, "facts.work[0].from_date"),
        ({"work": [FactPeriod("GM0363", "2027-01-01", "")]}, "facts.work[0].from_date"),
        ({"residence": [FactPeriod("GM0363", "2020-01-01", "2019-01-01")]}, "facts.residence[0].to_date"),
        ({"grew_up_in": ["GM0599", "Maria"]}, "facts.grew_up_in[1]"),
        ({"family_in": [""]}, "facts.family_in[0]"),
    ],
)
def test_malformed_facts_are_refused_naming_the_field_without_repeating_it(overrides, field):
    with pytest.raises(InvalidReferral) as refused:
        _check(**overrides)
    assert refused.value.field == field
    for typed in ("Den Haag", "Damstraat", "Maria", "1 jan"):
        assert typed not in str(refused.value)
