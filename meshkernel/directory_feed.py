"""Follow the agency directory's changes (`mesh.directory.v1`) in every replica.

The referral service is the directory's system of record; it publishes each change an operator
makes (AgencyDirectoryChanged, keyed by agency id, compacted topic). The region and notify
services start from the shipped directory file and apply these changes on top, so an agency
added or suspended reaches them without a restart.

Every replica needs the whole directory, not a share of it, so this is no consumer group: one
consumer per process, all partitions assigned, read from the beginning at every start (the topic
is compacted: the latest change per agency). Nothing is committed, so nothing is dead-lettered:
a record that cannot be read is logged by reason and skipped; the referral service is the
topic's only writer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from meshkernel import envelope as envelopes
from meshkernel.config import MeshSettings
from meshkernel.kafka_security import kafka_security
from meshkernel.topics import DIRECTORY_EVENTS
from referralmesh.v1 import events_pb2

log = logging.getLogger(__name__)

DirectoryListener = Callable[[events_pb2.AgencyDirectoryChanged], None]
RETRY_SECONDS = 5.0


def apply_record(raw: bytes | None, listener: DirectoryListener) -> bool:
    """Decode one record and hand its change to `listener`; False (logged) if unreadable."""
    try:
        envelope = envelopes.decode(raw, expect="agency_directory_changed")
    except envelopes.MalformedEvent as problem:
        log.warning("directory change skipped: %s", problem)
        return False
    change = envelope.agency_directory_changed
    if not change.agency.agency_id:
        log.warning("directory change skipped: no agency id")
        return False
    listener(change)
    return True


class DirectoryFeed:
    def __init__(self, config: MeshSettings, listener: DirectoryListener, *, client_id: str):
        self.config = config
        self.listener = listener
        self.client_id = client_id
        self.applied = 0

    async def run(self) -> None:
        """Until cancelled; reconnects after a broker failure and reads from the beginning again
        (applying a change twice leaves the same directory)."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("directory feed interrupted (%s); retrying", type(error).__name__)
                await asyncio.sleep(RETRY_SECONDS)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer: Any = AIOKafkaConsumer(
            self.config.topic(DIRECTORY_EVENTS.base_name),
            bootstrap_servers=self.config.kafka_bootstrap,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **kafka_security(self.config).client_options(),
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batches.values():
                    for record in records:
                        if apply_record(record.value, self.listener):
                            self.applied += 1
        finally:
            await consumer.stop()
