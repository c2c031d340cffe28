"""The notify API's authorisation policy, every role against every decision."""

from __future__ import annotations

import pytest

from meshkernel.principal import AGENCY, COORDINATOR, NATIONAL, SYSTEM, Denied, Principal
from services.notify.domain import authorisation as policy

SENDER, RECEIVER, OTHER = (
    Principal(AGENCY, "exit-the-hague"),
    Principal(AGENCY, "shelter-utrecht"),
    Principal(AGENCY, "care-rotterdam"),
)
REGION, ELSEWHERE = Principal(COORDINATOR, "coord-gm0518", "GM0518"), Principal(COORDINATOR, "coord-gm0344", "GM0344")
NATIONAL_COORDINATOR, SYSTEM_SERVICE = Principal(COORDINATOR, "coord-national", NATIONAL), Principal(SYSTEM, "region")
PARTIES = frozenset({SENDER.name, RECEIVER.name})


@pytest.mark.parametrize("who", [SENDER, RECEIVER, OTHER, SYSTEM_SERVICE])
def test_notify_authorisation_only_coordinators_watch_alerts(who):
    with pytest.raises(Denied):
        policy.watch_regions(who, set())


def test_notify_authorisation_a_region_coordinator_watches_only_their_region():
    assert policy.watch_regions(REGION, set()) == {"GM0518"}
    assert policy.watch_regions(REGION, {"GM0518"}) == {"GM0518"}
    with pytest.raises(Denied):
        policy.watch_regions(REGION, {"GM0344"})
    with pytest.raises(Denied):
        policy.watch_regions(REGION, {"GM0518", "GM0344"})


def test_notify_authorisation_the_national_coordinator_watches_any_region():
    assert policy.watch_regions(NATIONAL_COORDINATOR, set()) is None
    assert policy.watch_regions(NATIONAL_COORDINATOR, {"GM0344"}) == {"GM0344"}


@pytest.mark.parametrize("who", [SENDER, RECEIVER, OTHER, SYSTEM_SERVICE])
def test_notify_authorisation_only_coordinators_act_on_alerts(who):
    with pytest.raises(Denied):
        policy.acting_coordinator(who)


def test_notify_authorisation_a_coordinator_acts_with_their_own_scope():
    acting = policy.acting_coordinator(ELSEWHERE)
    assert (acting.username, acting.scope) == ("coord-gm0344", "GM0344")
    assert not acting.may_see("GM0518")


@pytest.mark.parametrize(
    "who, allowed",
    [
        (SENDER, True),
        (RECEIVER, True),
        (OTHER, False),
        (REGION, False),
        (ELSEWHERE, False),
        (NATIONAL_COORDINATOR, False),
        (SYSTEM_SERVICE, False),
    ],
)
def test_notify_authorisation_seal_and_erase_only_for_parties(who, allowed):
    for decide in (policy.may_seal_contact, policy.may_erase_client):
        if allowed:
            decide(who, PARTIES)
        else:
            with pytest.raises(Denied):
                decide(who, PARTIES)


def test_notify_authorisation_the_first_seal_on_an_unknown_case_is_any_agency_but_erasure_is_not():
    policy.may_seal_contact(OTHER, frozenset())
    with pytest.raises(Denied):
        policy.may_seal_contact(REGION, frozenset())
    with pytest.raises(Denied):
        policy.may_erase_client(OTHER, frozenset())
