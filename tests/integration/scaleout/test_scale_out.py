"""Two replicas of every service, one of each killed with SIGKILL mid-load and started again:
nothing lost, nothing duplicated (benchmarks/scaleout.py runs it and writes the figures)."""

from __future__ import annotations

import json

import pytest

from benchmarks import scaleout
from benchmarks.common import RESULTS_DIR

pytestmark = pytest.mark.kafka

# What the open record-before-publish problem can lose (services/notify/README.md).
RECORD_BEFORE_PUBLISH_LOSSES = {
    "assignment",
    "notification referral_assigned",
    "notification responsible_region_named",
    "notification client_bound_nowhere",
    "notification referral_reminder",
    "delivery record referral_assigned",
    "delivery record responsible_region_named",
    "delivery record client_bound_nowhere",
    "delivery record referral_reminder",
    "escalation not_acknowledged/AGENCY_REMINDER",
    "escalation not_answered/REGION_COORDINATOR",
}


@pytest.mark.timeout(600)
def test_two_replicas_of_each_service_lose_and_duplicate_nothing_when_one_of_each_is_killed(capsys):
    code = scaleout.main(["--replicas", "2", "--partitions", "6", "--between", "8", "--results", "scaleout-ci"])
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
    if figures["lost"] and set(figures["lost_by_kind"]) <= RECORD_BEFORE_PUBLISH_LOSSES:
        # Known and open (issue 14, the chaos test has the same guard): a notify or region
        # worker killed between recording what it sent and Faust publishing it loses that
        # record. Any other loss fails the test.
        pytest.xfail(f"{figures['lost']} lost under kills (open record-before-publish bug): {figures['examples']}")
    assert figures["lost"] == 0, figures["examples"]
    assert code == 0
