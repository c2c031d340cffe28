"""The 43 shelter (MO/BW) regions: every current municipality in exactly one, sources kept per
row, and the loader's refusals naming the code and the line."""

from __future__ import annotations

import pytest

from referencedata.errors import ReferenceDataError
from referencedata.municipalities import load_register
from referencedata.regions import REGIONS_PATH, load_region_data, write_region_data

REGISTER = load_register()
DATA = load_region_data(register=REGISTER)
CENTRAL = {  # the 43 central municipalities named in the issue (Roosendaal is not one)
    "Alkmaar",
    "Almelo",
    "Almere",
    "Amersfoort",
    "Amsterdam",
    "Apeldoorn",
    "Arnhem",
    "Assen",
    "Bergen op Zoom",
    "Breda",
    "Delft",
    "'s-Gravenhage",
    "Den Helder",
    "Deventer",
    "Doetinchem",
    "Dordrecht",
    "Ede",
    "Eindhoven",
    "Emmen",
    "Enschede",
    "Gouda",
    "Groningen",
    "Haarlem",
    "Heerlen",
    "Helmond",
    "'s-Hertogenbosch",
    "Hilversum",
    "Hoorn",
    "Leeuwarden",
    "Leiden",
    "Maastricht",
    "Nijmegen",
    "Nissewaard",
    "Oss",
    "Purmerend",
    "Rotterdam",
    "Tilburg",
    "Utrecht",
    "Venlo",
    "Vlaardingen",
    "Vlissingen",
    "Zaanstad",
    "Zwolle",
}


def test_every_current_municipality_is_in_exactly_one_of_the_43_regions():
    assert {REGISTER.get(c).name for c in DATA.central_codes} == CENTRAL
    members = [m.code for c in DATA.central_codes for m in DATA.members(c)]
    assert sorted(members) == sorted(REGISTER.current)
    for central in DATA.central_codes:
        assert central in {m.code for m in DATA.members(central)}


@pytest.mark.parametrize("central", ["GM0479", "GM0439", "GM0503", "GM0622", "GM0513", "GM1930"])
def test_central_municipalities_once_listed_elsewhere_have_their_own_region(central):
    # Zaanstad, Purmerend, Delft, Vlaardingen, Gouda, Nissewaard used to sit in the Amsterdam,
    # Rotterdam and Den Haag regions.
    assert DATA.membership(central).central_code == central
    assert len(DATA.members(central)) >= 3


def test_roosendaal_is_served_by_bergen_op_zoom():
    assert DATA.membership("GM1674").central_code == "GM0748"


def test_every_row_keeps_its_confidence_and_source():
    assert {row.confidence for row in DATA.rows} == {"confirmed", "best-available"}
    assert all(row.source.startswith("http") for row in DATA.rows)
    uncertain = [row for row in DATA.rows if row.confidence == "best-available"]
    assert uncertain and all(row.note for row in uncertain)


def test_writing_the_rows_back_gives_the_same_file(tmp_path):
    path = tmp_path / "regions.csv"
    write_region_data(path, DATA.rows)
    assert path.read_text(encoding="utf-8") == REGIONS_PATH.read_text(encoding="utf-8")


def _lines():
    return REGIONS_PATH.read_text(encoding="utf-8").splitlines(keepends=True)


def _refusal(tmp_path, lines) -> str:
    path = tmp_path / "mo-regions.csv"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ReferenceDataError) as caught:
        load_region_data(path, REGISTER)
    return str(caught.value)


def test_a_missing_municipality_is_refused_naming_the_code(tmp_path):
    lines = [line for line in _lines() if not line.startswith("GM0050,")]  # Zeewolde
    assert _refusal(tmp_path, lines) == (
        "mo-regions.csv: GM0050 (Zeewolde) is missing; every current municipality of "
        "municipalities-2026.csv must be in exactly one region"
    )


def test_a_municipality_listed_twice_is_refused_naming_both_lines(tmp_path):
    lines = _lines()
    zeewolde = next(i for i, line in enumerate(lines) if line.startswith("GM0050,"))
    lines.append(lines[zeewolde].replace("GM0034,Almere", "GM0193,Zwolle"))
    message = _refusal(tmp_path, lines)
    assert message.startswith(f"mo-regions.csv:{len(lines)}: GM0050 is listed twice (first on line {zeewolde + 1})")


def test_an_abolished_code_in_a_region_is_refused_naming_code_line_and_successor(tmp_path):
    lines = _lines() + ["GM0457,Weesp,GM0363,Amsterdam,confirmed,https://example.org,\n"]
    message = _refusal(tmp_path, lines)
    assert message.startswith(
        f"mo-regions.csv:{len(lines)}: GM0457 (Weesp) was abolished on 2022-03-24 (now Amsterdam GM0363)"
    )


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (",GM0034,Almere,confirmed,", ",GM0034,Almere,likely,", "confidence 'likely' is not one of"),
        (
            "GM0034,Almere,GM0034,Almere,confirmed,https://lelystad",
            "GM0034,Almere,GM0193,Zwolle,confirmed,https://lelystad",
            "central municipality GM0034 of GM0050 is not in its own region (line 3 puts it under GM0193)",
        ),
        ("GM0050,Zeewolde,GM0034", "GM9999,Zeewolde,GM0034", "mo-regions.csv:6: GM9999 is not a current municipality"),
    ],
)
def test_inconsistent_rows_are_refused_naming_the_line(tmp_path, old, new, words):
    text = "".join(_lines())
    assert old in text
    assert words in _refusal(tmp_path, [text.replace(old, new, 1)])
