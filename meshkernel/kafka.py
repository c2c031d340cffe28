"""Reaching Kafka: wait with backoff and one clear line per try, never a stack-trace loop."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from meshkernel.config import MeshSettings
from meshkernel.topics import ensure_topics

log = logging.getLogger(__name__)


def _quiet_client_logs() -> None:
    # kafka-python logs every failed connection with a traceback; our own line says it once.
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def connect_admin(
    config: MeshSettings,
    service: str,
    *,
    first_delay: float = 1.0,
    max_delay: float = 30.0,
    give_up_after: float | None = None,
    attempt_timeout: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> KafkaAdminClient:
    """Return an admin client once Kafka answers; retry with exponential backoff until then."""
    _quiet_client_logs()
    delay = first_delay
    started = clock()
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=config.kafka_bootstrap,
                client_id=f"{service}-admin",
                request_timeout_ms=10_000,
                bootstrap_timeout_ms=int(attempt_timeout * 1000),
            )
        except (KafkaError, OSError) as error:
            waited = clock() - started
            if give_up_after is not None and waited + delay > give_up_after:
                raise ConnectionError(
                    f"{service}: cannot reach Kafka at {config.kafka_bootstrap}: {type(error).__name__}"
                ) from None
            log.warning(
                "%s: cannot reach Kafka at %s (%s); retrying in %.0fs",
                service, config.kafka_bootstrap, type(error).__name__, delay,
            )
            sleep(delay)
            delay = min(delay * 2, max_delay)


def prepare_kafka(config: MeshSettings, service: str, **backoff) -> None:
    """Wait until Kafka answers and make sure every mesh topic exists."""
    admin = connect_admin(config, service, **backoff)
    try:
        ensure_topics(admin, config)
    finally:
        admin.close()
