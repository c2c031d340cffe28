"""`mesh region data import`: a CBS "Gebieden in Nederland" CSV (semicolon-separated, quoted,
padded, as CBS publishes it) refreshes the region data file and reports what changed."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from meshcli.main import main
from referencedata.municipalities import load_register
from referencedata.regions import REGIONS_PATH, load_region_data
from services.region.data_cli import run_data_command

SAMPLE = Path(__file__).resolve().parent / "fixtures" / "cbs-gebieden-in-nederland-sample.csv"
TODAY = date(2026, 11, 30)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_data_command(list(argv), out, err, today=TODAY)
    return code, out.getvalue(), err.getvalue()


def test_import_writes_the_region_data_and_reports_what_changed(tmp_path):
    target = tmp_path / "mo-regions.csv"
    code, out, err = run("import", str(SAMPLE), "--central-column", "Centrumgemeente_6", "--output", str(target))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "5 municipalities read; 1 moved to another region, 2 confirmed (were best-available), 2 unchanged, "
        "337 not in the file (kept as they were)",
        "moved: GM0050 Zeewolde: region GM0034 Almere -> region GM0193 Zwolle",
        "confirmed: GM0163 Hellendoorn",
        "confirmed: GM0888 Beek",
        f"written to {target}",
    ]
    data = load_region_data(target, load_register())
    zeewolde = data.membership("GM0050")
    assert (zeewolde.central_code, zeewolde.confidence) == ("GM0193", "confirmed")
    assert zeewolde.source == "CBS Gebieden in Nederland, cbs-gebieden-in-nederland-sample.csv, imported 2026-11-30"
    assert "moved from GM0034" in zeewolde.note
    assert data.membership("GM0163").confidence == "confirmed"  # central given by name
    assert data.membership("GM0363") == load_region_data().membership("GM0363")  # unchanged row kept as is


def test_dry_run_writes_nothing(tmp_path):
    target = tmp_path / "mo-regions.csv"
    code, out, _ = run(
        "import", str(SAMPLE), "--central-column", "Centrumgemeente_6", "--output", str(target), "--dry-run"
    )
    assert code == 0 and out.endswith("dry run: nothing written\n") and not target.exists()


def _sample_with(tmp_path, old: str, new: str) -> Path:
    path = tmp_path / "cbs.csv"
    text = SAMPLE.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "exit", "message"),
    [
        ('"Centrumgemeente_6"', '"Centrum"', 2, "error: cbs.csv:1: no column 'Centrumgemeente_6'; columns: ID, RegioS"),
        (
            '"GM0050    ";"GM0050    "',
            '"GM0457    ";"GM0457    "',
            2,
            "error: cbs.csv:2: GM0457 is not a current municipality of municipalities-2026.csv; update the municipality list first",
        ),
        (
            '"Almelo    "',
            '"Almeloo"',
            2,
            "error: cbs.csv:3: Centrumgemeente_6 'Almeloo' of GM0163 is not a current municipality",
        ),
        # Almelo itself under Enschede would leave Hellendoorn's central municipality outside its own region.
        ('"GM0141    "\n', '"GM0153    "\n', 1, "error: the result would not load, nothing written: mo-regions.csv:"),
    ],
)
def test_import_refuses_and_writes_nothing(tmp_path, old, new, exit, message):
    target = tmp_path / "mo-regions.csv"
    code, out, err = run(
        "import",
        str(_sample_with(tmp_path, old, new)),
        "--central-column",
        "Centrumgemeente_6",
        "--output",
        str(target),
    )
    assert code == exit and out == "" and not target.exists()
    assert err.startswith(message) and err.count("\n") == 1


def test_import_without_the_central_column_option_is_a_usage_error():
    code, _, err = run("import", str(SAMPLE))
    assert code == 2 and "--central-column" in err


def test_the_mesh_command_runs_the_import(tmp_path, capsys):
    target = tmp_path / "out.csv"
    assert (
        main(
            [
                "region",
                "data",
                "import",
                str(SAMPLE),
                "--central-column",
                "Centrumgemeente_6",
                "--output",
                str(target),
                "--dry-run",
            ]
        )
        == 0
    )
    assert "1 moved to another region" in capsys.readouterr().out
    assert REGIONS_PATH.exists() and not target.exists()
