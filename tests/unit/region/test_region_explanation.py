"""The client-facing explanation: complete in five languages, names the region, respectful."""

import re
from string import Formatter

import pytest
import yaml

from services.region.domain import LANGUAGES, SERVICE_KINDS, load_policy, resolve
from services.region.domain.catalogue import CATALOGUE, plural_form
from services.region.domain.explanation import _Writer
from tests.unit.region.region_testkit import (
    AMSTERDAM,
    DEN_HAAG,
    ROTTERDAM,
    SHIPPED,
    lived,
    request,
    shipped_data,
    worked,
)

# One request per decision rule, so every branch of the text is written at least once.
CASES = {
    "handover": request(AMSTERDAM, residence=[lived("GM0014", "2015-01-01")], grew_up_in=["GM0599"]),
    "bound_here": request(AMSTERDAM, "housing", family_in=["GM0362"]),
    "bound_nowhere": request(ROTTERDAM, "health"),
    "no_programme_accepts": request(AMSTERDAM, "exit_programme", residence=[lived("GM0363", "2023-01-01")]),
    "no_better_bound_region": request(ROTTERDAM, "exit_programme", residence=[lived("GM0363", "2023-01-01")]),
    "already_responsible": request(AMSTERDAM, "legal", current_region=ROTTERDAM),
    "tie": request(
        AMSTERDAM, "income", work=[worked("GM0599", "2024-01-01", "2025-06-30"), worked("GM0518", "2025-07-01")]
    ),
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


# ------------------------------------------------------------------------- corrected wording

LIVED_AND_GREW_UP = request(AMSTERDAM, residence=[lived("GM0014", "2015-01-01")], grew_up_in=["GM0014"])


def texts(req, policy=SHIPPED) -> dict[str, str]:
    return resolve(req, policy).explanation.as_dict()


def test_residence_reads_as_having_lived_there_never_as_a_permit_check():
    one = texts(CASES["handover"])  # lived in Groningen only
    assert "Dat komt omdat u daar lang hebt gewoond." in one["nl"]
    assert "This is because you lived there for a long time." in one["en"]
    assert "Esto se debe a que vivió allí mucho tiempo." in one["es"]
    assert "Powód: wieloletnie mieszkanie tam." in one["pl"]
    assert "Motivul: faptul că ați locuit mult timp acolo." in one["ro"]


def test_several_reasons_are_whole_clauses_joined_by_and():
    both = texts(LIVED_AND_GREW_UP)
    assert "Dat komt omdat u daar lang hebt gewoond en omdat u daar bent opgegroeid." in both["nl"]
    assert "This is because you lived there for a long time and because you grew up there." in both["en"]
    assert "Esto se debe a que vivió allí mucho tiempo y creció allí." in both["es"]
    assert "Powody: wieloletnie mieszkanie tam i dorastanie tam." in both["pl"]
    assert "Motivele: faptul că ați locuit mult timp acolo și faptul că ați crescut acolo." in both["ro"]


def test_dutch_corrections():
    handover = texts(CASES["handover"])["nl"]
    assert "De hulp die u vroeg (opvang) heeft daar waarschijnlijk meer kans van slagen." in handover
    assert "brengt u met die regio in contact" in handover
    assert "omdat deze regio u al helpt." in texts(CASES["already_responsible"])["nl"]


def test_spanish_corrections():
    handover = texts(CASES["handover"])["es"]
    assert "La ayuda que pidió (albergue)" in handover
    assert "le pondrá en contacto con ella." in handover
    registered = texts(CASES["no_programme_accepts"])["es"]
    assert "haber estado al menos 5 años en el registro municipal de esta región" in registered


def test_polish_corrections():
    assert "Dlatego pomoc dla Ciebie (mieszkanie) zostaje w regionie Amsterdam." in texts(CASES["bound_here"])["pl"]


def test_romanian_corrections():
    assert "vă va pune în legătură cu aceasta." in texts(CASES["handover"])["ro"]
    assert "rămâne în grija regiunii Amsterdam." in texts(CASES["bound_here"])["ro"]


# Old wording that sounded like a residence permit check, or was wrong; none may come back.
OLD_WORDING = {
    "nl": ["verblijf", "uw jeugd", "al hielp", "heeft daar meer kans", "met hen in contact", "Dat komt door"],
    "en": ["long stay", "because of your", "This is because of"],
    "es": ["estancia", "residencia", "padrón", "alojamiento", "contacto con ellos", "se debe a su"],
    "pl": ["pobyt", "Twoja pomoc"],
    "ro": ["ședere", "șederea", "legătură cu ei", "rămâne la regiunea"],
}


def test_old_wording_is_gone_from_the_catalogue_and_every_explanation():
    every_text = [texts(req) for req in [*CASES.values(), LIVED_AND_GREW_UP]]
    for lang, phrases in OLD_WORDING.items():
        for phrase in phrases:
            assert not any(phrase in text for text in CATALOGUE[lang].values()), (lang, phrase)
            assert not any(phrase in text[lang] for text in every_text), (lang, phrase)


def _exit_programme_needs_registration(data: dict, region: str) -> None:
    entry = next(e for e in data["regions"] if e["code"] == region)
    entry.setdefault("services", {})["exit_programme"] = {
        "requires": [{"kind": "residence", "years": 5, "registered_only": True}]
    }


def test_several_regions_are_named_in_the_plural_in_every_language(tmp_path):
    data = shipped_data()
    _exit_programme_needs_registration(data, DEN_HAAG)
    changed = tmp_path / "regions.yaml"
    changed.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    policy = load_policy(changed)
    # Bound to Amsterdam (residence) and Den Haag (family); both exit programmes need 5 years
    # of registration, so Rotterdam, where help was asked, stays responsible.
    req = request(ROTTERDAM, "exit_programme", residence=[lived("GM0363", "2023-01-01")], family_in=["GM0518"])
    plural = texts(req, policy)
    assert "U hebt een band met de regio's Amsterdam en Den Haag, maar" in plural["nl"]
    assert "You have a tie with regions Amsterdam and Den Haag, but" in plural["en"]
    assert "Usted tiene un vínculo con las regiones de Amsterdam y Den Haag, pero" in plural["es"]
    assert "Masz związek z regionami Amsterdam i Den Haag, ale" in plural["pl"]
    assert "Aveți o legătură cu regiunile Amsterdam și Den Haag, dar" in plural["ro"]
    single = texts(CASES["no_better_bound_region"])
    assert "U hebt een band met regio Amsterdam, maar" in single["nl"]
    assert "Masz związek z regionem Amsterdam, ale" in single["pl"]


def test_a_tie_with_several_other_regions_names_them_in_the_plural():
    # A year of work in each of Amsterdam, Rotterdam and Den Haag: equally bound, so Amsterdam stays.
    work = [worked(code, "2024-01-01", "2025-06-30") for code in ("GM0363", "GM0599", "GM0518")]
    plural = texts(request(AMSTERDAM, "income", work=work))
    assert "Uw band met de regio's Den Haag en Rotterdam is even sterk als met regio Amsterdam." in plural["nl"]
    assert "Your tie with regions Den Haag and Rotterdam is just as strong as with region Amsterdam." in plural["en"]
    assert "Su vínculo con las regiones de Den Haag y Rotterdam es igual de fuerte" in plural["es"]
    assert "Twój związek z regionami Den Haag i Rotterdam jest tak samo silny" in plural["pl"]
    assert "Legătura dumneavoastră cu regiunile Den Haag și Rotterdam este la fel de puternică" in plural["ro"]


def test_spanish_and_becomes_e_before_an_i_sound():
    decision = resolve(CASES["tie"], SHIPPED)
    spanish = _Writer(decision, "es")
    assert spanish.join(["Amsterdam", "Hilversum"]) == "Amsterdam e Hilversum"
    assert spanish.join(["Amsterdam", "IJsselland"]) == "Amsterdam e IJsselland"
    assert spanish.join(["Amsterdam", "Den Haag"]) == "Amsterdam y Den Haag"
    assert _Writer(decision, "nl").join(["Amsterdam", "Hilversum"]) == "Amsterdam en Hilversum"


def test_places_have_their_dutch_names_in_every_language():
    for text in texts(CASES["tie"]).values():
        assert "Den Haag" in text and "The Hague" not in text and "La Haya" not in text
