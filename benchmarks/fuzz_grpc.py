"""Hostile requests to every gRPC method of a live mesh: generated and mutated protobuf
messages and raw bytes through a generic channel call. Each call must end in a gRPC status
within its deadline; UNKNOWN (an exception the handler did not turn into a status) counts as
a crash, a unary call still open at its deadline as a hang, a server process that exits too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.fuzz_parsers import mutated_bytes
from meshcli.demo import RECEIVER, SENDER, demo_request
from meshkernel.callers import DEV_COORDINATOR_HEADER as COORDINATOR_HEADER
from meshkernel.callers import DEV_SCOPE_HEADER
from referralmesh.v1 import notify_service_pb2, referral_service_pb2, region_service_pb2
from services.referral.adapters.identity import DEV_AGENCY_HEADER, ON_BEHALF_HEADER, USER_HEADER

F = pb_descriptor.FieldDescriptor
SERVICES = {
    "referral": referral_service_pb2.DESCRIPTOR.services_by_name["ReferralService"],
    "region": region_service_pb2.DESCRIPTOR.services_by_name["RegionService"],
    "notify": notify_service_pb2.DESCRIPTOR.services_by_name["NotifyService"],
}
CALL_SECONDS = 10.0
STREAM_SECONDS = 1.0

# Values that reach past the first checks: real agency ids, codes, dates, ids seen in the run.
known_text = st.sampled_from(
    (
        "",
        SENDER,
        RECEIVER,
        "GM0518",
        "GM0363",
        "GM9999",
        "shelter",
        "health",
        "es",
        "nl",
        "2026-03-01",
        "2026-02-30",
        "9999-12-31",
        "URGENT",
        "fuzz-case",
        "ACKNOWLEDGED",
        "RESOLVED",
        "TAKEN",
        "other",
        "x" * 5000,
        "\x00",
        "é" * 10,
        "../../etc/passwd",
        "%s%n",
        "null",
    )
)
texts = known_text | st.text(max_size=40)
metadata_choices = st.sampled_from(
    (
        (),
        ((DEV_AGENCY_HEADER, SENDER),),
        ((DEV_AGENCY_HEADER, RECEIVER), (USER_HEADER, "u-1"), (ON_BEHALF_HEADER, "c")),
        ((COORDINATOR_HEADER, "coord-haaglanden"), (DEV_SCOPE_HEADER, "GM0518")),
        ((COORDINATOR_HEADER, "national"),),
        ((DEV_AGENCY_HEADER, "nobody"),),
        ((DEV_SCOPE_HEADER, "x" * 300),),
        ((DEV_AGENCY_HEADER, ""),),
        ((COORDINATOR_HEADER, "x" * 300),),
    )
)


def _scalar(field_descriptor: F):
    kind = field_descriptor.type
    if kind in (F.TYPE_STRING,):
        return texts
    if kind == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_ENUM:
        enum = field_descriptor.enum_type
        numbers = [value.number for value in enum.values] if enum is not None else [0]
        return st.sampled_from(numbers) | st.integers(-5, 1000)
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == F.TYPE_FLOAT else 64)
    if kind in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if kind in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if kind in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return st.integers(-(2**31), 2**31 - 1)
    return st.integers(-(2**63), 2**63 - 1)


def message_dicts(descriptor, depth: int = 0):
    """A strategy of {field: value} for one message type (nested messages up to depth 3)."""
    fields: dict[str, Any] = {}
    for field_descriptor in descriptor.fields:
        value: Any
        if field_descriptor.message_type is not None:
            if depth >= 3:
                continue
            if field_descriptor.message_type.GetOptions().map_entry:
                value = st.dictionaries(texts, texts, max_size=3)
            else:
                value = message_dicts(field_descriptor.message_type, depth + 1)
        else:
            value = _scalar(field_descriptor)
        if field_descriptor.is_repeated and not (
            field_descriptor.message_type is not None and field_descriptor.message_type.GetOptions().map_entry
        ):
            value = st.lists(value, max_size=3)
        fields[field_descriptor.name] = value
    return st.fixed_dictionaries({}, optional=fields)


def _build(descriptor, values: dict):
    message = GetMessageClass(descriptor)()
    for name, value in values.items():
        field_descriptor = descriptor.fields_by_name[name]
        if field_descriptor.message_type is not None:
            target = getattr(message, name)
            if field_descriptor.message_type.GetOptions().map_entry:
                target.update(value)
            elif field_descriptor.is_repeated:
                for item in value:
                    target.add().CopyFrom(_build(field_descriptor.message_type, item))
            else:
                target.CopyFrom(_build(field_descriptor.message_type, value))
        elif field_descriptor.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


def request_bytes(method):
    """Serialized generated requests, mutated ones, and raw bytes."""
    generated = message_dicts(method.input_type).map(
        lambda values: _build(method.input_type, values).SerializeToString()
    )
    seeds = (
        [demo_request("fuzz-case").SerializeToString()]
        if method.input_type.name == "CreateReferralRequest"
        else [b"\x0a\x04abcd"]
    )
    return generated | mutated_bytes(seeds) | st.binary(max_size=200)


@dataclass
class GrpcTally:
    calls: dict[str, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    crashes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, name: str, code: grpc.StatusCode, detail: str, problem: str | None) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.codes[code.name] = self.codes.get(code.name, 0) + 1
            if problem and len(self.crashes) < 50:
                self.crashes.append(f"{name}: {problem}: {code.name} {detail[:200]}")

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _call(channel: grpc.Channel, name: str, streaming: bool, payload: bytes, metadata) -> tuple:
    if streaming:
        call: Any = channel.unary_stream(name)(payload, metadata=metadata, timeout=STREAM_SECONDS)  # type: ignore[arg-type]
        try:
            for _ in call:
                pass
        except grpc.RpcError:
            pass
        return call.code(), call.details() or "", None
    try:
        channel.unary_unary(name)(payload, metadata=metadata, timeout=CALL_SECONDS)  # type: ignore[arg-type]
        return grpc.StatusCode.OK, "", None
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return code, error.details() or "", "no answer within the deadline"
        detail = error.details() or ""
        # grpc.aio answers bytes it cannot parse as the request type with UNKNOWN before any
        # handler runs: a refusal by the framework, not a handler's exception.
        undecodable = detail.startswith("Unexpected <class 'google.protobuf.message.DecodeError'>")
        if code == grpc.StatusCode.UNKNOWN and not undecodable:
            return code, detail, "unhandled exception in the handler"
        return code, detail, None


def fuzz_service(address: str, service: str, examples: int, tally: GrpcTally) -> None:
    descriptor = SERVICES[service]
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
        for method in descriptor.methods:
            _fuzz_method(channel, f"/{descriptor.full_name}/{method.name}", method, examples, tally)


def _fuzz_method(channel: grpc.Channel, name: str, method, examples: int, tally: GrpcTally) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(request_bytes(method), metadata_choices)
    def property_(payload, metadata):
        code, detail, problem = _call(channel, name, method.server_streaming, payload, metadata)
        tally.note(name, code, detail, problem)

    property_()
