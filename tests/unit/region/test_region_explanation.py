"""The client-facing explanation: complete in five languages, names the region, respectful."""

import re
from string import Formatter

import pytest
from tests.unit.region.region_testkit import AMSTERDAM, ROTTERDAM, SHIPPED, lived, request, worked

from services.region.domain import LANGUAGES, SERVICE_KINDS, resolve
from services.region.domain.catalogue import CATALOGUE, plural_form

# One request per decision rule, so every branch of the text is written at least once.
CASES = {
    "handover": request(AMSTERDAM, residence=[lived("GM0014", "2015-01-01")], grew_up_in=["GM0599"]),
    "bound_here": request(AMSTERDAM, "housing", family_in=["GM0362"]),
    "bound_nowhere": request(ROTTERDAM, "health"),
    "no_programme_accepts": request(AMSTERDAM, "exit_programme", residence=[lived("GM0363", "2023-01-01")]),
    "no_better_bound_region": request(ROTTERDAM, "exit_programme", residence=[lived("GM0363", "2023-01-01")]),
    "already_responsible": request(AMSTERDAM, "legal", current_region=ROTTERDAM),
    "tie": request(AMSTERDAM, "income", work=[worked("GM0599", "2024-01-01", "2025-06-30"), worked("GM0518", "2025-07-01")]),
}


def test_catalogue_has_the_same_keys_and_placeholders_in_every_language():
    assert tuple(CATALOGUE) == LANGUAGES
    reference = CATALOGUE["en"]
    for lang, messages in CATALOGUE.items():
        assert set(messages) == set(reference), lang
        for key, text in messages.items():
            fields = {f for _, f, _, _ in Formatter().parse(text) if f}
            assert fields == {f for _, f, _, _ in Formatter().parse(reference[key]) if f}, (lang, key)


def test_every_service_kind_has_a_name_in_every_language():
    for messages in CATALOGUE.values():
        for kind in SERVICE_KINDS:
            assert messages[f"service.{kind}"].strip()


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_language_is_present_non_empty_and_names_the_responsible_region(case):
    decision = resolve(CASES[case], SHIPPED)
    texts = decision.explanation.as_dict()
    assert set(texts) == {"nl", "en", "es", "pl", "ro"}
    for lang, text in texts.items():
        assert len(text) > 80, lang
        assert decision.region_name in text, lang
        assert "{" not in text, lang
    assert len(set(texts.values())) == 5  # really translated, not copied


def test_each_rule_gets_its_own_text():
    english = {case: resolve(req, SHIPPED).explanation.en for case, req in CASES.items()}
    assert "stronger tie with region Groningen" in english["handover"]
    assert "stays with region Amsterdam" in english["bound_here"]
    assert "no tie with any region" in english["bound_nowhere"]
    assert "extra condition: at least 5 years registered" in english["no_programme_accepts"]
    assert "tie with region Amsterdam, but" in english["no_better_bound_region"]
    assert "was already helping you" in english["already_responsible"]
    assert "fixed order" in english["tie"]
    for text in english.values():
        assert "Do you disagree?" in text  # the client always learns what they can do


def test_plural_forms_follow_polish_and_romanian_grammar():
    assert [plural_form("pl", n) for n in (1, 2, 5, 12, 22, 25)] == ["one", "few", "many", "many", "few", "many"]
    assert [plural_form("ro", n) for n in (1, 2, 19, 20, 101, 120)] == ["one", "few", "few", "many", "few", "many"]
    assert plural_form("en", 2) == plural_form("nl", 5) == "many"


BANNED = re.compile(r"prostitu|slachto|victim|víctima|ofiar|\bhoer|whore|illegal|illegaal", re.IGNORECASE)


def test_catalogue_uses_respectful_plain_language():
    for lang, messages in CATALOGUE.items():
        for key, text in messages.items():
            assert not BANNED.search(text), (lang, key, text)
