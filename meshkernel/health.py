"""Readiness and liveness of a service, for Kubernetes probes (and anyone else who asks).

- **Liveness**: the process's event loop runs. Every answer is made on the event loop, so an
  answer at all is the proof; a stuck loop answers nothing and the probe times out.
- **Readiness**: every check holds: Kafka answers (probed every `interval` seconds with a
  metadata request, with the service's own Kafka security settings), and what the service adds:
  a Faust worker has its partitions assigned, no rebalance under way and its tables recovered.

Published on the gRPC health service (`grpc.health.v1`): the overall status `""`, the API's
full name and `readiness` follow readiness; `liveness` is SERVING until the stop begins. The
Faust workers also answer HTTP `GET /ready` and `GET /live` (200 or 503, JSON naming each
check). A stop turns everything NOT_SERVING at once, so traffic leaves before the server goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from grpc_health.v1 import health_pb2

from meshkernel.config import MeshSettings
from meshkernel.kafka_security import kafka_security

log = logging.getLogger(__name__)

READINESS = "readiness"
LIVENESS = "liveness"
PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 3.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class KafkaProbe:
    """Whether the brokers answer a metadata request, with this service's credentials."""

    def __init__(self, config: MeshSettings, timeout: float = PROBE_TIMEOUT_SECONDS):
        self.bootstrap = config.kafka_bootstrap
        self.options = kafka_security(config).client_options()
        self.timeout = timeout
        self._client: AIOKafkaClient | None = None

    async def reachable(self) -> bool:
        try:
            await asyncio.wait_for(self._metadata(), self.timeout)
            return True
        except Exception as problem:  # any failure means "not reachable now"; the next probe retries
            log.debug("kafka probe failed", extra={"bootstrap": self.bootstrap, "error": type(problem).__name__})
            await self.close()
            return False

    async def _metadata(self) -> None:
        if self._client is None:
            client = AIOKafkaClient(
                bootstrap_servers=self.bootstrap, client_id="mesh-health", request_timeout_ms=3000, **self.options
            )
            self._client = client
            await client.bootstrap()
            return
        # A metadata request that names no topic: the brokers answer with the cluster's brokers
        # only. Asking for every topic costs the probing service CPU in proportion to the
        # cluster's topics, every interval (decoding thousands of topics was most of an idle
        # notify worker's CPU on a shared broker; benchmarks/README.md, issue 13).
        node = self._client.get_random_node()
        if node is None:
            raise KafkaError("no broker known")
        await self._client.send(node, MetadataRequest([]))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


class ServiceHealth:
    """The readiness checks of one service, and their publication on gRPC health."""

    def __init__(
        self,
        service_names: tuple[str, ...],
        *,
        kafka: KafkaProbe | None = None,
        checks: Mapping[str, Callable[[], bool]] | None = None,
        interval: float = PROBE_INTERVAL_SECONDS,
    ):
        self.service_names = service_names
        self.kafka = kafka
        self.extra_checks = dict(checks or {})
        self.interval = interval
        self.kafka_reachable = kafka is None
        self.stopping = False
        self._servicers: list[Any] = []
        self._published: bool | None = None

    async def attach(self, servicer: Any) -> None:
        """Publish on this gRPC health servicer too, from now on (its overall status starts as
        SERVING in grpcio: overwritten here at once)."""
        self._servicers.append(servicer)
        await self._publish_to(servicer, self.ready)

    def checks(self) -> dict[str, bool]:
        results = {"kafka": self.kafka_reachable} if self.kafka is not None else {}
        for name, check in self.extra_checks.items():
            try:
                results[name] = bool(check())
            except Exception:
                results[name] = False
        return results

    @property
    def ready(self) -> bool:
        return not self.stopping and all(self.checks().values())

    def report(self) -> dict[str, Any]:
        return {"ready": self.ready, "stopping": self.stopping, "checks": self.checks()}

    async def refresh(self) -> bool:
        if self.kafka is not None and not self.stopping:
            self.kafka_reachable = await self.kafka.reachable()
        ready = self.ready
        if ready != self._published:
            await self._publish(ready)
            if self._published is not None or not ready:
                log.info("readiness changed", extra={"ready": ready, "checks": self.checks()})
            self._published = ready
        return ready

    async def _publish(self, ready: bool) -> None:
        for servicer in self._servicers:
            await self._publish_to(servicer, ready)

    async def _publish_to(self, servicer: Any, ready: bool) -> None:
        status = SERVING if ready else NOT_SERVING
        for name in ("", *self.service_names, READINESS):
            await servicer.set(name, status)
        await servicer.set(LIVENESS, NOT_SERVING if self.stopping else SERVING)

    async def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Refresh until stopped (or cancelled)."""
        try:
            while not should_stop() and not self.stopping:
                try:
                    await self.refresh()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("readiness refresh failed")
                await asyncio.sleep(self.interval)
        finally:
            if self.kafka is not None:
                await self.kafka.close()

    async def stop(self) -> None:
        """The stop begins: not ready, not alive, for every servicer at once."""
        self.stopping = True
        for servicer in self._servicers:
            with contextlib.suppress(Exception):
                await servicer.enter_graceful_shutdown()
        if self.kafka is not None:
            await self.kafka.close()


def faust_worker_checks(app: Any, tables_recovered: Callable[[], bool] | None = None) -> dict[str, Callable[[], bool]]:
    """A Faust worker is ready to work when it has partitions, no rebalance is under way, and
    (if it has tables) they are recovered."""

    def partitions_assigned() -> bool:
        return bool(app.consumer.assignment()) and not app.rebalancing

    checks: dict[str, Callable[[], bool]] = {"partitions_assigned": partitions_assigned}
    checks["tables_recovered"] = tables_recovered or (
        lambda: app.tables.recovery.completed.is_set() and not app.tables.recovery.in_recovery
    )
    return checks


def faust_health_pages(app: Any, health: ServiceHealth) -> None:
    """HTTP GET /ready and /live on a Faust worker's web server."""

    async def ready(web: Any, request: Any) -> Any:
        report = health.report()
        return web.json(report, status=200 if report["ready"] else 503)

    async def live(web: Any, request: Any) -> Any:
        return web.json({"live": not health.stopping}, status=503 if health.stopping else 200)

    app.page("/ready")(ready)
    app.page("/live")(live)


def with_probes(web_app: Any, health: ServiceHealth) -> Any:
    """HTTP GET /ready and /live on an aiohttp application (the notify worker's web server)."""
    from aiohttp import web

    async def ready(request: web.Request) -> web.Response:
        report = health.report()
        return web.json_response(report, status=200 if report["ready"] else 503)

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"live": not health.stopping}, status=503 if health.stopping else 200)

    web_app.router.add_get("/ready", ready)
    web_app.router.add_get("/live", live)
    return web_app
