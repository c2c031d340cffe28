"""Stall detection in a real region worker on the real broker, with deadlines of seconds.

A private worker (own topics, state and ports) runs with a copy of the shipped escalation policy
whose deadlines are a few seconds (MESH_ESCALATION_POLICY_PATH). Referral events and alert
actions are produced straight onto its input topics; escalations are read from its output topic.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml
from kafka import KafkaConsumer

from meshcli.supervisor import Stack, private_mesh_env
from meshkernel import envelope as envelopes
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import ESCALATIONS, OVERRIDES
from referralmesh.v1 import common_pb2, events_pb2
from services.region.domain.escalation import DEFAULT_POLICY_PATH, load_escalation_policy
from tests.conftest import settings_from
from tests.integration.region.region_stream_kit import Mesh, new_case, wait_for_health

pytestmark = pytest.mark.kafka

NOT_ACKNOWLEDGED_S, NOT_ANSWERED_S, CLIMB_S = 2, 5, 3
LEVEL = events_pb2.EscalationLevel.Name


def short_policy(path: Path) -> Path:
    """The shipped policy with deadlines of seconds, counted around the clock."""
    data = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    rules = data["rules"]
    rules["not_acknowledged"].update(after=f"{NOT_ACKNOWLEDGED_S}s", working_hours=False)
    rules["not_answered"].update(after=f"{NOT_ANSWERED_S}s", working_hours=False)
    for name in ("no_next_receiver", "not_started", "unresolved"):
        rules[name].update(after="1h", working_hours=False)
    data["acknowledge"]["REGION_COORDINATOR"] = {"after": f"{CLIMB_S}s", "working_hours": False}
    for level in ("NATIONAL_COORDINATOR", "AT_RISK_OF_LOSING_CONTACT"):
        data["acknowledge"][level] = {"after": "1h", "working_hours": False}
    data["late_tolerance"] = "1s"
    path.write_text(yaml.safe_dump(data))
    load_escalation_policy(path)  # valid
    return path


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("region-escalation")
    env = private_mesh_env(
        tmp,
        kafka_bootstrap,
        MESH_REGION_METRICS_PORT="0",
        MESH_ESCALATION_POLICY_PATH=str(short_policy(tmp / "escalation.yaml")),
        MESH_ESCALATION_TICK_SECONDS="0.05",
    )
    config = settings_from(env)
    prepare_kafka(config, "region-escalation-it", give_up_after=60)
    stack = Stack(env=env, log_dir=tmp / "logs")
    stack.start("region")
    wait_for_health(config.region_grpc_address)
    mesh = Escalations(config)
    yield stack, config, mesh
    mesh.close()
    stack.stop_all()


class Escalations(Mesh):
    """The kit's producer, plus a reader of the escalations topic."""

    def __init__(self, config):
        super().__init__(config)
        self.reader = KafkaConsumer(
            config.topic(ESCALATIONS.base_name),
            bootstrap_servers=config.kafka_bootstrap,
            group_id=f"region-esc-it-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.escalations: dict[str, list[tuple[events_pb2.EventEnvelope, dict]]] = {}

    def close(self):
        self.reader.close()
        super().close()

    def read(self, timeout: float = 0.2) -> None:
        for records in self.reader.poll(timeout_ms=int(timeout * 1000)).values():
            for record in records:
                envelope = envelopes.decode(record.value, expect="escalation")
                headers = {k: v.decode() for k, v in record.headers}
                self.escalations.setdefault(envelope.case_id, []).append((envelope, headers))

    def of(self, case_id: str) -> list[events_pb2.EscalationEvent]:
        return [e.escalation for e, _h in self.escalations.get(case_id, [])]

    def wait(self, case_id: str, count: int, timeout: float = 20.0) -> list[events_pb2.EscalationEvent]:
        deadline = time.monotonic() + timeout
        while len(self.of(case_id)) < count and time.monotonic() < deadline:
            self.read()
        found = self.of(case_id)
        assert len(found) >= count, f"{case_id}: {[(LEVEL(e.level), e.rule) for e in found]}, wanted {count}"
        return found

    def watch(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.read()

    def alert_action(self, case_id: str, escalation_id: str, action: str = "ACKNOWLEDGED"):
        envelope = envelopes.new_envelope(
            case_id=case_id,
            producer="region-esc-it",
            event_id=str(uuid.uuid4()),
            alert_action=events_pb2.AlertAction(
                escalation_id=escalation_id, referral_id=f"ref-{case_id}", coordinator="coordinator-1", action=action
            ),
        )
        return self.send(OVERRIDES, envelope)


def request(mesh: Escalations, case: str, **fields):
    fields.setdefault("urgency", common_pb2.URGENT)
    return mesh.referral(
        case,
        "ReferralRequested",
        version=1,
        sender="central-amsterdam",
        receiver="shelter-amsterdam",
        addressee="shelter-amsterdam",
        holder="central-amsterdam",
        to_status=common_pb2.REQUESTED,
        **fields,
    )


def summary(e: events_pb2.EscalationEvent) -> tuple[str, str]:
    return LEVEL(e.level), e.rule


def test_a_request_nobody_answers_gets_a_reminder_then_the_region_coordinator_then_climbs(worker):
    _stack, _config, mesh = worker
    case = new_case()
    sent = request(mesh, case)
    found = mesh.wait(case, 3, timeout=25)
    assert [summary(e) for e in found[:3]] == [
        ("AGENCY_REMINDER", "not_acknowledged"),
        ("REGION_COORDINATOR", "not_answered"),
        ("NATIONAL_COORDINATOR", "not_answered"),  # the coordinator alert, not acknowledged, climbed
    ]
    asked = sent.occurred_at.ToDatetime().timestamp()
    reminder, coordinator, _climbed = found[:3]
    assert reminder.deadline.ToDatetime().timestamp() == pytest.approx(asked + NOT_ACKNOWLEDGED_S, abs=0.01)
    assert coordinator.deadline.ToDatetime().timestamp() == pytest.approx(asked + NOT_ANSWERED_S, abs=0.01)
    for e in found[:3]:
        assert 0 <= e.late_seconds < 1.0, "fired on time"
        assert e.referral_id == f"ref-{case}" and e.region == "GM0363"
        assert [common_pb2.ReferralStatus.Name(h.status) for h in e.history] == ["REQUESTED"]
    envelope, headers = mesh.escalations[case][0]
    assert envelope.event_id == reminder.escalation_id and headers["escalation-late"] == "false"
    assert envelope.producer == "region"


def test_acknowledging_and_accepting_cancel_the_pending_deadlines(worker):
    _stack, _config, mesh = worker
    case = new_case()
    request(mesh, case)
    mesh.referral(
        case,
        "ReferralAcknowledged",
        version=2,
        to_status=common_pb2.RECEIVED,
        urgency=common_pb2.URGENT,
        holder="central-amsterdam",
    )
    mesh.watch(NOT_ACKNOWLEDGED_S + 1.5)
    assert mesh.of(case) == []  # no reminder: it was acknowledged
    mesh.referral(
        case,
        "ReferralAccepted",
        version=3,
        to_status=common_pb2.ACCEPTED,
        urgency=common_pb2.URGENT,
        holder="shelter-amsterdam",
        previous_holder="central-amsterdam",
    )
    mesh.watch(NOT_ANSWERED_S - NOT_ACKNOWLEDGED_S + 1)
    assert mesh.of(case) == []  # no coordinator alert: it was accepted


def test_contact_lost_alerts_the_region_coordinator_at_once_and_a_refused_handover_goes_national(worker):
    _stack, _config, mesh = worker
    lost, refused = new_case(), new_case()
    for case in (lost, refused):
        request(mesh, case)
        mesh.referral(
            case,
            "ReferralAccepted",
            version=2,
            to_status=common_pb2.ACCEPTED,
            urgency=common_pb2.URGENT,
            holder="shelter-amsterdam",
            previous_holder="central-amsterdam",
        )
    mesh.referral(
        lost,
        "ReferralContactLost",
        version=3,
        to_status=common_pb2.CONTACT_LOST,
        urgency=common_pb2.URGENT,
        holder="shelter-amsterdam",
    )
    mesh.referral(
        refused,
        "ReferralForwarded",
        version=3,
        to_status=common_pb2.REQUESTED,
        urgency=common_pb2.URGENT,
        holder="shelter-amsterdam",
        pending_receiver="shelter-groningen",
        addressee="shelter-groningen",
        handover=True,
    )
    mesh.referral(
        refused,
        "ReferralDeclined",
        version=4,
        to_status=common_pb2.DECLINED,
        urgency=common_pb2.URGENT,
        holder="shelter-amsterdam",
        handover=True,
        decline_reason=common_pb2.NO_CAPACITY,
    )
    assert summary(mesh.wait(lost, 1, timeout=5)[0]) == ("REGION_COORDINATOR", "contact_lost")
    found = mesh.wait(refused, 1, timeout=5)
    assert summary(found[0]) == ("NATIONAL_COORDINATOR", "refused_handover")
    assert mesh.of(lost)[0].late_seconds < 1.0 and found[0].late_seconds < 1.0


def test_an_acknowledged_alert_stops_climbing_an_unacknowledged_one_climbs(worker):
    _stack, _config, mesh = worker
    acked, ignored = new_case(), new_case()
    for case in (acked, ignored):
        request(mesh, case)
        mesh.referral(
            case,
            "ReferralAccepted",
            version=2,
            to_status=common_pb2.ACCEPTED,
            urgency=common_pb2.URGENT,
            holder="shelter-amsterdam",
            previous_holder="central-amsterdam",
        )
        mesh.referral(
            case,
            "ReferralContactLost",
            version=3,
            to_status=common_pb2.CONTACT_LOST,
            urgency=common_pb2.URGENT,
            holder="shelter-amsterdam",
        )
    alert = mesh.wait(acked, 1, timeout=5)[0]
    mesh.alert_action(acked, alert.escalation_id, "ACKNOWLEDGED")
    climbed = mesh.wait(ignored, 2, timeout=CLIMB_S + 5)
    assert [summary(e) for e in climbed] == [
        ("REGION_COORDINATOR", "contact_lost"),
        ("NATIONAL_COORDINATOR", "contact_lost"),
    ]
    headers = mesh.escalations[ignored][1][1]
    assert headers["escalation-cause"] == "not_acknowledged"
    assert headers["escalation-climbed-from"] == "REGION_COORDINATOR"
    mesh.watch(1)
    assert [summary(e) for e in mesh.of(acked)] == [("REGION_COORDINATOR", "contact_lost")]


def test_a_bad_alert_action_is_dead_lettered_not_a_good_one(worker):
    _stack, _config, mesh = worker
    case = new_case()
    mesh.alert_action(case, "", "ACKNOWLEDGED")
    letter = mesh.wait_dead_letter(lambda letter: "alert_action.escalation_id" in letter.reason, timeout=15)
    assert letter.consumer == "region"
    mesh.alert_action(case, str(uuid.uuid4()), "SHRUGGED")
    mesh.wait_dead_letter(lambda letter: "alert_action.action" in letter.reason, timeout=15)
    assert not [letter for letter in mesh.dead_letters if "unexpected payload" in letter.reason]


def test_deadlines_pending_when_the_worker_is_killed_fire_exactly_once_after_restart_marked_late(worker):
    stack, config, mesh = worker
    early, pending = new_case(), [new_case() for _ in range(4)]
    request(mesh, early)
    mesh.wait(early, 1, timeout=10)  # its reminder fired before the crash; its coordinator alert has not
    for case in pending:
        request(mesh, case)
    mesh.watch(1.0)  # let the worker store the new deadlines (changelog) before it dies
    stack.kill("region")  # SIGKILL, deadlines pending
    killed_at = time.time()
    time.sleep(NOT_ANSWERED_S + 1)  # everything comes due while nobody runs
    restarted_at = time.time()
    stack.start("region")
    wait_for_health(config.region_grpc_address)
    for case in pending:
        mesh.wait(case, 2, timeout=40)
    mesh.wait(early, 2, timeout=10)
    mesh.watch(1.5)

    for case in [early, *pending]:
        by_id: dict[str, set[bytes]] = {}
        for e in mesh.of(case):
            by_id.setdefault(e.escalation_id, set()).add(e.SerializeToString(deterministic=True))
        assert all(len(contents) == 1 for contents in by_id.values()), f"{case}: one content per id"
        fired = {summary(e) for e in mesh.of(case)}
        assert {("AGENCY_REMINDER", "not_acknowledged"), ("REGION_COORDINATOR", "not_answered")} <= fired
    for case in pending:
        late = [e for e in mesh.of(case) if killed_at < e.deadline.ToDatetime().timestamp() < restarted_at]
        assert len(late) == 2, "the reminder and the coordinator alert came due while down"
        assert all(e.late_seconds > 1.0 for e in late), "fired on recovery, marked late"
        for envelope, headers in mesh.escalations[case]:
            if envelope.escalation.late_seconds > 1.0:
                assert headers["escalation-late"] == "true"
    assert not stack.crashed()
