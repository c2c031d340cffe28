"""A case id is bound to its parties: another referral on an existing case only from a current party."""

from __future__ import annotations

import pytest

from services.referral.domain import Action, NotPermitted
from services.referral.domain.case_binding import check_may_refer_on_case, current_parties
from tests.unit.referral.referral_testkit import NEXT, RECEIVER, SENDER, STRANGER, THIRD, act, open_


def test_referral_case_binding_a_new_case_is_open_to_any_agency():
    check_may_refer_on_case(STRANGER, "case-new", [])


@pytest.mark.parametrize("agency", [SENDER, RECEIVER])
def test_referral_case_binding_a_party_may_refer_again(agency):
    check_may_refer_on_case(agency, "case-7f3a", [open_()])


def test_referral_case_binding_a_stranger_may_not_attach_to_an_existing_case():
    with pytest.raises(NotPermitted) as refused:
        check_may_refer_on_case(STRANGER, "case-7f3a", [open_()])
    assert refused.value.details.get("party") is False


def test_referral_case_binding_current_means_the_open_referrals():
    closed = act(open_(), Action.CANCEL, SENDER)
    still_open = open_(referral_id="ref-0002", sender=RECEIVER, receiver=THIRD)
    assert current_parties([closed, still_open]) == {RECEIVER, THIRD}
    with pytest.raises(NotPermitted):
        check_may_refer_on_case(SENDER, "case-7f3a", [closed, still_open])


def test_referral_case_binding_when_all_closed_those_who_worked_on_it_may_pick_it_up():
    closed = act(open_(), Action.CANCEL, SENDER)
    check_may_refer_on_case(RECEIVER, "case-7f3a", [closed])
    with pytest.raises(NotPermitted):
        check_may_refer_on_case(NEXT, "case-7f3a", [closed])
