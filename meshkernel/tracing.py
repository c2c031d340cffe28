"""OpenTelemetry set-up, once for every service, and W3C context for Kafka hops.

Exporters follow the standard OTEL_* variables; with none set, spans are still created
(so trace ids flow through events) but nothing is exported.
"""
from __future__ import annotations

import os

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

CONSUMER = trace.SpanKind.CONSUMER
PRODUCER = trace.SpanKind.PRODUCER
SERVER = trace.SpanKind.SERVER

_configured = False


def setup_tracing(service_name: str, version: str = "0.1.0", environment: str = "local") -> None:
    global _configured
    if _configured:
        return
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": version,
            "deployment.environment": environment,
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = _exporter_from_environment()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


def _exporter_from_environment():
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "none").lower()
    if choice == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if choice == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:  # the exporter package is optional until the tracing issue lands
            return None
        return OTLPSpanExporter()
    return None


def tracer(name: str) -> trace.Tracer:
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
