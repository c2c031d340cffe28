"""Entry point of the notify service: `mesh serve notify`.

One process: the Faust worker (assignments, referral events, escalations in; notifications
out), the coordinator dashboard (HTTP), the NotifyService gRPC server and the delivery loop.
"""

from __future__ import annotations

from meshkernel.config import settings
from meshkernel.kafka import prepare_kafka
from meshkernel.logs import setup_logging
from meshkernel.metrics import setup_metrics
from meshkernel.safety import refuse_unsafe_start
from meshkernel.streams import run_worker
from meshkernel.tracing import setup_tracing
from services.notify.adapters.dashboard import web_tls_problem
from services.notify.adapters.kek_file import key_encryption_key_problem
from services.notify.adapters.oidc import oidc_problem
from services.notify.adapters.streams import SERVICE, build_app
from services.notify.paths import database_problem


def run() -> None:
    config = settings()
    # before Kafka or a database is touched
    refuse_unsafe_start(
        config, SERVICE, service_needs=(key_encryption_key_problem, web_tls_problem, database_problem, oidc_problem)
    )
    setup_logging(SERVICE, config.log_level)
    setup_tracing(SERVICE, environment=config.environment)
    setup_metrics(SERVICE, config.notify_metrics_port, address=config.metrics_host)
    prepare_kafka(config, SERVICE)
    run_worker(build_app(config), config)
