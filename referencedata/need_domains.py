"""Need domains: the areas of life a referral is about (a closed list of stable codes).

Referrals name their need domains, agencies offer them in the directory, and the referral
service matches the two. The codes are stable: a code once shipped stays valid, so referrals
stored under it keep their meaning.
"""

from __future__ import annotations

from enum import Enum


class NeedDomain(str, Enum):
    SHELTER = "shelter"
    EXIT_PROGRAMME = "exit_programme"
    HEALTH = "health"
    INCOME = "income"
    HOUSING = "housing"
    LEGAL = "legal"
    WORK = "work"
    FINANCE = "finance"
    RESIDENCE = "residence"
    SAFETY = "safety"
    OTHER = "other"

    def __str__(self) -> str:  # the bare code (Python 3.11 would print 'NeedDomain.SHELTER')
        return self.value


NEED_DOMAINS = frozenset(d.value for d in NeedDomain)
