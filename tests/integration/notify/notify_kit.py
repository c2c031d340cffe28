"""Helpers for the notify service's tests on a real broker: a private notify worker, events in."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaProducer

from meshcli.supervisor import Stack, private_mesh_env
from meshkernel import envelope as envelopes
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import TopicSpec
from referralmesh.v1 import common_pb2, events_pb2
from tests.conftest import settings_from

DEMO_PASSWORD = "demo-password-for-tests"


def notify_env(kafka_bootstrap: str, base: Path, **extra: str) -> dict[str, str]:
    return private_mesh_env(
        base, kafka_bootstrap, MESH_NOTIFY_DEMO_PASSWORD=DEMO_PASSWORD, MESH_TOPIC_PARTITIONS="2", **extra
    )


class NotifyProcess:
    """`mesh serve notify` as a child process with its own topics, state and ports."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.config = settings_from(env)
        self.stack = Stack(env=env, log_dir=log_dir)
        self.log_file = log_dir / "notify.log"
        self.base_url = f"http://127.0.0.1:{self.config.notify_web_port}"

    def start(self, timeout: float = 60.0) -> NotifyProcess:
        prepare_kafka(self.config, "notify-test", give_up_after=60)
        self.stack.start("notify")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stack.crashed():
                raise RuntimeError("notify crashed at start:\n" + self.log_file.read_text()[-3000:])
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=1) as response:
                    if json.load(response)["status"] == "ok":
                        return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("notify did not answer /health:\n" + self.log_file.read_text()[-3000:])

    def stop(self) -> None:
        self.stack.stop_all()


class Producer:
    def __init__(self, config):
        self.config = config
        self.producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all")

    def send(self, spec: TopicSpec, envelope: events_pb2.EventEnvelope) -> None:
        self.producer.send(
            self.config.topic(spec.base_name),
            key=envelope.case_id.encode(),
            value=envelopes.encode(envelope),
            headers=envelopes.kafka_headers(envelope),
        )
        self.producer.flush()

    def close(self) -> None:
        self.producer.close()


def new_case() -> str:
    return f"case-{uuid.uuid4().hex[:12]}"


def escalation(
    case_id: str,
    *,
    region: str = "GM0518",
    level: events_pb2.EscalationLevel.ValueType = events_pb2.REGION_COORDINATOR,
    rule: str = "not_accepted_in_time",
    age: timedelta = timedelta(hours=30),
) -> events_pb2.EventEnvelope:
    now = datetime.now(UTC)
    started = now - age
    payload = events_pb2.EscalationEvent(
        escalation_id=envelopes.derived_id("escalation", case_id, rule, str(level)),
        referral_id=f"ref-{case_id}",
        region=region,
        level=level,
        rule=rule,
        late_seconds=3600.0,
        history=[events_pb2.StatusAt(status=common_pb2.REQUESTED), events_pb2.StatusAt(status=common_pb2.RECEIVED)],
    )
    payload.history[0].at.FromDatetime(started)
    payload.history[1].at.FromDatetime(started + timedelta(hours=2))
    payload.deadline.FromDatetime(now - timedelta(hours=1))
    payload.fired_at.FromDatetime(now)
    return envelopes.new_envelope(
        case_id=case_id, producer="region-test", event_id=payload.escalation_id, escalation=payload
    )


def assignment(
    case_id: str,
    *,
    region: str = "GM0518",
    receiver: str = "shelter-utrecht",
    sender: str = "exit-the-hague",
    languages=("pl", "en"),
    handover_to: str = "",
) -> events_pb2.EventEnvelope:
    payload = events_pb2.AssignmentEvent(
        referral_id=f"ref-{case_id}",
        responsible_region=region,
        rule="asked_here_bound_nowhere",
        bound_nowhere=True,
        sender=sender,
        receiver=receiver,
        languages=list(languages),
        handover_to=handover_to,
    )
    return envelopes.new_envelope(
        case_id=case_id, producer="region-test", event_id=str(uuid.uuid4()), assignment=payload
    )


def referral_with_contact(case_id: str, sealed: common_pb2.SealedContact) -> events_pb2.EventEnvelope:
    payload = events_pb2.ReferralEvent(
        referral_id=f"ref-{case_id}",
        event_type="ReferralRequested",
        to_status=common_pb2.REQUESTED,
        version=1,
        actor="exit-the-hague",
        sender="exit-the-hague",
        receiver="shelter-utrecht",
        languages=["pl", "en"],
        asked_in="GM0518",
        contact=sealed,
    )
    return envelopes.new_envelope(
        case_id=case_id, producer="referral-test", event_id=str(uuid.uuid4()), referral=payload
    )


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
