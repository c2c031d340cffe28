"""`make chaos` and `make fuzz` at CI size: each on a private broker (chaos also on a private
PostgreSQL), asserting the figures they write: nothing lost or duplicated, no crash."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import chaos, fuzz
from benchmarks.common import RESULTS_DIR

pytestmark = pytest.mark.kafka

# Open (see tests/integration/scaleout/test_scale_out.py): seen once after a region worker's
# SIGKILL with the re-send of recorded assignments in place, one referral's event consumed
# (lag 0) yet no assignment, and so none of its escalations. Only exactly these kinds pass as an
# expected failure, naming the bug; any other loss, any duplicate, a stranded outbox row, lag or
# a fault that never recovers fails. `make chaos` itself exits 1 on any loss.
REGION_KILL_LOSSES = {
    "assignment",
    "escalation not_acknowledged/AGENCY_REMINDER",
    "escalation not_answered/REGION_COORDINATOR",
}


@pytest.mark.timeout(900)
def test_chaos_kills_and_stops_lose_and_duplicate_nothing():
    code = chaos.main(["--between", "8", "--rate", "2", "--results", "chaos-ci"])
    figures = json.loads((RESULTS_DIR / "chaos-ci.json").read_text())

    assert figures["duplicated"] == 0, figures["examples"]
    assert figures["faults"] == 6 and figures["referrals"] > 0
    assert figures["stranded_outbox_rows"] == 0 and not any(figures["consumer_lag"].values())
    assert None not in figures["recovered_in_s"].values()
    if figures["lost"] and set(figures["lost_by_kind"]) <= REGION_KILL_LOSSES:
        pytest.xfail(f"{figures['lost']} lost after a region worker was killed (open): {figures['examples']}")
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
