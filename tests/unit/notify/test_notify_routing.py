from typing import Any

from services.notify.domain.routing import Assignment, Audience, route


def _assignment(**overrides) -> Assignment:
    values: dict[str, Any] = dict(
        event_id="evt-1",
        case_id="case-1",
        referral_id="ref-1",
        responsible_region="GM0518",
        previous_region="",
        handover_to="",
        rule="bound_here",
        bound_nowhere=False,
        sender="exit-the-hague",
        receiver="shelter-utrecht",
        languages=("es", "en"),
    )
    values.update(overrides)
    return Assignment(**values)


def _summary(notifications):
    return {(n.audience, n.recipient, n.template) for n in notifications}


def test_both_agencies_hear_who_is_responsible():
    assert _summary(route(_assignment())) == {
        (Audience.AGENCY, "shelter-utrecht", "referral_assigned"),
        (Audience.AGENCY, "exit-the-hague", "responsible_region_named"),
    }


def test_a_client_bound_nowhere_reaches_the_region_coordinator_at_once():
    summary = _summary(route(_assignment(bound_nowhere=True, rule="bound_nowhere")))
    assert (Audience.COORDINATOR, "GM0518", "client_bound_nowhere") in summary


def test_a_proposed_handover_reaches_the_coordinator_of_the_responsible_region():
    summary = _summary(route(_assignment(handover_to="GM0014")))
    assert (Audience.COORDINATOR, "GM0518", "handover_proposed") in summary


def test_notification_ids_are_stable_per_assignment_and_distinct_per_recipient():
    first, again = route(_assignment()), route(_assignment())
    assert [n.notification_id for n in first] == [n.notification_id for n in again]
    assert len({n.notification_id for n in first}) == len(first)
    other = route(_assignment(event_id="evt-2"))
    assert not {n.notification_id for n in first} & {n.notification_id for n in other}
