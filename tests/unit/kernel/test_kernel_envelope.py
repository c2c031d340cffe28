from datetime import UTC, datetime

import pytest
from opentelemetry import trace

from meshkernel import envelope as envelopes
from meshkernel.tracing import setup_tracing
from referralmesh.v1 import events_pb2


def _assignment_envelope(**overrides):
    arguments = dict(
        case_id="case-1",
        producer="region",
        event_id=envelopes.derived_id("assignment", "e1"),
        assignment=events_pb2.AssignmentEvent(referral_id="r1", responsible_region="GM0363", rule="bound_here"),
    )
    arguments.update(overrides)
    return envelopes.new_envelope(**arguments)


def test_an_envelope_survives_encoding_and_keeps_its_identity():
    occurred = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    original = _assignment_envelope(occurred_at=occurred)
    decoded = envelopes.decode(envelopes.encode(original), expect="assignment")
    assert decoded == original
    assert decoded.schema_version == envelopes.SCHEMA_VERSION
    assert decoded.occurred_at.ToDatetime(tzinfo=UTC) == occurred
    assert decoded.assignment.responsible_region == "GM0363"


def test_derived_ids_are_stable_and_distinguish_their_inputs():
    assert envelopes.derived_id("assignment", "e1") == envelopes.derived_id("assignment", "e1")
    assert envelopes.derived_id("assignment", "e1") != envelopes.derived_id("assignment", "e2")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty record"),
        (None, "empty record"),
        (b"\x00\xffgarbage", "not a protobuf EventEnvelope"),
    ],
)
def test_undecodable_records_are_refused_with_a_reason(raw, reason):
    with pytest.raises(envelopes.MalformedEvent, match=reason):
        envelopes.decode(raw)


def test_envelopes_missing_their_identity_or_payload_are_refused():
    valid = _assignment_envelope()
    for field, reason in (("event_id", "missing event_id"), ("case_id", "missing case_id")):
        broken = events_pb2.EventEnvelope()
        broken.CopyFrom(valid)
        setattr(broken, field, "")
        with pytest.raises(envelopes.MalformedEvent, match=reason):
            envelopes.decode(broken.SerializeToString())
    no_payload = events_pb2.EventEnvelope(event_id="x", case_id="c", schema_version=1)
    with pytest.raises(envelopes.MalformedEvent, match="no payload"):
        envelopes.decode(no_payload.SerializeToString())
    future = events_pb2.EventEnvelope()
    future.CopyFrom(valid)
    future.schema_version = 99
    with pytest.raises(envelopes.MalformedEvent, match="unsupported schema version 99"):
        envelopes.decode(future.SerializeToString())


def test_a_payload_of_the_wrong_kind_is_refused():
    with pytest.raises(envelopes.MalformedEvent, match="unexpected payload 'assignment'"):
        envelopes.decode(envelopes.encode(_assignment_envelope()), expect="referral")


def test_exactly_one_payload_is_required():
    with pytest.raises(ValueError):
        envelopes.new_envelope(case_id="c", producer="p", event_id="e")


def test_the_current_trace_travels_in_the_envelope_and_the_kafka_headers():
    setup_tracing("kernel-test")
    with trace.get_tracer("test").start_as_current_span("produce") as span:
        wrapped = _assignment_envelope()
        trace_id = format(span.get_span_context().trace_id, "032x")
    assert trace_id in wrapped.trace.traceparent
    headers = dict(envelopes.kafka_headers(wrapped))
    assert headers["traceparent"].decode() == wrapped.trace.traceparent
    assert headers["event-id"].decode() == wrapped.event_id
    assert headers["payload"] == b"assignment"
