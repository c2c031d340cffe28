"""Faust wiring shared by the stream-processing services: app, topics, dead letters.

Records on mesh topics are protobuf bytes, so topics use the raw serializer and each agent
decodes with meshkernel.envelope; what cannot be decoded goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from opentelemetry.metrics import Observation

from meshkernel import topics as declared
from meshkernel.commit_guard import CommitGuard
from meshkernel.config import MeshSettings
from meshkernel.envelope import MalformedEvent, decode
from meshkernel.kafka_acl import stream_app_id
from meshkernel.kafka_security import kafka_security
from meshkernel.logs import logging_config
from meshkernel.metrics import meter
from meshkernel.private_files import private_folder
from meshkernel.shutdown import StopDeadline
from meshkernel.table_store import StoreKind, mark_clean_stop, open_local_store, store_url
from referralmesh.v1 import events_pb2

log = logging.getLogger(__name__)
SESSION_TIMEOUT_SECONDS = 10.0


def make_app(
    service: str,
    config: MeshSettings,
    *,
    web_port: int | None = None,
    web_host: str = "127.0.0.1",
    store: StoreKind = "memory",
    datadir: Path | None = None,
) -> faust.App:
    """`store="memory"`: tables rebuilt from their changelog topics at every start; `"rocksdb"`:
    kept in a local store under `datadir` as well (meshkernel/table_store.py)."""
    private_folder(config.state_dir)
    datadir = private_folder(datadir or config.state_dir / f"{config.topic_prefix}{service}-data")
    app = faust.App(
        stream_app_id(config.topic_prefix, service),  # also its consumer group: see kafka_acl
        broker=f"kafka://{config.kafka_bootstrap}",
        broker_credentials=kafka_security(config).faust_credentials(),
        store=store_url(store),
        topic_partitions=config.topic_partitions,
        topic_replication_factor=config.topic_replication,
        # Tables and offsets must survive restarts; Kafka keeps them, the worker keeps nothing.
        processing_guarantee="at_least_once",
        web_enabled=web_port is not None,
        web_port=web_port or 6066,
        web_bind=web_host,
        # Faust's own views would show table contents by case id (/table/...) and the
        # partition map (/router/...): off. The services serve only their health and metrics.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        stream_wait_empty=False,
        # A worker that died without leaving its group (SIGKILL, a lost node) holds its
        # partitions until its session times out; Faust's 60 s default stalls every case so long.
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        loghandlers=[],
    )
    if store == "rocksdb":
        open_local_store(datadir, Path(app.conf.tabledir))
    # Commits only up to handled events (meshkernel/commit_guard.py); decoded_events installs it.
    guard = app.commit_guard = CommitGuard()  # type: ignore[attr-defined]

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's signature types miss **kwargs
    async def forget_handled_offsets(sender: Any, revoked: Any, **kwargs: Any) -> None:
        guard.on_revoked(revoked)

    return app


def topic(app: faust.App, config: MeshSettings, spec: declared.TopicSpec) -> faust.TopicT:
    return app.topic(
        config.topic(spec.base_name),
        key_serializer="raw",
        value_serializer="raw",
        partitions=config.topic_partitions,
    )


def observe_consumer_lag(app: faust.App) -> None:
    """A gauge of how far this worker's consumers are behind, per input topic."""

    def measure(_options: Any) -> list[Observation]:
        monitor = app.monitor
        behind: dict[str, int] = {}
        for partition, end in dict(monitor.tp_end_offsets or {}).items():
            read = (monitor.tp_read_offsets or {}).get(partition)
            if read is not None:
                # The end offset is the next one to be written; read is the last one seen.
                behind[partition.topic] = behind.get(partition.topic, 0) + max(0, end - read - 1)
        return [Observation(count, {"messaging.destination.name": name}) for name, count in behind.items()]

    meter("referralmesh.streams").create_observable_gauge(
        "referralmesh.consumer.lag",
        callbacks=[measure],
        unit="{message}",
        description="records not yet processed, per input topic",
    )


