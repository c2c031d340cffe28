"""Helpers for the region service's integration tests: a private region worker on the real
broker, referral events and overrides produced straight onto its input topics, and a reader
for what comes out. (Plain module, unique name: this folder has no __init__.py.)"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka import KafkaConsumer, KafkaProducer

from meshkernel import envelope as envelopes
from meshkernel.config import MeshSettings
from meshkernel.topics import ASSIGNMENTS, DEAD_LETTERS, OVERRIDES, REFERRAL_EVENTS
from referralmesh.v1 import common_pb2, events_pb2

AMSTERDAM, ROTTERDAM, GRONINGEN, UTRECHT = "GM0363", "GM0599", "GM0014", "GM0344"

# Registered in Groningen for years, asked for help in Amsterdam: Amsterdam is responsible now,
# Groningen is the better-bound region a warm handover should go to.
GRONINGEN_BOUND = common_pb2.BindingFacts(
    residence=[common_pb2.Period(municipality="GM0014", from_date="2015-01-01", to_date="2026-10-01", registered=True)],
    grew_up_in=["GM0599"],
    work=[common_pb2.Period(municipality="GM0363", from_date="2025-01-01")],
)


def new_case() -> str:
    return f"case-{uuid.uuid4().hex[:12]}"


def wait_for_health(address: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        # A fresh channel per try: one channel that failed to connect while the worker was still
        # starting backs off for longer and longer, past the moment the server answers.
        with grpc.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)  # the stubs of grpcio-health-checking lack Check
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"region gRPC on {address} never became SERVING")
        time.sleep(0.3)


class Mesh:
    """Produces onto the region worker's input topics and reads its output topics."""

    def __init__(self, config: MeshSettings):
        self.config = config
        self.producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, linger_ms=0)
        self.consumer = KafkaConsumer(
            config.topic(ASSIGNMENTS.base_name),
            config.topic(DEAD_LETTERS.base_name),
            bootstrap_servers=config.kafka_bootstrap,
            group_id=f"region-it-{uuid.uuid4()}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.assignments: dict[str, list[events_pb2.EventEnvelope]] = {}
        self.dead_letters: list[events_pb2.DeadLetter] = []

    def close(self) -> None:
        self.producer.close()
        self.consumer.close()

    # ---------------------------------------------------------------- producing

    def referral(self, case_id: str, event_type: str, **fields) -> events_pb2.EventEnvelope:
        return self.send(REFERRAL_EVENTS, self.referral_event(case_id, event_type, **fields))

    @staticmethod
    def referral_event(
        case_id: str,
        event_type: str,
        *,
        referral_id: str = "",
        version: int = 1,
        event_id: str | None = None,
        asked_in: str = AMSTERDAM,
        facts: common_pb2.BindingFacts | None = None,
        **fields,
    ) -> events_pb2.EventEnvelope:
        payload = events_pb2.ReferralEvent(
            referral_id=referral_id or f"ref-{case_id}",
            event_type=event_type,
            version=version,
            need_domains=["shelter"],
            languages=["en"],
            asked_in=asked_in,
            facts=facts if facts is not None else GRONINGEN_BOUND,
            **fields,
        )
        envelope = envelopes.new_envelope(
            case_id=case_id,
            producer="region-it",
            event_id=event_id or envelopes.derived_id("referral-event", payload.referral_id, str(version)),
            referral=payload,
        )
        return envelope

    def override(
        self, case_id: str, *, region: str = "", reason_code: str = "dispute_settled", lift: bool = False
    ) -> events_pb2.EventEnvelope:
        envelope = envelopes.new_envelope(
            case_id=case_id,
            producer="region-it",
            event_id=str(uuid.uuid4()),
            override=events_pb2.CoordinatorOverride(
                referral_id=f"ref-{case_id}",
                region=region,
                reason_code=reason_code,
                coordinator="coordinator-1",
                lift=lift,
            ),
        )
        return self.send(OVERRIDES, envelope)

    def send(self, spec, envelope: events_pb2.EventEnvelope) -> events_pb2.EventEnvelope:
        self.producer.send(
            self.config.topic(spec.base_name),
            key=envelope.case_id.encode(),
            value=envelopes.encode(envelope),
            headers=envelopes.kafka_headers(envelope),
        )
        self.producer.flush()
        return envelope

    def raw(self, spec, key: bytes, value: bytes) -> None:
        self.producer.send(self.config.topic(spec.base_name), key=key, value=value)
        self.producer.flush()

    # ---------------------------------------------------------------- reading

    def poll(self, timeout: float = 0.2) -> None:
        batches = self.consumer.poll(timeout_ms=int(timeout * 1000))
        for records in batches.values():
            for record in records:
                if record.topic == self.config.topic(DEAD_LETTERS.base_name):
                    self.dead_letters.append(events_pb2.DeadLetter.FromString(record.value))
                    continue
                envelope = envelopes.decode(record.value)
                self.assignments.setdefault(envelope.case_id, []).append(envelope)

    def wait_assignments(self, case_id: str, count: int, timeout: float = 30.0) -> list[events_pb2.EventEnvelope]:
        deadline = time.monotonic() + timeout
        while len(self.assignments.get(case_id, [])) < count and time.monotonic() < deadline:
            self.poll()
        found = self.assignments.get(case_id, [])
        assert len(found) >= count, (
            f"{case_id}: {len(found)} assignments after {timeout}s, wanted {count}: "
            f"{[(a.assignment.trigger, a.assignment.responsible_region, a.assignment.rule) for a in found]}"
        )
        return found

    def settle(self, seconds: float) -> None:
        """Keep reading for a while, to see that nothing more arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()

    def wait_dead_letter(self, predicate, timeout: float = 30.0) -> events_pb2.DeadLetter:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for letter in self.dead_letters:
                if predicate(letter):
                    return letter
            self.poll()
        raise AssertionError(f"no matching dead letter; got {[letter.reason for letter in self.dead_letters]}")


def summary(envelope: events_pb2.EventEnvelope) -> tuple[str, str, str, str]:
    a = envelope.assignment
    return a.trigger, a.responsible_region, a.rule, a.handover_to


def now() -> datetime:
    return datetime.now(UTC)
