"""Client messages name agencies neutrally and places by their Dutch names: a message may be read
on a lock screen or a shared phone, and must not tell anyone that the client is a sex worker."""

import re

import pytest

from meshkernel.config import MeshSettings
from referencedata import load_directory
from services.notify.adapters.client_messages import ClientMessages
from services.notify.adapters.directory import Names, load_names
from services.notify.domain.messages import CLIENT_TEMPLATES, LANGUAGES, MessageFacts

DEN_HAAG, AMSTERDAM = "GM0518", "GM0363"
SETTINGS = MeshSettings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' own option
NAMES = load_names(SETTINGS)
DIRECTORY = load_directory(SETTINGS.agency_directory_path)
OUTING = re.compile(r"sex|seks|prostitu|escort|peer support|exit|uitstap", re.IGNORECASE)


def message(receiver: str | None, region: str, template: str, language: str, handover: str = "") -> str:
    facts = MessageFacts(
        organisation=NAMES.client_organisation(receiver, region),
        region=NAMES.region(region),
        handover_region=NAMES.region(handover or AMSTERDAM),
        help_name=NAMES.help_name,
        help_phone=NAMES.help_phone,
        help_url=NAMES.help_url,
    )
    return ClientMessages().render(template, language, facts)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_peer_support_group_is_named_neutrally_in_every_client_message(language):
    for template in CLIENT_TEMPLATES:
        text = message("advocacy-amsterdam", AMSTERDAM, template, language)
        assert "Voices Together" in text
        assert "Voices Together, sex worker peer support" not in text
        assert not OUTING.search(text), text


def test_no_agency_of_the_directory_outs_a_client_in_any_message():
    for agency in DIRECTORY:
        for template in CLIENT_TEMPLATES:
            for language in LANGUAGES:
                text = message(agency.agency_id, agency.regions_served[0], template, language)
                assert agency.client_display_name in text
                assert agency.name not in text or agency.name == agency.client_display_name
                assert not OUTING.search(text), (agency.agency_id, language)


@pytest.mark.parametrize("language", LANGUAGES)
def test_places_have_their_dutch_name_in_every_language(language):
    text = message("exit-the-hague", DEN_HAAG, "client_handover_proposed", language, handover=DEN_HAAG)
    assert "Den Haag" in text and "The Hague" not in text and "La Haya" not in text


def test_spanish_message_names_the_region_as_the_explanation_does():
    text = message("shelter-utrecht", DEN_HAAG, "client_responsible_region", "es")
    assert "en la región de Den Haag" in text  # the explanation says "la región de Den Haag"


def test_without_a_known_receiver_the_region_desk_is_named_never_an_agency_id():
    assert NAMES.client_organisation(None, DEN_HAAG) == "Regional Support Desk Den Haag"
    assert NAMES.client_organisation("sex-work-support-unknown", DEN_HAAG) == "Regional Support Desk Den Haag"
    bare = Names(agencies={}, regions={"GM0599": "Rotterdam"}, help_name="", help_phone="", help_url="")
    assert bare.client_organisation("advocacy-rotterdam", "GM0599") == "Rotterdam"


def test_a_region_is_one_place_not_them_in_polish_and_romanian():
    romanian = message("shelter-utrecht", DEN_HAAG, "client_handover_proposed", "ro")
    assert "O întrebăm. Până când regiunea Amsterdam spune da" in romanian and "Îi întrebăm" not in romanian
    polish = message("shelter-utrecht", DEN_HAAG, "client_handover_proposed", "pl")
    assert "Pytamy ten region o to. Dopóki region Amsterdam się nie zgodzi" in polish and "Pytamy ich" not in polish
