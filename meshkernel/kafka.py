"""Reaching Kafka: wait with backoff and one clear line per try, never a stack-trace loop.

Refused credentials or missing permissions are not worth waiting for: they stop the start with
one line that names the principal (meshkernel/kafka_security.py), never the password.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed
from kafka.admin import KafkaAdminClient
from kafka.errors import AuthorizationError, KafkaError, SaslAuthenticationFailedError

from meshkernel.config import MeshSettings
from meshkernel.kafka_security import KafkaSecurity, kafka_security
from meshkernel.topics import ensure_topics

log = logging.getLogger(__name__)


def _quiet_client_logs() -> None:
    # kafka-python logs every failed connection with a traceback; our own line says it once.
    for name in ("kafka", "aiokafka"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class KafkaAccessRefused(ConnectionError):
    """Kafka answered and said no: wrong credentials, or a permission the principal lacks."""


def credentials_refused(config: MeshSettings, security: KafkaSecurity, timeout: float = 10.0) -> bool:
    """Whether the first bootstrap broker refuses these SASL credentials.

    kafka-python's bootstrap reports refused credentials as a timeout, like an absent broker;
    one direct aiokafka connection, which raises the broker's answer, tells the two apart.
    """
    if security.protocol != "SASL_SSL":
        return False
    host, _, port = config.kafka_bootstrap.split(",")[0].strip().rpartition(":")

    async def connect() -> None:
        connection = await create_conn(
            host.strip("[]"), int(port), request_timeout_ms=int(timeout * 1000), **security.client_options()
        )
        connection.close()

    try:
        asyncio.run(asyncio.wait_for(connect(), timeout))
    except SaslAuthenticationFailed:
        return True
    except Exception:  # unreachable, TLS failure, timeout: not a verdict on the credentials
        return False
    return False


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
    security = kafka_security(config)  # a settings problem is no reason to wait: it raises now
    delay = first_delay
    started = clock()
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=config.kafka_bootstrap,
                client_id=f"{service}-admin",
                request_timeout_ms=10_000,
                bootstrap_timeout_ms=int(attempt_timeout * 1000),
                **security.client_options(),
            )
        except (KafkaError, OSError) as error:
            if isinstance(error, SaslAuthenticationFailedError) or credentials_refused(config, security):
                raise KafkaAccessRefused(
                    f"Kafka at {config.kafka_bootstrap} refused the credentials of {security.principal}"
                ) from None
            waited = clock() - started
            if give_up_after is not None and waited + delay > give_up_after:
                raise ConnectionError(
                    f"{service}: cannot reach Kafka at {config.kafka_bootstrap}: {type(error).__name__}"
                ) from None
            log.warning(
                "%s: cannot reach Kafka at %s (%s); retrying in %.0fs",
                service,
                config.kafka_bootstrap,
                type(error).__name__,
                delay,
            )
            sleep(delay)
            delay = min(delay * 2, max_delay)


def prepare_kafka(config: MeshSettings, service: str, **backoff: Any) -> None:
    """Wait until Kafka answers and make sure every mesh topic exists."""
    admin = connect_admin(config, service, **backoff)
    try:
        ensure_topics(admin, config)
    except AuthorizationError as error:
        raise KafkaAccessRefused(
            f"{kafka_security(config).principal} may not create a missing mesh topic "
            f"({type(error).__name__}); create the topics and ACLs first: mesh kafka provision"
        ) from None
    finally:
        admin.close()
