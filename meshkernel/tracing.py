"""OpenTelemetry set-up, once for every service, and W3C context across Kafka hops.

The exporter follows the standard variables: OTEL_TRACES_EXPORTER=otlp|zipkin|console|none
(with OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_ZIPKIN_ENDPOINT). Left unset, OTLP is used
when an OTLP endpoint is configured and nothing is exported otherwise; spans are created
either way, so trace ids still flow through every event and log line.

Only identifiers go into span attributes (case id, referral id, event id, codes): never a
name, an address, a contact detail or free text.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from referralmesh.v1 import events_pb2

CONSUMER = trace.SpanKind.CONSUMER
PRODUCER = trace.SpanKind.PRODUCER
SERVER = trace.SpanKind.SERVER
INTERNAL = trace.SpanKind.INTERNAL

CASE_ID = "referralmesh.case_id"
REFERRAL_ID = "referralmesh.referral_id"

_configured = False


def setup_tracing(
    service_name: str,
    version: str = "0.1.0",
    environment: str = "local",
    *,
    exporter: SpanExporter | None = None,
) -> None:
    """Install the tracer provider and the gRPC instrumentation; safe to call twice."""
    global _configured
    if _configured:
        return
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": version,
            "deployment.environment.name": environment,
        }
    )
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        configured = _exporter_from_environment()
        if configured is not None:
            provider.add_span_processor(BatchSpanProcessor(configured))
    trace.set_tracer_provider(provider)
    _instrument_grpc()
    _configured = True


def _exporter_from_environment() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not choice:
        has_endpoint = any(
            os.environ.get(name) for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        choice = "otlp" if has_endpoint else "none"
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if choice in ("zipkin", "zipkin_json"):
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        return ZipkinExporter()
    if choice == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    return None


def _instrument_grpc() -> None:
    try:
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, GrpcAioInstrumentorServer
    except ImportError:
        return
    # The synchronous client instrumentation turns response streams into plain generators
    # without cancel(), which breaks resumable streams; the services only use grpc.aio.
    # The instrumentation package has no type hints.
    for instrumentor in (GrpcAioInstrumentorServer(), GrpcAioInstrumentorClient()):  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


@functools.cache
def tracer(name: str) -> trace.Tracer:
    # One per name for the life of the process: get_tracer builds a new tracer on every call,
    # which cost a worker about 2 % of its CPU per event (issue 13). A tracer obtained before
    # setup_tracing is OpenTelemetry's proxy, which follows the provider installed later.
    return trace.get_tracer(name)


def inject_current() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(traceparent: str, tracestate: str = "") -> context.Context:
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return propagate.extract(carrier)


def _messaging_attributes(topic: str, operation: str, envelope: events_pb2.EventEnvelope) -> dict[str, str]:
    return {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": operation,
        "messaging.message.id": envelope.event_id,
        "messaging.kafka.message.key": envelope.case_id,
        CASE_ID: envelope.case_id,
    }


@contextlib.contextmanager
def consuming(
    topic: str,
    envelope: events_pb2.EventEnvelope,
    *,
    consumer_group: str,
    partition: int | None = None,
    headers: dict[str, str] | None = None,
) -> Iterator[trace.Span]:
    """A 'process {topic}' span, child of the span that sent the record.

    The record's headers name the sending span; the context stored in the envelope (the
    span that created the event) is the fallback for records sent without headers.
    """
    carrier = headers or {}
    if carrier.get("traceparent"):
        parent = context_from(carrier["traceparent"], carrier.get("tracestate", ""))
    else:
        parent = context_from(envelope.trace.traceparent, envelope.trace.tracestate)
    attributes = _messaging_attributes(topic, "process", envelope)
    attributes["messaging.consumer.group.name"] = consumer_group
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    with tracer("referralmesh.kafka").start_as_current_span(
        f"process {topic}", context=parent, kind=CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def publishing(
    topic: str, *, case_id: str, parent: context.Context | None = None, event_id: str | None = None
) -> Iterator[trace.Span]:
    """A 'send {topic}' span; envelopes created inside it carry it as their parent."""
    attributes = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.operation.type": "send",
        "messaging.kafka.message.key": case_id,
        CASE_ID: case_id,
    }
    if event_id:
        attributes["messaging.message.id"] = event_id
    with tracer("referralmesh.kafka").start_as_current_span(
        f"send {topic}", context=parent, kind=PRODUCER, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def linked(name: str, traceparent: str, tracestate: str = "", **attributes: Any) -> Iterator[trace.Span]:
    """A new trace that links to an earlier one (a timer firing long after its case was set)."""
    earlier = trace.get_current_span(context_from(traceparent, tracestate)).get_span_context()
    links = [trace.Link(earlier)] if earlier.is_valid else []
    with tracer("referralmesh.timers").start_as_current_span(
        name, context=context.Context(), kind=INTERNAL, links=links, attributes=attributes
    ) as span:
        yield span
