"""Who may read a case's assignment from the region service."""

from __future__ import annotations

import pytest

from meshkernel.principal import AGENCY, COORDINATOR, NATIONAL, SYSTEM, Denied, Principal
from services.region.domain.authorisation import may_read_assignment

CASE = {"parties": ("exit-the-hague", "shelter-utrecht"), "regions": ("GM0518", "")}


@pytest.mark.parametrize(
    "who, allowed",
    [
        (Principal(AGENCY, "exit-the-hague"), True),
        (Principal(AGENCY, "shelter-utrecht"), True),
        (Principal(AGENCY, "care-rotterdam"), False),
        (Principal(COORDINATOR, "coord-gm0518", "GM0518"), True),
        (Principal(COORDINATOR, "coord-gm0344", "GM0344"), False),
        (Principal(COORDINATOR, "coord-national", NATIONAL), True),
        (Principal(SYSTEM, "notify"), True),
        (Principal(COORDINATOR, "no-scope", None), False),
    ],
)
def test_region_authorisation_get_assignment(who, allowed):
    if allowed:
        may_read_assignment(who, **CASE)
    else:
        with pytest.raises(Denied):
            may_read_assignment(who, **CASE)


def test_region_authorisation_the_handover_regions_coordinator_may_read():
    may_read_assignment(
        Principal(COORDINATOR, "coord-gm0344", "GM0344"), parties=("a", "b"), regions=("GM0518", "GM0344")
    )


def test_region_authorisation_an_empty_region_covers_nobody_but_the_national_coordinator():
    with pytest.raises(Denied):
        may_read_assignment(Principal(COORDINATOR, "c", "GM0518"), parties=(), regions=("",))
