"""A case id is bound to its parties.

Without this rule any agency that learns a case id could open a referral on it and so move the
case's responsible region or redirect the client's messages. The first referral on a case id
opens the case; after that, another referral on it comes only from a current party: an agency
that is sender, receiver or pending receiver of one of the case's open referrals, or, when
every referral of the case has closed, of any of them (so a case can be picked up again by
those who worked on it, and by nobody else).
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import NotPermitted
from .model import Referral


def current_parties(referrals_of_case: Iterable[Referral]) -> frozenset[str]:
    referrals = list(referrals_of_case)
    open_ones = [referral for referral in referrals if referral.is_open]
    return frozenset().union(*(referral.parties for referral in (open_ones or referrals)))


def check_may_refer_on_case(agency_id: str, case_id: str, referrals_of_case: Iterable[Referral]) -> None:
    """Refuse a new referral on an existing case from an agency that is no current party."""
    referrals = list(referrals_of_case)
    if referrals and agency_id not in current_parties(referrals):
        raise NotPermitted(
            f"{agency_id} is not a party to case {case_id}; another referral on an existing "
            "case comes from one of its current parties",
            party=False,
        )
