from typing import Any

from services.notify.domain.messages import choose_language
from services.notify.domain.routing import Assignment, Audience, Escalation, route, route_client, route_escalation


def _assignment(**overrides) -> Assignment:
    values: dict[str, Any] = dict(
        event_id="evt-1",
        case_id="case-1",
        referral_id="ref-1",
        responsible_region="GM0518",
        previous_region="",
        handover_to="",
        rule="bound_nowhere",
        bound_nowhere=False,
        sender="exit-the-hague",
        receiver="shelter-utrecht",
        languages=("ro", "en"),
        has_contact=True,
    )
    values.update(overrides)
    return Assignment(**values)


def test_the_client_hears_in_their_language_when_a_region_is_first_named():
    client = route_client(_assignment())
    assert (client.audience, client.recipient, client.template, client.language) == (
        Audience.CLIENT,
        "case-1",
        "client_responsible_region",
        "ro",
    )
    assert client in route(_assignment())


def test_no_contact_means_no_client_message_and_the_agency_routing_is_unchanged():
    assert route_client(_assignment(has_contact=False)) is None
    assert {n.audience for n in route(_assignment(has_contact=False))} == {Audience.AGENCY}


def test_the_client_hears_about_a_proposed_handover_but_not_about_an_unchanged_region():
    assert route_client(_assignment(handover_to="GM0014")).template == "client_handover_proposed"
    assert route_client(_assignment(previous_region="GM0518")) is None
    assert route_client(_assignment(previous_region="GM0363")).template == "client_responsible_region"


def test_the_client_notification_id_is_the_same_whichever_way_it_is_routed():
    assert route_client(_assignment()).notification_id == route_client(_assignment()).notification_id


def test_language_choice_falls_back_to_english_for_languages_without_texts():
    assert choose_language(("ES-es",)) == "es"
    assert choose_language(("bg", "pl")) == "pl"
    assert choose_language(("bg",)) == "en"
    assert choose_language(()) == "en"


def test_an_agency_reminder_goes_to_the_receiving_agency_and_coordinator_levels_do_not_notify():
    reminder = Escalation("esc-1", "case-1", "ref-1", "GM0518", "AGENCY_REMINDER", receiver="shelter-utrecht")
    [notification] = route_escalation(reminder)
    assert (notification.audience, notification.recipient, notification.template) == (
        Audience.AGENCY,
        "shelter-utrecht",
        "referral_reminder",
    )
    assert route_escalation(reminder) == [notification]
    assert route_escalation(Escalation("esc-2", "case-1", "ref-1", "GM0518", "REGION_COORDINATOR", "x")) == []
    assert route_escalation(Escalation("esc-3", "case-1", "ref-1", "GM0518", "AGENCY_REMINDER")) == []
