"""Standard gRPC health checking and server reflection, the same on every service, so
grpcurl and grpc-health-probe work against any of them."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


def add_health_and_reflection(
    server: grpc.aio.Server, service_name: str, *more_services: str
) -> health.aio.HealthServicer:
    """Register both on `server` for `service_name` (full name, e.g. referralmesh.v1.RegionService)
    and any further services the server serves (reflection lists them too)."""
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (service_name, *more_services, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return health_servicer


async def mark_serving(health_servicer: health.aio.HealthServicer, service_name: str) -> None:
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
