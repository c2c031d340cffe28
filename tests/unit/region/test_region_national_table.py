"""The shipped national table: all 342 municipalities of 2026 in the 43 regions, merged
municipalities counted for their successor, divided ones refused, and a broken region data file
refused at load."""

from __future__ import annotations

import io
import json
from datetime import date

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from referencedata.municipalities import load_register
from referencedata.regions import REGIONS_PATH
from services.region.adapters.assigning import Refused
from services.region.cli import run_resolve
from services.region.domain import LANGUAGES, InvalidInput, PolicyError, decision_to_dict, load_policy, resolve
from tests.unit.region.region_testkit import SHIPPED, lived, request, shipped_data

REGISTER = load_register()
CENTRALS = [region.code for region in SHIPPED.regions]


def test_the_shipped_policy_has_43_regions_and_every_current_municipality():
    assert len(CENTRALS) == 43
    assert sorted(m.code for r in SHIPPED.regions for m in r.municipalities) == sorted(REGISTER.current)


@pytest.mark.parametrize("code", sorted(REGISTER.current))
def test_every_current_municipality_resolves_to_one_of_the_43(code):
    decision = resolve(request(code), SHIPPED)
    assert decision.region in CENTRALS
    assert decision.region == SHIPPED.region_of(code).code == decision.asked_in_region


@pytest.mark.parametrize("central", CENTRALS)
def test_a_central_municipality_asked_with_no_facts_is_responsible_itself(central):
    decision = resolve(request(central), SHIPPED)
    assert decision.region == central and decision.handover_to is None
    assert decision.rule == "bound_nowhere"


def test_a_residence_in_weesp_counts_for_amsterdam():
    # Registered in Weesp until it joined Amsterdam; asked for help in Almere soon after.
    decision = resolve(
        request("GM0034", residence=[lived("GM0457", "2015-01-01", "2022-03-23")], decision_date=date(2022, 6, 1)),
        SHIPPED,
    )
    assert decision.region == "GM0034" and decision.handover_to == "GM0363"
    assert [r.code for r in decision.renamed] == ["GM0457"] and decision.renamed[0].now == "GM0363"
    for language in LANGUAGES:
        text = getattr(decision.explanation, language)
        assert "Weesp" in text and "Amsterdam" in text and "2022" in text
    payload = decision_to_dict(decision)
    assert payload["renamed_municipalities"] == [
        {"code": "GM0457", "name": "Weesp", "now": "GM0363", "now_name": "Amsterdam", "since": "2022-03-24"}
    ]
    evidence = payload["candidates"][0]["evidence_for"][0]
    assert payload["candidates"][0]["region"] == "GM0363" and evidence["rule"] == "residence"


def test_growing_up_in_haren_counts_for_groningen():
    decision = resolve(request("GM0599", grew_up_in=["GM0017"]), SHIPPED)
    assert decision.handover_to == "GM0014"
    assert decision.candidate("GM0014").evidence_for[0].municipalities == ("GM0014",)
    assert "Haren" in decision.explanation.nl and "gemeente Groningen" in decision.explanation.nl


@pytest.mark.parametrize(("code", "name"), [("GM0140", "Littenseradiel"), ("GM0788", "Haaren")])
def test_a_divided_municipality_is_refused_naming_the_field(code, name):
    with pytest.raises(InvalidInput) as caught:
        resolve(request("GM0363", family_in=["GM0363", code]), SHIPPED)
    assert caught.value.field == "facts.family_in[1]"
    assert f"{code} ({name}) was divided between" in str(caught.value)


def test_mesh_region_resolve_exits_2_with_a_short_error_for_a_divided_municipality():
    document = {
        "asked_in": "GM0363",
        "service": "shelter",
        "decision_date": "2026-11-01",
        "facts": {"grew_up_in": ["GM0788"]},
    }
    out, err = io.StringIO(), io.StringIO()
    code = run_resolve(["-"], io.StringIO(json.dumps(document)), out, err)
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue() == (
        "error: facts.grew_up_in[0]: GM0788 (Haaren) was divided between Boxtel, Oisterwijk, Tilburg, Vught "
        "on 2021-01-01; give the current municipality instead\n"
    )


