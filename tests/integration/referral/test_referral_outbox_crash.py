"""Killing the service between commit and publish loses nothing.

The relay is held back (MESH_OUTBOX_RELAY_START_DELAY), a referral commits, the process is
killed with SIGKILL, and after a restart the event leaves exactly as it was committed:
same event id, same bytes. A crash after publish but before the row is marked sends it
again; receivers recognise the duplicate by its event id.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer
from sqlalchemy import select, update

from meshcli.client import ReferralClient
from meshcli.supervisor import Stack, free_port, wait_for
from meshkernel.envelope import decode
from meshkernel.kafka import prepare_kafka
from meshkernel.topics import REFERRAL_EVENTS
from services.referral.adapters.outbox_relay import OutboxRelay
from services.referral.adapters.storage import ReferralStore, make_engine
from services.referral.adapters.tables import outbox
from tests.conftest import settings_from
from tests.integration.referral.referral_db_kit import SENDER, fresh_database
from tests.integration.referral.test_referral_grpc import request_for

pytestmark = pytest.mark.kafka


def _records(config, case_id: str, wanted: int, timeout: float = 60.0) -> list:
    consumer = KafkaConsumer(
        config.topic(REFERRAL_EVENTS.base_name),
        bootstrap_servers=config.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"crash-{uuid.uuid4()}",
        consumer_timeout_ms=500,
    )
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < wanted:
            for records in consumer.poll(timeout_ms=500).values():
                found.extend(record for record in records if record.key == case_id.encode())
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_service_publishes_the_committed_event_after_restart(
    backend, kafka_bootstrap, tmp_path, postgres_url_lazy
):
    databases = fresh_database(backend, tmp_path, postgres_url_lazy)
    database_url = next(databases)
    env = dict(os.environ)
    env.update(
        {
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "MESH_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
            "DATABASE_URL": database_url,
            "MESH_STATE_DIR": str(tmp_path / "state"),
            "MESH_REFERRAL_GRPC_ADDRESS": f"127.0.0.1:{free_port()}",
            "MESH_OUTBOX_RELAY_START_DELAY": "600",
        }
    )
    for key in [key for key in env if key.startswith("MESH_TLS_")]:
        del env[key]
    config = settings_from(env)
    prepare_kafka(config, "outbox-crash-test", give_up_after=60)
    stack = Stack(env=env, log_dir=tmp_path / "logs")
    engine = make_engine(database_url)
    try:
        stack.start("referral")
        client = ReferralClient(config.referral_grpc_address, SENDER)
        client.wait_until_ready(timeout=60)
        created = client.create(request_for())
        client.close()

        with engine.connect() as connection:
            committed = connection.execute(select(outbox.c.event_id, outbox.c.value, outbox.c.published_at)).all()
        assert len(committed) == 1 and committed[0].published_at is None
        stack.kill("referral")  # SIGKILL: no shutdown hook runs, nothing is flushed

        stack.env = {**env, "MESH_OUTBOX_RELAY_START_DELAY": "0"}
        stack.start("referral")
        records = _records(config, created.case_id, wanted=1)
        assert len(records) == 1
        assert records[0].value == committed[0].value  # exactly as committed
        assert dict(records[0].headers)["event-id"].decode() == committed[0].event_id
        assert decode(records[0].value).referral.referral_id == created.referral_id

        def marked():
            with engine.connect() as connection:
                return connection.execute(select(outbox.c.published_at)).scalar_one() is not None

        assert wait_for(marked, timeout=20)
        stack.stop("referral")

        # Published but not marked (a crash in between): the row goes out again, same id.
        with engine.begin() as connection:
            connection.execute(update(outbox).values(published_at=None))

        async def relay_once():
            relay = OutboxRelay(ReferralStore(engine), kafka_bootstrap, start_delay=0)
            await relay.start()
            try:
                return await relay.publish_pending()
            finally:
                await relay.stop()

        assert asyncio.run(relay_once()) == 1
        records = _records(config, created.case_id, wanted=2)
        assert len(records) == 2
        # A receiver deduplicating by event id sees the event once.
        assert len({dict(record.headers)["event-id"] for record in records}) == 1
        assert len({decode(record.value).event_id for record in records}) == 1
        assert records[0].value == records[1].value
    finally:
        stack.stop_all()
        engine.dispose()
        next(databases, None)
