"""The loss windows of a killed or stopped region worker, made without SIGKILL timing luck.

The worker writes a case's record (its `cases` changelog) before the broker surely has the
assignment it sent, and commits the input only after its producer flushed. A SIGKILL in between
leaves exactly this: the record names the event as handled, the assignment is not on its topic,
and the event is read again. Here that state is written straight into the changelog while the
worker is stopped; the worker that starts must send the assignment, once by id, as decided.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import pytest
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from meshkernel.kafka_acl import stream_app_id
from meshkernel.topics import REFERRAL_EVENTS
from referralmesh.v1 import region_service_pb2 as api
from referralmesh.v1 import region_service_pb2_grpc as api_grpc
from services.region.adapters.assigning import Assigner, load_agency_regions
from services.region.adapters.streams import TABLE
from services.region.decide import load_resolver
from tests.integration.region.region_stream_kit import new_case, wait_for_health

pytestmark = pytest.mark.kafka


def _write_record(config, case_id: str, record) -> None:
    """Put a case record into the `cases` changelog (key and value JSON, as the table writes
    them; None: a tombstone) on the partition the worker would use: its input's, keyed by case id."""
    changelog = f"{stream_app_id(config.topic_prefix, 'region')}-{TABLE}-changelog"
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all")
    try:
        partitions = sorted(producer.partitions_for(config.topic(REFERRAL_EVENTS.base_name)))
        partition = partitions[(murmur2(case_id.encode()) & 0x7FFFFFFF) % len(partitions)]  # the default partitioner
        producer.send(
            changelog,
            key=json.dumps(case_id).encode(),
            value=None if record is None else json.dumps(record).encode(),
            partition=partition,
        )
        producer.flush()
    finally:
        producer.close()


def test_an_assignment_recorded_before_a_crash_is_sent_when_its_event_comes_again(mesh, region_worker):
    stack, config = region_worker
    case_id = new_case()
    event = mesh.referral_event(case_id, "ReferralRequested", sender="central-amsterdam", receiver="shelter-amsterdam")
    # What the worker decided and recorded for the event just before it was killed.
    assigner = Assigner(load_resolver(config.region_policy_path), load_agency_regions(config.agency_directory_path))
    decided = assigner.on_referral(event, {})
    assert decided.assignment is not None

    stack.stop("region")
    _write_record(config, case_id, decided.record)
    stack.start("region")
    wait_for_health(config.region_grpc_address)
    mesh.send(REFERRAL_EVENTS, event)  # its offset was never committed: read again

    mesh.wait_assignments(case_id, 1, timeout=60)
    mesh.settle(2)
    # Delivery is at least once: a rebalance while the new worker starts can make it read the
    # event a second time, and then it sends the recorded assignment again, under the same id.
    assert {a.event_id for a in mesh.assignments[case_id]} == {decided.assignment.event_id}
    for sent in mesh.assignments[case_id]:
        assert sent == decided.assignment  # as decided then (its time too), not decided again
    with grpc.insecure_channel(config.region_grpc_address) as channel:
        reply = api_grpc.RegionServiceStub(channel).GetAssignment(api.GetAssignmentRequest(case_id=case_id), timeout=10)
    assert len(reply.history) == 1  # recorded once
    assert not stack.crashed()


def _log_of(config) -> Path:
    return Path(config.state_dir).parent / "logs" / "region.log"


def _wait_for_log_line(path: Path, *words: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(all(word in line for word in words) for line in path.read_text(errors="replace").splitlines()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no log line with {words} in {path} after {timeout}s")


def _unreadable_record(stack, config, case_id: str) -> None:
    """Give the case a stored record the worker cannot read as a record (JSON, not an object):
    a failure outside the decision, as a table or producer failure would be."""
    stack.stop("region")
    _write_record(config, case_id, 5)
    stack.start("region")
    wait_for_health(config.region_grpc_address)


def test_an_event_whose_handling_keeps_failing_is_dead_lettered_not_dropped(mesh, region_worker):
    """Faust acknowledges an event whose handling raised: its offset was committed with nothing
    sent, no assignment and no dead letter (the pattern seen after kills in the scale-out and
    chaos runs). The worker now tries it again, then dead-letters it naming the error, and goes on."""
    stack, config = region_worker
    broken, fine = new_case(), new_case()
    _unreadable_record(stack, config, broken)

    mesh.send(REFERRAL_EVENTS, mesh.referral_event(broken, "ReferralRequested"))
    mesh.send(REFERRAL_EVENTS, mesh.referral_event(fine, "ReferralRequested"))

    letter = mesh.wait_dead_letter(lambda letter: letter.key == broken.encode(), timeout=120)
    assert letter.reason == "internal error: TypeError" and letter.consumer == "region"
    mesh.wait_assignments(fine, 1, timeout=60)
    assert broken not in mesh.assignments
    assert not stack.crashed()


def test_an_event_interrupted_by_a_stop_is_read_again_after_the_restart(mesh, region_worker):
    """A worker stopped (SIGTERM) in the middle of an event used to acknowledge and commit it on
    the way out, without its outputs. Now the event stays unacknowledged: the next worker reads
    it again and sends its assignment."""
    stack, config = region_worker
    case_id = new_case()
    _unreadable_record(stack, config, case_id)
    log = _log_of(config)

    mesh.send(REFERRAL_EVENTS, mesh.referral_event(case_id, "ReferralRequested"))
    _wait_for_log_line(log, "handling an event failed", case_id)  # in the middle of it, trying again
    stack.stop("region")
    _write_record(config, case_id, None)  # the record is readable again (a new case)
    stack.start("region")
    wait_for_health(config.region_grpc_address)

    mesh.wait_assignments(case_id, 1, timeout=90)
    mesh.settle(2)
    sent = mesh.assignments[case_id]
    # Once by id: a second read of the event (a rebalance while the worker starts) re-sends
    # the assignment it recorded the first time, not a new decision.
    assert len({a.event_id for a in sent}) == 1, [(a.event_id, a.assignment.trigger) for a in sent]
    assert sent[0].assignment.trigger == "ReferralRequested"
    assert not [letter for letter in mesh.dead_letters if letter.key == case_id.encode()]
    assert not stack.crashed()
