"""The loss window of a killed region worker, made without SIGKILL timing luck.

The worker writes a case's record (its `cases` changelog) before the broker surely has the
assignment it sent, and commits the input only after its producer flushed. A SIGKILL in between
leaves exactly this: the record names the event as handled, the assignment is not on its topic,
and the event is read again. Here that state is written straight into the changelog while the
worker is stopped; the worker that starts must send the assignment, once by id, as decided.
"""

from __future__ import annotations

import json

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


def _write_record(config, case_id: str, record: dict) -> None:
    """Put a case record into the `cases` changelog (key and value JSON, as the table writes
    them) on the partition the worker would use: its input's, keyed by case id."""
    changelog = f"{stream_app_id(config.topic_prefix, 'region')}-{TABLE}-changelog"
    producer = KafkaProducer(bootstrap_servers=config.kafka_bootstrap, acks="all")
    try:
        partitions = sorted(producer.partitions_for(config.topic(REFERRAL_EVENTS.base_name)))
        partition = partitions[(murmur2(case_id.encode()) & 0x7FFFFFFF) % len(partitions)]  # the default partitioner
        producer.send(
            changelog, key=json.dumps(case_id).encode(), value=json.dumps(record).encode(), partition=partition
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

    [sent] = mesh.wait_assignments(case_id, 1, timeout=60)
    mesh.settle(2)
    assert [a.event_id for a in mesh.assignments[case_id]] == [decided.assignment.event_id]
    assert sent == decided.assignment  # as decided then (its time too), not decided again
    with grpc.insecure_channel(config.region_grpc_address) as channel:
        reply = api_grpc.RegionServiceStub(channel).GetAssignment(api.GetAssignmentRequest(case_id=case_id), timeout=10)
    assert len(reply.history) == 1  # recorded once
    assert not stack.crashed()
