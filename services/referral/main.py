"""Entry point of the referral service: `mesh serve referral`.

One process runs the gRPC API and the outbox relay; SIGINT/SIGTERM stop both cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from meshkernel.config import MeshSettings, settings
from meshkernel.grpc_health import add_health_and_reflection
from meshkernel.grpc_server import bind, new_server
from meshkernel.health import KafkaProbe, ServiceHealth
from meshkernel.kafka import prepare_kafka
from meshkernel.kafka_security import kafka_security
from meshkernel.logs import setup_logging
from meshkernel.metrics import setup_metrics
from meshkernel.retention import run_periodically
from meshkernel.safety import refuse_unsafe_start
from meshkernel.shutdown import StopDeadline
from meshkernel.tls import AGENCY, OPERATOR, make_verifier, server_tls_from
from meshkernel.tracing import setup_tracing
from referralmesh.v1 import (
    agency_admin_service_pb2,
    agency_admin_service_pb2_grpc,
    referral_service_pb2,
    referral_service_pb2_grpc,
)
from services.referral.adapters import identity
from services.referral.adapters.agency_admin_api import AgencyAdminApi
from services.referral.adapters.agency_store import AgencyStore
from services.referral.adapters.grpc_api import ReferralApi
from services.referral.adapters.live_directory import LiveDirectory
from services.referral.adapters.metrics import ReferralMetrics
from services.referral.adapters.outbox_relay import OutboxRelay
from services.referral.adapters.storage import ReferralStore, make_engine, migrate
from services.referral.agency_admin import AgencyAdmin
from services.referral.application import ReferralUseCases
from services.referral.domain import load_directory

SERVICE = "referral"
log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 256 * 1024  # a referral is small; anything larger is refused


# Worker threads for the blocking use cases (asyncio.to_thread). The default, cpus + 4, leaves
# requests queueing while threads wait on the database; keep it below the connection pool.
# SQLite has one writer at a time, so more threads only queue; PostgreSQL commits in parallel.
def _worker_threads(database_url: str) -> int:
    default = (os.cpu_count() or 1) + 4 if database_url.startswith("sqlite") else 24
    return int(os.environ.get("MESH_REFERRAL_WORKER_THREADS", default))


async def serve(config: MeshSettings) -> None:
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=_worker_threads(config.database_url), thread_name_prefix="referral-use-case")
    )
    engine = make_engine(config.database_url)
    migrate(engine)
    store = ReferralStore(engine)
    # The directory lives in the database; the shipped file seeds it on the first start only.
    shipped = load_directory(config.agency_directory_path)
    agencies = AgencyStore(store, shipped.regions)
    if seeded := agencies.seed_if_empty(shipped):
        log.info("agency directory seeded from the shipped file", extra={"agencies": seeded})
    directory = LiveDirectory(agencies)
    await asyncio.to_thread(prepare_kafka, config, SERVICE)

    relay = OutboxRelay(store, config.kafka_bootstrap, client_options=kafka_security(config).client_options())
    await relay.start()
    use_cases = ReferralUseCases(store, config, directory)
    loop = asyncio.get_running_loop()
    use_cases.on_commit = lambda: loop.call_soon_threadsafe(relay.wake)

    server_tls = server_tls_from(config)  # mutual TLS when its files are configured
    verifier = make_verifier(server_tls, directory) if server_tls is not None else None
    identity.configure(verifier)
    # Agencies call the ReferralService, operators the AgencyAdminService (each refuses the other).
    server = new_server(
        config, max_receive_bytes=MAX_MESSAGE_BYTES, verifier=verifier, roles=frozenset({AGENCY, OPERATOR})
    )
    referral_service_pb2_grpc.add_ReferralServiceServicer_to_server(
        ReferralApi(
            use_cases,
            allow_dev_identity=config.development_identities,
            metrics=ReferralMetrics(store),
            streams_per_agency=config.watch_streams_per_caller,
            stream_seconds=config.watch_stream_seconds,
        ),
        server,
    )
    admin = AgencyAdmin(agencies, config, on_commit=lambda: loop.call_soon_threadsafe(relay.wake))
    agency_admin_service_pb2_grpc.add_AgencyAdminServiceServicer_to_server(
        AgencyAdminApi(admin, allow_dev_identity=config.development_identities), server
    )
    service_name = referral_service_pb2.DESCRIPTOR.services_by_name["ReferralService"].full_name
    admin_name = agency_admin_service_pb2.DESCRIPTOR.services_by_name["AgencyAdminService"].full_name
    health_servicer = add_health_and_reflection(server, service_name, admin_name)
    bind(server, config.referral_grpc_address, server_tls)
    await server.start()
    # SERVING only while Kafka answers (meshkernel/health.py); "liveness" apart from it.
    readiness = ServiceHealth((service_name,), kafka=KafkaProbe(config))
    await readiness.attach(health_servicer)
    readiness_task = asyncio.create_task(readiness.run(), name="readiness")
    log.info("referral service listening", extra={"address": config.referral_grpc_address})

    relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
    sweeper_task = asyncio.create_task(
        sweep_expired_consents(use_cases, config.consent_sweep_seconds), name="consent-expiry"
    )
    # The access log's retention purge runs by itself (ACCESS_LOG_RETENTION_DAYS, ten years).
    retention_task = asyncio.create_task(
        run_periodically(
            "access_log", lambda: store.purge_expired_access_entries(datetime.now(UTC)), config.retention_sweep_seconds
        ),
        name="access-log-retention",
    )
    # Published outbox rows leave after MESH_OUTBOX_RETENTION_DAYS (they hold facts and contacts).
    outbox_retention = timedelta(days=config.outbox_retention_days)
    outbox_retention_task = asyncio.create_task(
        run_periodically(
            "referral_outbox",
            lambda: store.prune_outbox(datetime.now(UTC), outbox_retention),
            config.retention_sweep_seconds,
        ),
        name="outbox-retention",
    )
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    # From here the stop ends within the stop budget, broker or not (meshkernel.shutdown).
    deadline = StopDeadline(SERVICE, lambda: _outbox_left(store))
    deadline.arm()
    log.info("referral service stopping")
    await readiness.stop()
    await server.stop(grace=3)
    for task in (readiness_task, outbox_retention_task, retention_task, sweeper_task, relay_task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:  # what committed before the stop leaves now, if the broker answers in time
        await asyncio.wait_for(relay.publish_pending(), timeout=2.0)
    except Exception as error:
        log.warning("outbox not flushed at stop (%s): %s", type(error).__name__, _outbox_left(store))
    try:
        await asyncio.wait_for(relay.stop(), timeout=1.5)
    except Exception as error:
        log.warning("Kafka producer did not close cleanly (%s)", type(error).__name__)
    engine.dispose()
    deadline.disarm()


def _outbox_left(store: ReferralStore) -> str:
    try:
        backlog = store.outbox_backlog()
    except Exception as error:
        return f"outbox backlog unknown ({type(error).__name__})"
    return f"{backlog} outbox row(s) not yet published; they stay in the outbox and are published at the next start"


async def sweep_expired_consents(use_cases: ReferralUseCases, every_seconds: float) -> None:
    """Consent that ran out closes its open referrals (CONSENT_EXPIRED), checked periodically."""
    while True:
        try:
            expired = await asyncio.to_thread(use_cases.expire_consents)
            if expired:
                log.info("closed referrals whose consent ran out", extra={"count": len(expired)})
        except Exception as error:  # the next sweep tries again; serving goes on
            log.warning("consent sweep failed: %s", type(error).__name__)
        await asyncio.sleep(every_seconds)


def run() -> None:
    config = settings()
    refuse_unsafe_start(config, SERVICE)  # before Kafka or a database is touched
    setup_logging(SERVICE, config.log_level)
    setup_tracing(SERVICE, environment=config.environment)
    setup_metrics(SERVICE, config.referral_metrics_port, address=config.metrics_host)
    asyncio.run(serve(config))