def test_an_event_with_a_divided_municipality_goes_to_the_dead_letter_topic_with_the_reason():
    from meshkernel import envelope as envelopes
    from meshkernel.config import MeshSettings
    from referralmesh.v1 import common_pb2, events_pb2
    from services.region.adapters.assigning import Assigner, load_agency_regions
    from services.region.decide import load_resolver

    config = MeshSettings()
    assigner = Assigner(load_resolver(config.region_policy_path), load_agency_regions(config.agency_directory_path))
    event = envelopes.new_envelope(
        case_id="case-split",
        producer="t",
        event_id="e1",
        referral=events_pb2.ReferralEvent(
            referral_id="ref-1",
            event_type="ReferralRequested",
            version=1,
            need_domains=["shelter"],
            asked_in="GM0363",
            facts=common_pb2.BindingFacts(grew_up_in=["GM0140"]),
        ),
    )
    with pytest.raises(Refused, match=r"resolver refused the facts: facts\.grew_up_in\[0\]: GM0140 \(Littenseradiel\)"):
        assigner.on_referral(event, {})


def _policy_with_membership(tmp_path, lines):
    membership = tmp_path / "mo-regions.csv"
    membership.write_text("".join(lines), encoding="utf-8")
    data = shipped_data()
    data["membership"] = str(membership)
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_service_refuses_to_start_on_region_data_missing_a_municipality(tmp_path):
    lines = [
        line
        for line in REGIONS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
        if not line.startswith("GM0193,")
    ]  # Zwolle, a central municipality
    with pytest.raises(PolicyError) as caught:
        load_policy(_policy_with_membership(tmp_path, lines))
    assert caught.value.where == "membership"
    assert "GM0193" in caught.value.problem


def test_the_service_refuses_region_data_with_an_abolished_code(tmp_path):
    lines = REGIONS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.append("GM0017,Haren,GM0014,Groningen,confirmed,https://example.org,\n")
    with pytest.raises(PolicyError, match=rf"mo-regions\.csv:{len(lines)}: GM0017 \(Haren\) was abolished"):
        load_policy(_policy_with_membership(tmp_path, lines))


def test_the_policy_must_name_every_region_of_the_data(tmp_path):
    data = shipped_data()
    data["regions"] = [r for r in data["regions"] if r["code"] != "GM0983"]
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"regions: the region of central municipality GM0983 \(Venlo\)"):
        load_policy(path)


def test_a_region_entry_may_not_list_municipalities_when_membership_is_shared(tmp_path):
    data = shipped_data()
    data["regions"][0]["municipalities"] = [{"code": "GM0014", "name": "Groningen"}]
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"regions\[0\]\.municipalities: unknown key"):
        load_policy(path)


MERGED = sorted(code for code, gone in SHIPPED.abolished.items() if not gone.split)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(MERGED), st.sampled_from(["grew_up_in", "family_in"])), min_size=1, max_size=4),
    st.sampled_from(CENTRALS),
)
def test_abolished_codes_decide_exactly_as_their_successors(named, asked_in):
    """Property: replacing every merged code by its successor changes nothing but the note."""
    old = {"grew_up_in": [], "family_in": []}
    new = {"grew_up_in": [], "family_in": []}
    for code, kind in named:
        old[kind].append(code)
        new[kind].append(SHIPPED.abolished[code].successors[0].code)
    with_old = resolve(request(asked_in, **old), SHIPPED)
    with_new = resolve(request(asked_in, **new), SHIPPED)
    assert with_old.region == with_new.region == asked_in
    assert (with_old.handover_to, with_old.rule, with_old.candidates) == (
        with_new.handover_to,
        with_new.rule,
        with_new.candidates,
    )
    assert {r.code for r in with_old.renamed} == {code for code, _ in named} and with_new.renamed == ()
