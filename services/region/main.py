"""Entry point of the region service: `mesh serve region`.

One process runs the Faust worker (referral events, overrides and alert actions in, assignments
and escalations out, with the stall detector's deadline timer) and the RegionService gRPC server
on the worker's event loop; SIGINT/SIGTERM stop both.
"""

from __future__ import annotations

from meshkernel.config import settings
from meshkernel.kafka import prepare_kafka
from meshkernel.logs import setup_logging
from meshkernel.metrics import setup_metrics
from meshkernel.safety import refuse_unsafe_start
from meshkernel.streams import run_worker
from meshkernel.tracing import setup_tracing
from services.region.adapters.assigning import SERVICE, load_agency_regions
from services.region.adapters.streams import build_app
from services.region.decide import load_resolver
from services.region.domain.escalation import load_escalation_policy


def run() -> None:
    config = settings()
    refuse_unsafe_start(config, SERVICE)  # before Kafka or a database is touched
    setup_logging(SERVICE, config.log_level)
    setup_tracing(SERVICE, environment=config.environment)
    setup_metrics(SERVICE, config.region_metrics_port, address=config.metrics_host)
    resolver = load_resolver(config.region_policy_path)
    agency_regions = load_agency_regions(config.agency_directory_path)
    escalation_policy = load_escalation_policy(config.escalation_policy_path)  # refuse a bad file at start
    prepare_kafka(config, SERVICE)
    run_worker(build_app(config, resolver, agency_regions, escalation_policy=escalation_policy), config)