class DeadLetters:
    """Sends a record that a consumer could not process to the dead-letter topic, with the reason."""

    def __init__(self, app: faust.App, config: MeshSettings, consumer: str):
        self.topic = topic(app, config, declared.DEAD_LETTERS)
        self.consumer = consumer
        self.counter = meter("referralmesh.streams").create_counter(
            "referralmesh.dead_letters",
            unit="{record}",
            description="records sent to the dead-letter topic",
        )

    async def send(self, event: faust.types.EventT[Any], reason: str) -> None:
        message = event.message
        letter = events_pb2.DeadLetter(
            source_topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reason,
            consumer=self.consumer,
            key=event.key or b"",
            value=event.value or b"",
        )
        letter.failed_at.FromDatetime(datetime.now(UTC))
        # Never log the payload: it may be anything, including what should not be there.
        log.warning(
            "dead-lettered a record",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "reason": reason,
                "consumer": self.consumer,
            },
        )
        await self.topic.send(key=event.key or b"", value=letter.SerializeToString())
        self.counter.add(1, {"messaging.destination.name": message.topic, "referralmesh.consumer": self.consumer})


async def decoded_events(
    stream: Any, dead_letters: DeadLetters, *, expect: str | None
) -> AsyncIterator[tuple[Any, events_pb2.EventEnvelope]]:
    """Yield (faust event, envelope) for every valid record; dead-letter the rest and go on.

    An event is acknowledged (its offset may then be committed) only when the caller asks for
    the next one, that is after the caller finished with it. Faust acknowledges in a `finally`,
    so on its own it also acknowledges an event whose handling raised or was cancelled (a worker
    stopping mid-event): the offset was committed without the event's outputs, and the event was
    never read again. Here such an event stays unacknowledged and is read again."""
    stream.enable_acks = False
    guard: CommitGuard | None = getattr(stream.app, "commit_guard", None)
    if guard is not None:
        guard.install(stream.app.consumer)
    async for event in stream.events():
        try:
            envelope = decode(event.value, expect=expect)
        except MalformedEvent as problem:
            await dead_letters.send(event, str(problem))
        else:
            yield event, envelope
        if guard is not None:
            guard.on_handled(event.message.tp, event.message.offset)
        await stream.ack(event)


class _BoundedStopWorker(faust.Worker):
    """A Faust worker whose stop, once a signal asks for it, ends within the stop budget."""

    stop_deadline: StopDeadline

    def _schedule_shutdown(self, signal: Any) -> None:
        self.stop_deadline.arm()
        super()._schedule_shutdown(signal)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        # The app (producer included) has stopped: a producer with nothing left unsent means
        # every table change reached its changelog, so the local store may be reused.
        if self.app.conf.store.scheme == "rocksdb" and _nothing_unsent(self.app):
            mark_clean_stop(Path(self.app.conf.datadir))


def _nothing_unsent(app: Any) -> bool:
    try:
        return bool(app.producer.buffer.size == 0)
    except Exception:
        return False


def _unfinished_stop(app: faust.App, config: MeshSettings) -> Callable[[], str]:
    def describe() -> str:
        buffered: int | str
        try:
            buffered = app.producer.buffer.size
        except Exception:
            buffered = "unknown"
        return (
            f"flushing to Kafka at {config.kafka_bootstrap} ({buffered} record(s) in the producer "
            "buffer) and committing offsets; records not committed are read again at the next "
            "start, and every receiver deduplicates by event id"
        )

    return describe


def run_worker(app: faust.App, config: MeshSettings, service: str | None = None) -> None:
    """Run a Faust worker in the foreground until SIGINT/SIGTERM, logging JSON lines; the stop
    ends within the stop budget (meshkernel.shutdown) even when the broker does not answer."""
    name = service or app.conf.id.removeprefix(config.topic_prefix).removeprefix("referral-mesh-")
    worker = _BoundedStopWorker(
        app,
        loglevel=config.log_level.lower(),
        quiet=True,
        redirect_stdouts=False,
        logging_config=logging_config(name, config.log_level),
    )
    worker.stop_deadline = StopDeadline(name, _unfinished_stop(app, config))
    worker.execute_from_commandline()
