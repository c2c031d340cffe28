"""Agency directory: the shipped file, search filters and loader refusals naming the place."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from referencedata import (
    AgencyKind,
    DirectoryError,
    InvalidQuery,
    NeedDomain,
    load_directory,
    parse_directory,
)

CONFIG = Path(__file__).resolve().parents[3] / "referencedata" / "data" / "agencies.yaml"


@pytest.fixture(scope="module")
def directory():
    return load_directory(CONFIG)


def test_shipped_directory_is_realistic(directory):
    assert 15 <= len(directory) <= 25
    assert set(directory.regions) == {"GM0363", "GM0599", "GM0518", "GM0344", "GM0014", "GM0772"}
    assert {a.kind for a in directory} == set(AgencyKind)
    served = {r for a in directory for r in a.regions_served}
    assert served == set(directory.regions)
    assert {"nl", "en", "es", "pl", "ro"} <= {lang for a in directory for lang in a.languages}
    assert {d for a in directory for d in a.need_domains} >= set(NeedDomain) - {NeedDomain.OTHER}
    # Every region has its central municipality and a shelter-domain agency.
    for region in directory.regions:
        kinds = {a.kind for a in directory.search(region=region)}
        assert AgencyKind.CENTRAL_MUNICIPALITY in kinds, region
        assert directory.search(domain="shelter", region=region), region


def test_shipped_directory_uses_respectful_language():
    text = CONFIG.read_text(encoding="utf-8").lower()
    assert not re.search(r"prostitut|hooker|whore|victim", text)


def test_lookups(directory):
    agency = directory.get("exit-amsterdam")
    assert agency is not None and agency.kind is AgencyKind.EXIT_PROGRAMME
    assert directory.by_oin(agency.oin) is agency
    assert directory.get("nope") is None and directory.by_oin("0" * 20) is None
    assert "exit-amsterdam" in directory and "nope" not in directory


def test_search_filters_and_order(directory):
    everyone = directory.search()
    assert [a.agency_id for a in everyone] == sorted(a.agency_id for a in directory)
    exit_ams = directory.search(domain=NeedDomain.EXIT_PROGRAMME, region="GM0363")
    assert [a.agency_id for a in exit_ams] == ["exit-amsterdam"]
    romanian = directory.search(language="ro")
    assert romanian and all("ro" in a.languages for a in romanian)
    open_now = directory.search(accepting_only=True)
    assert all(a.accepting for a in open_now) and len(open_now) < len(everyone)
    closed = {a.agency_id for a in everyone} - {a.agency_id for a in open_now}
    assert "exit-groningen" in closed
    assert directory.search(domain="exit_programme", region="GM0014", accepting_only=True) == []
    combined = directory.search(domain="health", region="GM0518", language="es")
    assert [a.agency_id for a in combined] == ["health-rotterdam"]
    assert [a.agency_id for a in directory.search(kind="legal_aid", region="GM0772")] == ["legal-eindhoven"]
    assert directory.search(region="GM9999") == []  # well-formed but unknown: nothing


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"domain": "crime"}, "domain"),
        ({"region": "Amsterdam"}, "region"),
        ({"language": "romanian"}, "language"),
        ({"kind": "bank"}, "kind"),
    ],
)
def test_search_refuses_bad_filters(directory, kwargs, field):
    with pytest.raises(InvalidQuery) as err:
        directory.search(**kwargs)
    assert err.value.field == field


# ----------------------------------------------------------------------------- refusals

GOOD = """\
regions:
  GM0363: Amsterdam
  GM0599: Rotterdam
agencies:
  - id: shelter-amsterdam
    name: Test Shelter
    client_display_name: Test Shelter
    kind: shelter
    oin: "99990000000000000001"
    regions_served: [GM0363]
    need_domains: [shelter]
    languages: [nl, en]
    accepting: true
  - id: care-rotterdam
    name: Test Care
    client_display_name: Test Care
    kind: care
    oin: "99990000000000000002"
    regions_served: [GM0599]
    need_domains: [health]
    languages: [nl]
    accepting: false
