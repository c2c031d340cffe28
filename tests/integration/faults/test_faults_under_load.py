"""`make chaos` and `make fuzz` at CI size: each on a private broker (chaos also on a private
PostgreSQL), asserting the figures they write: nothing lost or duplicated, no crash."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import chaos, fuzz
from benchmarks.common import RESULTS_DIR

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(900)
def test_chaos_kills_and_stops_lose_and_duplicate_nothing():
    code = chaos.main(["--between", "8", "--rate", "2", "--results", "chaos-ci"])
    figures = json.loads((RESULTS_DIR / "chaos-ci.json").read_text())

    assert figures["duplicated"] == 0, figures["examples"]
    assert figures["faults"] == 6 and figures["referrals"] > 0
    assert figures["stranded_outbox_rows"] == 0 and not any(figures["consumer_lag"].values())
    assert None not in figures["recovered_in_s"].values()
    assert figures["lost"] == 0, figures["examples"]
    assert code == 0


@pytest.mark.timeout(900)
def test_fuzz_finds_no_crash_and_dead_letters_every_malformed_record():
    records = os.environ.get("FUZZ_CI_RECORDS", "2000")
    code = fuzz.main(["--examples", "100", "--grpc-examples", "15", "--records", records, "--results", "fuzz-ci"])
    figures = json.loads((RESULTS_DIR / "fuzz-ci.json").read_text())

    assert figures["crashes"] == 0, (figures["parser_crashes"], figures["grpc_crashes"], figures["services_stopped"])
    assert figures["flood_missing"] == 0 and figures["flood_without_reason"] == 0
    assert figures["dead_lettered"] == 5 * int(records)
    assert code == 0
