"""buf breaking guards the released contract: a copy of proto/ with a wire-incompatible change
is refused, an unchanged copy passes. Runs the pinned buf that `make lint` builds."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RELEASED_IMAGE = REPO / "proto" / "contracts-v1.binpb"
ENVELOPE = Path("proto/referralmesh/v1/events.proto")


def _buf() -> Path:
    built = sorted(REPO.glob(".cache/tools/buf-*/node_modules/.bin/buf"))
    if not built:
        pytest.skip("buf is not built yet; `make lint` builds it")
    return built[-1]


@pytest.fixture
def contract_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "proto", tmp_path / "proto")
    shutil.copy(REPO / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def _breaking(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_buf()), "breaking", "proto", "--against", str(RELEASED_IMAGE)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _edit(folder: Path, old: str, new: str) -> None:
    path = folder / ENVELOPE
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_unchanged_contract_passes(contract_copy: Path) -> None:
    result = _breaking(contract_copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_changed_tag_number_is_refused(contract_copy: Path) -> None:
    _edit(contract_copy, "  string case_id = 2;", "  string case_id = 99;")
    result = _breaking(contract_copy)
    assert result.returncode != 0
    assert "case_id" in result.stdout + result.stderr


def test_renamed_field_is_refused(contract_copy: Path) -> None:
    _edit(contract_copy, "  string case_id = 2;", "  string case_ref = 2;")
    result = _breaking(contract_copy)
    assert result.returncode != 0


def test_new_field_with_a_new_tag_passes(contract_copy: Path) -> None:
    _edit(contract_copy, "  TraceContext trace = 6;", "  TraceContext trace = 6;\n  string region_hint = 7;")
    result = _breaking(contract_copy)
    assert result.returncode == 0, result.stdout + result.stderr
