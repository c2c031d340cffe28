"""Need domains: every area of the 2018 study can be referred and matched, with stable codes,
labels in the five client languages, and a region decided like any other referral."""

from __future__ import annotations

import pytest

from referencedata import CLIENT_LANGUAGES, NeedDomain, load_directory
from referencedata.need_domains import BINDING_SERVICE, LABELS, STUDY_AREAS, binding_service, label
from services.referral.domain import InvalidReferral
from services.referral.domain.lifecycle import _need_domains
from services.region.domain import SERVICE_KINDS

DIRECTORY = load_directory()

# Codes shipped before the study's areas were added; they must stay valid with the same value.
EARLIER_CODES = [
    "shelter",
    "exit_programme",
    "health",
    "income",
    "housing",
    "legal",
    "work",
    "finance",
    "residence",
    "safety",
    "other",
]


def test_the_sixteen_areas_of_the_study_each_have_a_code():
    assert len(STUDY_AREAS) == 16
    assert set(STUDY_AREAS) >= {
        "advocacy",
        "taxes",
        "insurance",
        "banking and money",
        "working from home",
        "enforcement",
        "stigma and treatment",
        "government bodies",
    }
    assert NeedDomain.OTHER not in STUDY_AREAS.values()


def test_earlier_codes_stay_valid_and_come_first():
    assert [d.value for d in NeedDomain][: len(EARLIER_CODES)] == EARLIER_CODES


@pytest.mark.parametrize("area", sorted(STUDY_AREAS))
def test_every_area_can_be_referred_and_is_offered_by_an_accepting_agency(area):
    domain = STUDY_AREAS[area]
    assert _need_domains([domain.value]) == (domain,)  # a referral may name it
    assert DIRECTORY.search(domain=domain, accepting_only=True), area  # and someone takes it


def test_every_code_has_a_plain_label_in_each_client_language():
    for domain in NeedDomain:
        assert set(LABELS[domain]) == set(CLIENT_LANGUAGES), domain
        assert all(text.strip() for text in LABELS[domain].values())
    assert label("taxes", "nl") == "belasting" and label(NeedDomain.BANKING, "en") == "bank account and payments"
    labels = [label(d, "en") for d in NeedDomain]
    assert len(set(labels)) == len(labels)


def test_labels_use_respectful_words():
    text = " ".join(v for labels in LABELS.values() for v in labels.values()).lower()
    assert "prostitu" not in text and "victim" not in text


def test_every_code_names_a_service_kind_of_the_region_policy():
    assert set(BINDING_SERVICE) == set(NeedDomain)
    assert set(BINDING_SERVICE.values()) <= set(SERVICE_KINDS)


@pytest.mark.parametrize(
    ("domains", "service"),
    [
        (["taxes"], "income"),
        (["permits", "housing"], "housing"),
        (["advocacy"], "legal"),
        (["shelter", "taxes"], "shelter"),
        ([], "shelter"),
        (["nonsense"], "nonsense"),
    ],
)
def test_the_binding_service_of_a_referral(domains, service):
    assert binding_service(domains, frozenset(SERVICE_KINDS)) == service


def test_an_unknown_code_is_still_refused():
    with pytest.raises(InvalidReferral):
        _need_domains(["tax"])


@pytest.mark.parametrize("domain", ["taxes", "insurance", "permits", "treatment"])
def test_a_referral_about_a_new_area_gets_a_responsible_region(domain):
    from meshkernel import envelope as envelopes
    from meshkernel.config import MeshSettings
    from referralmesh.v1 import events_pb2
    from services.region.adapters.assigning import Assigner, load_agency_regions
    from services.region.decide import load_resolver

    config = MeshSettings()
    assigner = Assigner(load_resolver(config.region_policy_path), load_agency_regions(config.agency_directory_path))
    event = envelopes.new_envelope(
        case_id="case-1",
        producer="t",
        event_id="e1",
        referral=events_pb2.ReferralEvent(
            referral_id="ref-1", event_type="ReferralRequested", version=1, need_domains=[domain], asked_in="GM0599"
        ),
    )
    outcome = assigner.on_referral(event, {})
    assert outcome.assignment.assignment.responsible_region == "GM0599"
