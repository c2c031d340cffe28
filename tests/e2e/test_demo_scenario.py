"""The `make run` scenario, played against a private mesh: every step must happen."""

from __future__ import annotations

import pytest

from meshcli import demo
from meshcli.supervisor import Stack
from meshkernel.kafka import prepare_kafka
from tests.conftest import settings_from

pytestmark = pytest.mark.kafka


def test_the_demo_scenario_runs_from_referral_to_a_coordinator_taking_the_stalled_case(isolated_env, tmp_path, capsys):
    env = dict(isolated_env, MESH_ESCALATION_POLICY_PATH=str(demo.DEMO_ESCALATION_POLICY))
    config = settings_from(env)
    prepare_kafka(config, "demo-test", give_up_after=60)
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    for service in ("referral", "region", "notify"):
        stack.start(service)
    try:
        demo._play(config, demo.Narrator(), stack, tracing_url=None)  # raises if a step never comes
    finally:
        stack.stop_all()
    shown = capsys.readouterr().out
    for step in (
        "CreateReferral to shelter-utrecht",
        "region service names GM0518 responsible (rule bound_nowhere",
        "client message (es, sms to ***01)",
        "escalates to AGENCY_REMINDER",
        "escalates to REGION_COORDINATOR",
        "coordinator coord-gm0518 took the alert",
        "coordinator case view: http://127.0.0.1:",
        "insight page (charts per region): http://127.0.0.1:",
    ):
        assert step in shown, f"the demo did not show: {step}"
    assert demo.DEMO_PHONE not in shown  # the client's number is shown masked only
