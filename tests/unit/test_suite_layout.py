"""Any selection of test folders runs together: every folder is a package and helpers are
imported by their full name, so two folders' `conftest` or helper modules never clash."""

from __future__ import annotations

import re

from meshkernel.config import PROJECT_ROOT

TESTS = PROJECT_ROOT / "tests"
BARE_HELPER_IMPORT = re.compile(r"^\s*(from|import)\s+(conftest|test_\w+|\w+_kit|\w+kit)\b", re.MULTILINE)


def test_every_test_folder_is_a_package():
    folders = [
        path for path in TESTS.rglob("*") if path.is_dir() and path.name != "__pycache__" and any(path.glob("*.py"))
    ]
    assert folders
    assert [str(folder) for folder in folders if not (folder / "__init__.py").exists()] == []


def test_helpers_are_imported_by_their_package_qualified_name():
    offenders = [
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if BARE_HELPER_IMPORT.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
