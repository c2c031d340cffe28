"""`mesh region resolve`: output keys, exit codes, and one-line errors that name the field."""

import copy
import io
import json

import pytest
import yaml

from services.region.cli import run_resolve
from tests.unit.region.region_testkit import EXAMPLE_INPUT, shipped_data


def run(argv, stdin_text=""):
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run_resolve(argv, io.StringIO(stdin_text), stdout, stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def run_json(data, *extra):
    return run(["-", *extra], json.dumps(data))


def test_example_from_a_file_prints_the_documented_keys(tmp_path):
    path = tmp_path / "case.json"
    path.write_text(json.dumps(EXAMPLE_INPUT), encoding="utf-8")
    code, out, err = run([str(path)])
    assert (code, err) == (0, "")
    decision = json.loads(out)
    for key in (
        "region",
        "handover_to",
        "rule",
        "bound_nowhere",
        "candidates",
        "explanation",
        "no_programme_accepts",
        "tie_broken",
        "policy_version",
    ):
        assert key in decision
    assert decision["region"] == "GM0363" and decision["handover_to"] == "GM0014"
    assert decision["rule"] == "handover_to_better_bound_region"
    assert decision["bound_nowhere"] is False and decision["tie_broken"] is None
    assert set(decision["explanation"]) == {"nl", "en", "es", "pl", "ro"}
    first = decision["candidates"][0]
    assert first["region"] == "GM0014" and first["qualifies"] is True and first["rank"] == 1
    assert {"evidence_for", "evidence_against", "score"} <= set(first)
    assert first["evidence_for"][0]["rule"] == "residence"
    assert out.startswith('{\n  "region"')  # indent 2


def test_stdin_gives_the_same_output_and_keeps_non_ascii_text():
    code, out, _ = run_json(EXAMPLE_INPUT)
    assert code == 0
    assert "Regiunea" in out and "ă" in out  # ensure_ascii=False


def test_custom_config(tmp_path):
    data = shipped_data()
    data["version"] = "custom-7"
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, _ = run_json(EXAMPLE_INPUT, "--config", str(path))
    assert code == 0 and json.loads(out)["policy_version"] == "custom-7"


def _with(path, value):
    data = copy.deepcopy(EXAMPLE_INPUT)
    *parents, last = path
    node = data
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()

INVALID = [
    # (case, input, expected start of the single error line)
    (
        "unknown municipality code",
        _with(["facts", "residence", 0, "municipality"], "GM9999"),
        "error: facts.residence[0].municipality: unknown municipality code GM9999",
    ),
    (
        "asked_in in a divided municipality",
        _with(["asked_in"], "GM0788"),
        "error: asked_in: GM0788 (Haaren) was divided between Boxtel, Oisterwijk, Tilburg, Vught on 2021-01-01; give the current municipality instead",
    ),
    (
        "fact in a divided municipality",
        _with(["facts", "grew_up_in"], ["GM0140"]),
        "error: facts.grew_up_in[0]: GM0140 (Littenseradiel) was divided between",
    ),
    (
        "malformed municipality code",
        _with(["facts", "grew_up_in"], ["Rotterdam"]),
        "error: facts.grew_up_in[0]: is not a CBS municipality code",
    ),
    (
        "period ending before it starts",
        _with(["facts", "residence", 0, "to"], "2014-12-31"),
        "error: facts.residence[0].to: period ends before it starts",
    ),
    (
        "start in the future",
        _with(["facts", "work", 0, "from"], "2026-11-02"),
        "error: facts.work[0].from: is in the future",
    ),
    (
        "end in the future",
        _with(["facts", "residence", 0, "to"], "2027-01-01"),
        "error: facts.residence[0].to: is in the future",
    ),
    ("empty asked_in", _with(["asked_in"], ""), "error: asked_in: must not be empty"),
    ("blank service", _with(["service"], "  "), "error: service: must not be empty"),
    ("empty family code", _with(["facts", "family_in"], [""]), "error: facts.family_in[0]: must not be empty"),
    ("empty date", _with(["decision_date"], ""), "error: decision_date: must not be empty"),
    ("missing service", _with(["service"], _DELETE), "error: service: is required"),
    ("missing decision date", _with(["decision_date"], _DELETE), "error: decision_date: is required"),
    ("missing facts", _with(["facts"], _DELETE), "error: facts: is required"),
    (
        "missing registered",
        _with(["facts", "residence", 0, "registered"], _DELETE),
        "error: facts.residence[0].registered: is required",
    ),
    ("missing to", _with(["facts", "work", 0, "to"], _DELETE), "error: facts.work[0].to: is required"),
    (
        "registered as text",
        _with(["facts", "residence", 0, "registered"], "yes"),
        "error: facts.residence[0].registered: must be true or false",
    ),
    (
        "not a date",
        _with(["decision_date"], "1 November 2026"),
        "error: decision_date: is not a date in the form yyyy-mm-dd",
    ),
    (
        "impossible date",
        _with(["facts", "residence", 0, "from"], "2015-02-30"),
        "error: facts.residence[0].from: is not an existing date",
    ),
    ("unknown service", _with(["service"], "massage"), "error: service: unknown service"),
    (
        "misspelt field",
        _with(["facts", "residence", 0, "regsitered"], True),
        "error: facts.residence[0].regsitered: unknown field",
    ),
    (
        "current region not central",
        _with(["current_region"], "GM0606"),
        "error: current_region: GM0606 is not a region code",
    ),
    ("facts not a list", _with(["facts", "work"], {"municipality": "GM0363"}), "error: facts.work: must be a list"),
    ("input not an object", [EXAMPLE_INPUT], "error: input: must be a JSON object"),
]


@pytest.mark.parametrize(("data", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_input_exits_2_with_one_line_naming_the_field(data, expected):
    code, out, err = run_json(data)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith(expected), err


@pytest.mark.parametrize("typed", ["Maria Jansen", "0612345678", "Damstraat 1"])
def test_malformed_input_is_never_repeated_back(typed):
    """Errors end up in logs and dead letters; whatever a person typed must not travel with them."""
    for path in (["facts", "grew_up_in"], ["decision_date"], ["service"], ["facts", "residence", 0, "from"]):
        value = [typed] if path == ["facts", "grew_up_in"] else typed
        code, _out, err = run_json(_with(path, value))
        assert code == 2 and typed not in err, err


def test_broken_json_exits_2():
    code, out, err = run(["-"], '{"asked_in": ')
    assert code == 2 and out == "" and err.startswith("error: input: not valid JSON (line 1")


def test_missing_input_file_exits_2(tmp_path):
    code, _, err = run([str(tmp_path / "missing.json")])
    assert code == 2 and err.startswith("error: ") and "cannot read" in err and err.count("\n") == 1


def test_missing_argument_exits_2_without_touching_sys_streams():
    code, out, err = run([])
    assert code == 2 and out == "" and err.startswith("error: ")


def test_broken_config_exits_1_naming_the_place(tmp_path):
    data = shipped_data()
    data["regions"][1]["code"] = "GM0362"  # Amstelveen: a municipality, but no central one
    path = tmp_path / "regions.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    code, out, err = run_json(EXAMPLE_INPUT, "--config", str(path))
    assert code == 1 and out == ""
    assert "regions[1].code: GM0362 is not a central municipality" in err and err.count("\n") == 1


def test_help_goes_to_stdout():
    code, out, err = run(["--help"])
    assert code == 0 and "mesh region resolve" in out and err == ""
