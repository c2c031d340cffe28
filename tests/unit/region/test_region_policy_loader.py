"""The loader accepts the shipped table and refuses every broken one, naming the place in the file."""

import pytest
import yaml

from services.region.domain import PolicyError, ResidenceRule, load_policy
from tests.unit.region.region_testkit import SHIPPED, SHIPPED_CONFIG, inline_data, region_index, shipped_data

REQUIRED_REGIONS = {
    "GM0363": {"GM0362", "GM0384"},  # Amsterdam with Amstelveen, Diemen
    "GM0599": {"GM0502"},  # Rotterdam with Capelle aan den IJssel
    "GM0518": {"GM0603"},  # Den Haag with Rijswijk
    "GM0344": {"GM0355"},  # Utrecht with Zeist
    "GM0014": set(),
    "GM0772": {"GM0861"},  # Eindhoven with Veldhoven
}


def test_shipped_table_covers_the_required_regions_with_members():
    assert SHIPPED.version == "2026.2"
    assert len(SHIPPED.regions) == 43
    for code, members in REQUIRED_REGIONS.items():
        region = SHIPPED.region(code)
        assert region is not None, code
        assert code in region.municipality_codes
        assert members <= region.municipality_codes
        assert len(region.municipalities) > 1 or code == "GM0014"


def test_shipped_amsterdam_exit_programme_demands_five_registered_years():
    exit_rules = SHIPPED.region("GM0363").services["exit_programme"]
    assert exit_rules.requires == (ResidenceRule(years=5, registered_only=True),)
    assert SHIPPED.region("GM0599").services["exit_programme"].requires == ()


def _set(data, path, value):
    *parents, last = path
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()
EXIT = ["regions", 2, "services"]


def _with_exit_rules(rules):
    def mutate(data):
        data["regions"][2]["services"] = {"exit_programme": {"rules": rules}}

    return mutate


def _append_member(at, code):
    def mutate(data):
        data["regions"][at]["municipalities"].append({"code": code, "name": "Somewhere"})

    return mutate


_AMSTERDAM = region_index(shipped_data(), "GM0363")

