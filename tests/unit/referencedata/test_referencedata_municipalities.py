"""The CBS municipality list and the mergers since 2018: names for people, successors, splits,
and loader refusals naming the file and line."""

from __future__ import annotations

import pytest

from referencedata.errors import ReferenceDataError
from referencedata.municipalities import (
    CHANGES_PATH,
    MUNICIPALITIES_PATH,
    SplitMunicipality,
    UnknownMunicipality,
    display_name,
    load_register,
)

REGISTER = load_register()


def test_the_shipped_list_holds_the_342_municipalities_of_2026():
    assert len(REGISTER) == 342
    assert REGISTER.get("GM0363").name == "Amsterdam"
    assert "GM0457" not in REGISTER  # Weesp: merged into Amsterdam in 2022


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("GM0014", "Groningen"),
        ("GM0344", "Utrecht"),
        ("GM0518", "'s-Gravenhage"),
        ("GM0164", "Hengelo"),
        ("GM0603", "Rijswijk"),
        ("GM0373", "Bergen (NH.)"),
        ("GM0893", "Bergen (L.)"),
    ],
)
def test_display_names_drop_cbs_suffixes_but_keep_namesakes_apart(code, name):
    assert REGISTER.get(code).name == name


def test_display_names_are_unique():
    names = [m.name for m in REGISTER]
    assert len(set(names)) == len(names)
    assert display_name("Laren (NH.)", ["Laren (NH.)"]) == "Laren"


@pytest.mark.parametrize(
    ("abolished", "now"),
    [
        ("GM0457", "GM0363"),  # Weesp -> Amsterdam (24 March 2022)
        ("GM0017", "GM0014"),  # Haren -> Groningen (2019)
        ("GM0370", "GM0439"),  # Beemster -> Purmerend (2022)
        ("GM0010", "GM1979"),  # Delfzijl -> Eemsdelta (2021)
        ("GM0614", "GM1992"),  # Westvoorne -> Voorne aan Zee (2023)
    ],
)
def test_an_abolished_code_stands_for_its_successor(abolished, now):
    assert REGISTER.current_for(abolished).code == now
    assert REGISTER.current_for(now).code == now


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("GM0140", "Littenseradiel was divided between Leeuwarden, Súdwest-Fryslân, Waadhoeke on 2018-01-01"),
        ("GM0788", "Haaren was divided between Boxtel, Oisterwijk, Tilburg, Vught on 2021-01-01"),
        ("GM0053", "Winsum was divided between Het Hogeland, Westerkwartier"),
    ],
)
def test_a_divided_municipality_is_refused_asking_for_the_current_one(code, words):
    with pytest.raises(SplitMunicipality) as caught:
        REGISTER.current_for(code)
    assert words in str(caught.value) and "give the current municipality" in str(caught.value)
    assert caught.value.place == code


def test_an_unknown_code_is_refused():
    with pytest.raises(UnknownMunicipality, match="GM9999"):
        REGISTER.current_for("GM9999")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "code,name\nGM0363,Amsterdam\nGM0363,Amsterdam\n",
            "municipalities.csv:3: GM0363 is listed twice (first on line 2)",
        ),
        ("code,name\nGM363,Amsterdam\n", "municipalities.csv:2: 'GM363' is not a CBS municipality code"),
        ("gemeente,naam\nGM0363,Amsterdam\n", "municipalities.csv:1: expected the columns code,name"),
        ("code,name\nGM0363,\n", "municipalities.csv:2: GM0363 has no name"),
    ],
)
def test_the_municipality_list_is_refused_naming_the_line(tmp_path, text, words):
    with pytest.raises(ReferenceDataError) as caught:
        load_register(_write(tmp_path, "municipalities.csv", text), CHANGES_PATH)
    assert str(caught.value).startswith(words)


def test_a_change_abolishing_a_current_municipality_is_refused(tmp_path):
    changes = CHANGES_PATH.read_text(encoding="utf-8") + "2026-01-01,GM0363,Amsterdam,GM0362,Amstelveen,added,\n"
    with pytest.raises(ReferenceDataError, match=r"changes\.csv:71: GM0363 is abolished here but is also a current"):
        load_register(MUNICIPALITIES_PATH, _write(tmp_path, "changes.csv", changes))