"""


def _refusal(text: str) -> str:
    with pytest.raises(DirectoryError) as err:
        parse_directory(textwrap.dedent(text), source="agencies.yaml")
    assert err.value.code == "INVALID_DIRECTORY"
    return str(err.value)


def test_good_document_parses():
    d = parse_directory(GOOD)
    assert [a.agency_id for a in d] == ["care-rotterdam", "shelter-amsterdam"]
    assert d.regions == {"GM0363": "Amsterdam", "GM0599": "Rotterdam"}


@pytest.mark.parametrize(
    "old,new,place,words",
    [
        ("id: care-rotterdam", "id: shelter-amsterdam", "agencies.yaml:14 agencies[1].id", "duplicate agency id"),
        ('"99990000000000000002"', '"99990000000000000001"', "agencies.yaml:18 agencies[1].oin", "duplicate OIN"),
        ("kind: care", "kind: bank", "agencies.yaml:17 agencies[1].kind", "unknown kind"),
        ('"99990000000000000002"', "99990000000000000002", "agencies.yaml:18 agencies[1].oin", "quoted string"),
        ('"99990000000000000002"', '"12345"', "agencies.yaml:18 agencies[1].oin", "20-digit"),
        (
            "regions_served: [GM0599]",
            "regions_served: [GM599]",
            "agencies.yaml:19 agencies[1].regions_served[0]",
            "CBS code",
        ),
        (
            "regions_served: [GM0599]",
            "regions_served: [GM0772]",
            "agencies.yaml:19 agencies[1].regions_served[0]",
            "not declared",
        ),
        (
            "need_domains: [health]",
            "need_domains: [health, crime]",
            "agencies.yaml:20 agencies[1].need_domains[1]",
            "unknown need domain",
        ),
        ("languages: [nl]\n", "languages: [nl, xx]\n", "agencies.yaml:21 agencies[1].languages[1]", "ISO 639-1"),
        ("languages: [nl]\n", "languages: [nl, nl]\n", "agencies.yaml:21 agencies[1].languages[1]", "duplicate code"),
        ("accepting: false", "accepting: maybe", "agencies.yaml:22 agencies[1].accepting", "true or false"),
        ("id: care-rotterdam", "id: Care Rotterdam", "agencies.yaml:14 agencies[1].id", "slug"),
        (
            "    accepting: false\n",
            "    accepting: false\n    langauges: [en]\n",
            "agencies.yaml:23 agencies[1].langauges",
            "unknown field",
        ),
        ("    accepting: false\n", "", "agencies.yaml:14 agencies[1]", "missing field 'accepting'"),
        (
            "  GM0599: Rotterdam\n",
            "  GM0599: Rotterdam\n  GM0599: Again\n",
            "agencies.yaml:4 regions.GM0599",
            "duplicate key",
        ),
        ("  GM0599: Rotterdam\n", "  Rotterdam: Rotterdam\n", "agencies.yaml:3 regions.Rotterdam", "CBS code"),
    ],
)
def test_loader_refusals_name_the_place(old, new, place, words):
    assert old in GOOD
    message = _refusal(GOOD.replace(old, new, 1))
    assert message.startswith(place), message
    assert words in message, message


def test_loader_refuses_broken_yaml_and_shapes(tmp_path):
    assert _refusal("agencies: [\n").startswith("agencies.yaml:")
    assert "non-empty list" in _refusal("regions:\n  GM0363: Amsterdam\nagencies: []\n")
    assert "unknown top-level key" in _refusal(GOOD + "extra: 1\n")
    assert "expected a mapping" in _refusal("- just a list\n")
    with pytest.raises(DirectoryError, match="cannot read"):
        load_directory(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- client display names


def test_every_shipped_agency_has_a_neutral_client_display_name(directory):
    for agency in directory:
        assert agency.client_display_name.strip(), agency.agency_id
        assert not re.search(r"sex|seks|prostitu|escort|exit|uitstap", agency.client_display_name, re.I)
    peer_support = directory.get("advocacy-amsterdam")
    assert peer_support.name == "Voices Together, sex worker peer support and advocacy"
    assert peer_support.client_display_name == "Voices Together"


def test_shipped_directory_names_places_in_dutch(directory):
    assert directory.regions["GM0518"] == "Den Haag"
    assert "The Hague" not in CONFIG.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "outing",
    [
        "Voices Together, sex worker peer support",
        "Sekswerkers Steunpunt",
        "Exit Programme North",
        "Escort Support",
        "Prostitutie Maatschappelijk Werk",
        "Uitstapprogramma Zuid",
    ],
)
def test_a_client_display_name_that_outs_the_client_is_refused(outing):
    message = _refusal(GOOD.replace("client_display_name: Test Care", f"client_display_name: {outing}", 1))
    assert message.startswith("agencies.yaml:16 agencies[1].client_display_name"), message
    assert "must not reveal" in message


def test_a_missing_or_empty_client_display_name_is_refused():
    message = _refusal(GOOD.replace("    client_display_name: Test Care\n", "", 1))
    assert message.startswith("agencies.yaml:14 agencies[1]"), message
    assert "missing field 'client_display_name'" in message
    empty = _refusal(GOOD.replace("client_display_name: Test Care", 'client_display_name: " "', 1))
    assert "agencies[1].client_display_name" in empty and "empty" in empty
