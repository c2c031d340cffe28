"""Two replicas of every service, one of each killed with SIGKILL mid-load and started again:
nothing lost, nothing duplicated (benchmarks/scaleout.py runs it and writes the figures)."""

from __future__ import annotations

import json

import pytest

from benchmarks import scaleout
from benchmarks.common import RESULTS_DIR

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(600)
def test_two_replicas_of_each_service_lose_and_duplicate_nothing_when_one_of_each_is_killed(capsys):
    logs = RESULTS_DIR / "scaleout-ci-logs"  # kept after a failure
    code = scaleout.main(
        ["--replicas", "2", "--partitions", "6", "--between", "8", "--results", "scaleout-ci", "--keep-logs", str(logs)]
    )
    figures = json.loads((RESULTS_DIR / "scaleout-ci.json").read_text())
    with capsys.disabled():  # the figures belong in the test run's output
        print(
            f"\nreferrals: {figures['referrals']}, kills: {figures['kills']}, "
            f"lost: {figures['lost']}, duplicated: {figures['duplicated']}"
        )

    assert figures["kills"] == 3 and figures["referrals"] > 0
    assert figures["duplicated"] == 0, figures["examples"]
    assert figures["stranded_outbox_rows"] == 0 and not any(figures["consumer_lag"].values())
    assert figures["abandoned"] == 0
    assert figures["lost"] == 0, figures["examples"]
    assert code == 0