REFUSALS = [
    # (what is broken, mutation, place named, words in the message), on the table listed inline
    # (regions[0] is Groningen with 10 municipalities, regions[1] Almere with 6)
    (
        "municipality in two regions",
        _append_member(1, "GM0037"),
        "regions[1].municipalities[6].code",
        "already listed at regions[0].municipalities[1]",
    ),
    (
        "municipality twice in one region",
        _append_member(0, "GM0014"),
        "regions[0].municipalities[10].code",
        "already listed at regions[0].municipalities[0]",
    ),
    (
        "malformed municipality code",
        lambda d: _set(d, ["regions", 3, "municipalities", 1, "code"], "GM312"),
        "regions[3].municipalities[1].code",
        "not a CBS municipality code",
    ),
    (
        "lower-case code",
        lambda d: _set(d, ["regions", 3, "municipalities", 1, "code"], "gm0312"),
        "regions[3].municipalities[1].code",
        "not a CBS municipality code",
    ),
    (
        "unknown central municipality",
        lambda d: _set(d, ["regions", 2, "code"], "GM9999"),
        "regions[2].code",
        "unknown municipality GM9999",
    ),
    (
        "unknown rule kind",
        _with_exit_rules([{"kind": "vibes"}]),
        "regions[2].services.exit_programme.rules[0].kind",
        "unknown rule kind 'vibes'",
    ),
    (
        "rule without kind",
        _with_exit_rules([{"years": 2}]),
        "regions[2].services.exit_programme.rules[0].kind",
        "is required",
    ),
    (
        "zero years",
        _with_exit_rules([{"kind": "residence", "years": 0}]),
        "regions[2].services.exit_programme.rules[0].years",
        "whole number of 1 or more",
    ),
    (
        "years as text",
        _with_exit_rules([{"kind": "residence", "years": "two"}]),
        "regions[2].services.exit_programme.rules[0].years",
        "whole number",
    ),
    (
        "fractional months",
        _with_exit_rules([{"kind": "work", "months": 1.5}]),
        "regions[2].services.exit_programme.rules[0].months",
        "whole number",
    ),
    (
        "missing years",
        _with_exit_rules([{"kind": "residence"}]),
        "regions[2].services.exit_programme.rules[0].years",
        "is required",
    ),
    (
        "window shorter than period",
        _with_exit_rules([{"kind": "residence", "years": 5, "within_years": 3}]),
        "regions[2].services.exit_programme.rules[0].within_years",
        "shorter than the period",
    ),
    (
        "misspelt parameter",
        _with_exit_rules([{"kind": "residence", "years": 2, "yeras": 3}]),
        "regions[2].services.exit_programme.rules[0].yeras",
        "unknown key",
    ),
    (
        "parameter on a kind without parameters",
        _with_exit_rules([{"kind": "grew_up", "years": 3}]),
        "regions[2].services.exit_programme.rules[0].years",
        "unknown key",
    ),
    (
        "registered_only not a boolean",
        _with_exit_rules([{"kind": "residence", "years": 2, "registered_only": "sometimes"}]),
        "regions[2].services.exit_programme.rules[0].registered_only",
        "true or false",
    ),
    ("empty rules", _with_exit_rules([]), "regions[2].services.exit_programme.rules", "at least one rule"),
    (
        "weight in a requirement",
        lambda d: _set(d, ["regions", _AMSTERDAM, "services", "exit_programme", "requires", 0, "weight"], 3),
        f"regions[{_AMSTERDAM}].services.exit_programme.requires[0].weight",
        "unknown key",
    ),
    (
        "unknown service in region",
        lambda d: _set(d, ["regions", 1, "services"], {"massage": {"rules": [{"kind": "family"}]}}),
        "regions[1].services.massage",
        "unknown service kind",
    ),
    (
        "unknown service in defaults",
        lambda d: _set(d, ["defaults", "services", "karaoke"], {"rules": [{"kind": "family"}]}),
        "defaults.services.karaoke",
        "unknown service kind",
    ),
    (
        "bad default rule",
        lambda d: _set(d, ["defaults", "services", "shelter", "rules"], [{"kind": "work", "months": -1}]),
        "defaults.services.shelter.rules[0].months",
        "whole number",
    ),
    ("ranking misses a kind", lambda d: _set(d, ["ranking", "work"], _DELETE), "ranking.work", "is required"),
    ("ranking has unknown kind", lambda d: _set(d, ["ranking", "charm"], 9), "ranking.charm", "unknown key"),
    ("ranking weight not positive", lambda d: _set(d, ["ranking", "family"], 0), "ranking.family", "whole number"),
    ("no version", lambda d: _set(d, ["version"], _DELETE), "version", "is required"),
    ("empty version", lambda d: _set(d, ["version"], ""), "version", "non-empty"),
    ("unknown top-level key", lambda d: _set(d, ["regoins"], []), "regoins", "unknown key"),
    ("region without name", lambda d: _set(d, ["regions", 4, "name"], _DELETE), "regions[4].name", "is required"),
    ("no regions", lambda d: _set(d, ["regions"], []), "regions", "non-empty list"),
]


@pytest.mark.parametrize(("mutate", "where", "words"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_loader_refuses_and_names_the_place(tmp_path, mutate, where, words):
    data = inline_data()
    mutate(data)
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.where == where
    assert words in caught.value.problem
    assert str(caught.value).startswith(f"{path}: {where}: ")


def test_loader_refuses_duplicate_keys_that_yaml_would_silently_merge(tmp_path):
    text = SHIPPED_CONFIG.read_text(encoding="utf-8").replace(
        "    exit_programme:\n      rules: *standard_ties\n",
        "    exit_programme:\n      rules: *standard_ties\n    exit_programme:\n      rules: *standard_ties\n",
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError, match=r"line \d+: key 'exit_programme' appears twice"):
        load_policy(path)


def test_loader_reports_yaml_syntax_errors_with_a_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nranking: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"line \d+: not valid YAML"):
        load_policy(path)


def test_loader_reports_a_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")


def test_region_override_keeps_default_rules_when_only_requires_is_given():
    amsterdam = SHIPPED.region("GM0363").services["exit_programme"]
    assert amsterdam.rules == SHIPPED.region("GM0599").services["exit_programme"].rules


@pytest.mark.parametrize("membership", ["regions\x00.csv", "."], ids=["NUL in the name", "a directory"])
def test_loader_refuses_a_membership_file_the_file_system_cannot_give(tmp_path, membership):
    # Found by `make fuzz`: a NUL character reached os.path as a bare ValueError.
    data = shipped_data()
    data["membership"] = membership
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.where == "membership"
