"""The event envelope: every record on a mesh topic, with a stable id and trace context.

Ids are derived, not random, wherever an event is caused by another one: a redelivered
input then yields the same output id, which is what lets every receiver deduplicate.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError

from meshkernel import tracing
from referralmesh.v1 import events_pb2

SCHEMA_VERSION = 1
_ID_NAMESPACE = uuid.UUID("6f1c6a52-3d0e-4e59-9d7e-6a1b2f0c9e11")

PAYLOAD_KINDS = (
    "referral",
    "assignment",
    "escalation",
    "notification",
    "override",
    "alert_action",
    "client_erased",
    "agency_directory_changed",
)


class MalformedEvent(ValueError):
    """A record that is not a valid mesh event; the reason never includes the payload."""


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "/".join(parts)))


def new_envelope(
    *,
    case_id: str,
    producer: str,
    event_id: str,
    occurred_at: datetime | None = None,
    **payload: Any,
) -> events_pb2.EventEnvelope:
    """Wrap one payload (referral=..., assignment=..., ...) with the current trace context."""
    if len(payload) != 1 or next(iter(payload)) not in PAYLOAD_KINDS:
        raise ValueError(f"exactly one payload of {PAYLOAD_KINDS} expected, got {sorted(payload)}")
    envelope = events_pb2.EventEnvelope(
        event_id=event_id,
        case_id=case_id,
        schema_version=SCHEMA_VERSION,
        producer=producer,
        **payload,
    )
    envelope.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    carrier = tracing.inject_current()
    envelope.trace.traceparent = carrier.get("traceparent", "")
    envelope.trace.tracestate = carrier.get("tracestate", "")
    return envelope


def encode(envelope: events_pb2.EventEnvelope) -> bytes:
    return envelope.SerializeToString()


def kafka_headers(
    envelope: events_pb2.EventEnvelope, trace_carrier: dict[str, str] | None = None
) -> list[tuple[str, bytes]]:
    """Headers for one record; trace_carrier (the sending span) overrides the stored context."""
    headers = [
        ("event-id", envelope.event_id.encode()),
        ("payload", (envelope.WhichOneof("payload") or "").encode()),
        ("schema-version", str(envelope.schema_version).encode()),
    ]
    carrier = (
        trace_carrier
        if trace_carrier is not None
        else {
            "traceparent": envelope.trace.traceparent,
            "tracestate": envelope.trace.tracestate,
        }
    )
    headers.extend((name, carrier[name].encode()) for name in ("traceparent", "tracestate") if carrier.get(name))
    return headers


def trace_carrier_from_headers(headers: Any) -> dict[str, str]:
    """The W3C context of a consumed record's headers (Faust gives a dict, aiokafka a list)."""
    items = headers.items() if hasattr(headers, "items") else (headers or ())
    carrier = {}
    for name, value in items:
        if name in ("traceparent", "tracestate") and value:
            carrier[name] = value.decode() if isinstance(value, bytes) else str(value)
    return carrier


def decode(raw: bytes | None, *, expect: str | None = None) -> events_pb2.EventEnvelope:
    """Parse and check a record; raise MalformedEvent with a reason fit for a log line."""
    if not raw:
        raise MalformedEvent("empty record")
    try:
        envelope = events_pb2.EventEnvelope.FromString(raw)
    except DecodeError:
        raise MalformedEvent("not a protobuf EventEnvelope") from None
    if envelope.schema_version != SCHEMA_VERSION:
        raise MalformedEvent(f"unsupported schema version {envelope.schema_version}")
    if not envelope.event_id:
        raise MalformedEvent("missing event_id")
    if not envelope.case_id:
        raise MalformedEvent("missing case_id")
    kind = envelope.WhichOneof("payload")
    if kind is None:
        raise MalformedEvent("no payload")
    if expect is not None and kind != expect:
        raise MalformedEvent(f"unexpected payload {kind!r}, expected {expect!r}")
    return envelope
