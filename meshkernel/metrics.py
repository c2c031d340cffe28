"""OpenTelemetry metrics with a Prometheus scrape endpoint, one per service process.

Instruments carry codes only (states, rules, levels, topics): never a case id, which would
make every case its own time series and say more than a metric needs to.
"""

from __future__ import annotations

import logging

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import start_http_server

log = logging.getLogger(__name__)
_started_port: int | None = None


def setup_metrics(service_name: str, port: int, *, address: str = "127.0.0.1") -> None:
    """Serve /metrics on address:port; port 0 disables the endpoint (the meters still work)."""
    global _started_port
    if _started_port is not None:
        return
    reader = PrometheusMetricReader()
    provider = MeterProvider(resource=Resource.create({"service.name": service_name}), metric_readers=[reader])
    metrics.set_meter_provider(provider)
    if port:
        try:
            start_http_server(port, addr=address)
        except OSError as error:
            # Metrics must never keep a service from serving cases.
            log.warning("metrics endpoint not started on %s:%s (%s)", address, port, error.strerror)
            port = 0
    _started_port = port


def meter(name: str) -> metrics.Meter:
    return metrics.get_meter(name)
