"""Entry point of the region service: `mesh serve region`."""
from __future__ import annotations

from meshkernel.config import settings
from meshkernel.kafka import prepare_kafka
from meshkernel.logs import setup_logging
from meshkernel.streams import run_worker
from meshkernel.tracing import setup_tracing
from services.region.adapters.streams import SERVICE, build_app
from services.region.decide import policy_decider


def run() -> None:
    config = settings()
    setup_logging(SERVICE, config.log_level)
    setup_tracing(SERVICE, environment=config.environment)
    decide, known_services = policy_decider(config.region_policy_path)
    prepare_kafka(config, SERVICE)
    run_worker(build_app(config, decide, known_services), config)
