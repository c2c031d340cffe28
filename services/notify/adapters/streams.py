"""The notify service's Faust worker: agents, and the servers that run on the worker's loop.

Agents:
- assignments -> case record (regions, agencies, languages) and notifications (routing.py);
- referral events -> the case's sealed contact (ciphertext only) and languages; a client
  notification that waited for the contact is routed then;
- escalations -> alert records for coordinators, and agency reminders.
Every notification is recorded once (by id) in the store, from where the dispatcher delivers it
(webhook, client channel), and emitted as a NotificationEvent at least once, always under its one
id: a redelivered input sends the recorded event again (see `emit`).

Services started with the worker: the dashboard (aiohttp on notify_web_port), the NotifyService
gRPC server (notify_grpc_address) and the delivery loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import faust
import mode

from meshkernel import envelope as envelopes
from meshkernel import topics as declared
from meshkernel import tracing
from meshkernel.commit_guard import CommitGuard
from meshkernel.config import MeshSettings
from meshkernel.health import KafkaProbe, ServiceHealth, faust_worker_checks, with_probes
from meshkernel.retention import run_periodically
from meshkernel.streams import DeadLetters, make_app, observe_consumer_lag, topic
from meshkernel.tls import make_verifier, server_tls_from
from referencedata.agencies import load_directory
from referralmesh.v1 import events_pb2
from services.notify.adapters import passwords
from services.notify.adapters.action_relay import ActionRelay
from services.notify.adapters.case_facts import CaseFacts
from services.notify.adapters.channel_setup import client_channels, send_policy_from
from services.notify.adapters.client_messages import ClientMessages
from services.notify.adapters.dashboard import Dashboard, LocalPasswords, dashboard_tls, start_http
from services.notify.adapters.directory import Names, follow_directory, load_names
from services.notify.adapters.dispatch import Dispatcher
from services.notify.adapters.grpc_api import SERVICE_NAME as NOTIFY_API
from services.notify.adapters.grpc_api import NotifyApi, build_server
from services.notify.adapters.intake import Intake, Outgoing, assignment_from, notification_event
from services.notify.adapters.kek_file import kek_from_settings
from services.notify.adapters.keystore import KeyStore, KeyTable
from services.notify.adapters.oidc_dashboard import offer_identity_provider
from services.notify.adapters.shared_throttle import SharedSignInThrottle
from services.notify.adapters.store import NotifyStore, PendingEvent
from services.notify.adapters.webhooks import WebhookSender, load_webhooks
from services.notify.application import AlertDesk
from services.notify.domain.routing import Notification
from services.notify.paths import NotifyPaths

log = logging.getLogger(__name__)
SERVICE = "notify"


# Input events per batch, and how long a batch waits to fill: one store transaction and one
# round of sends serve the batch. A lone event waits at most BATCH_WITHIN seconds; under load
# the batches fill and the per-event cost (thread hand-off, commit, fsync) is shared.
BATCH_SIZE = 500
BATCH_WITHIN = 0.01

_assignment_from = assignment_from  # the routing input of an AssignmentEvent (tests build notifications with it)


def notification_envelope(
    notification: Notification, *, case_id: str, referral_id: str, caused_by: str, responsible_region: str
) -> bytes:
    """The NotificationEvent of one notification, under the notification's id (derived from its
    cause). These bytes are recorded with the delivery and are what a redelivery sends again."""
    return envelopes.encode(
        notification_event(
            notification,
            case_id=case_id,
            referral_id=referral_id,
            caused_by=caused_by,
            responsible_region=responsible_region,
        )
    )


async def decoded_batches(
    stream: Any, dead_letters: DeadLetters, *, expect: str
) -> AsyncIterator[list[tuple[Any, events_pb2.EventEnvelope]]]:
    """Batches of (faust event, envelope) of valid records; the rest go to the dead letters.

    As `meshkernel.streams.decoded_events` does for single events: a batch's events are
    acknowledged (their offsets may then be committed, up to the commit guard's cap) only when
    the caller asks for the next batch, that is after it handled this one (and, as before every
    commit, the producer flushed). Faust's `take_events` acknowledges in a `finally`, also a batch
    whose handling raised or was cancelled; its acknowledgement is turned off here, so such a
    batch stays unacknowledged and is read again."""
    guard: CommitGuard | None = getattr(stream.app, "commit_guard", None)
    if guard is not None:
        guard.install(stream.app.consumer)
    acknowledge = type(stream).ack
    stream.ack = _acknowledged_after_handling
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN):
        batch = []
        for event in events:
            try:
                batch.append((event, envelopes.decode(event.value, expect=expect)))
            except envelopes.MalformedEvent as problem:
                await dead_letters.send(event, str(problem))
        if batch:
            yield batch
        for event in events:
            if guard is not None:
                guard.on_handled(event.message.tp, event.message.offset)
            await acknowledge(stream, event)


async def _acknowledged_after_handling(_event: Any) -> bool:
    return False  # decoded_batches acknowledges once the batch was handled


@dataclass
class NotifyRuntime:
    """Everything the worker's agents and servers share."""

    config: MeshSettings
    store: NotifyStore
    keys: KeyStore
    names: Names
    desk: AlertDesk
    dispatcher: Dispatcher | None = None

    @classmethod
    def create(cls, config: MeshSettings) -> NotifyRuntime:
        paths = NotifyPaths.of(config)
        store = NotifyStore.open(paths.database_url)
        names = load_names(config)
        kek = kek_from_settings(paths.kek_file, local_mode=config.local_mode)
        # Shared by every replica on PostgreSQL: the wrapped keys in the same database; the
        # embedded SQLite store keeps them in a file of their own.
        key_storage = KeyTable(store.engine) if store.postgres else paths.key_store
        runtime = cls(
            config=config,
            store=store,
            keys=KeyStore(key_storage, kek),
            names=names,
            desk=AlertDesk(store, names.regions),
        )
        # Demo accounts share one password: local mode only (outside it they cannot sign in either).
        if config.local_mode and config.notify_demo_coordinators:
            seed_demo_coordinators(
                store, names.regions, passwords.demo_password(paths.demo_password_file, config.notify_demo_password)
            )
        return runtime


def seed_demo_coordinators(store: NotifyStore, regions: dict[str, str], password: str) -> None:
    hashed = None
    checked: dict[str, bool] = {}  # stored hash -> matches; the demo accounts share one hash
    for username, scope in passwords.demo_usernames(regions).items():
        row = store.coordinator(username)
        if row and row["demo"] and not row["disabled"]:
            stored = row["password_hash"]
            if stored not in checked:
                checked[stored] = passwords.check_password(password, stored)
            if checked[stored]:
                continue
        if row and not row["demo"]:
            continue  # an operator's account of that name stays as the operator set it
        hashed = hashed or passwords.hash_password(password)
        name = "National coordinator (demo)" if scope == "NATIONAL" else f"Coordinator {regions[scope]} (demo)"
        store.put_coordinator(username, hashed, scope, display_name=name, organisation=scope, demo=True)


def build_app(config: MeshSettings, runtime: NotifyRuntime | None = None) -> faust.App:
    runtime = runtime or NotifyRuntime.create(config)
    store, desk, keys = runtime.store, runtime.desk, runtime.keys
    facts = CaseFacts(store.engine)  # the case view's timeline and the insight page's projection
    app = make_app(SERVICE, config, web_port=None)  # our own aiohttp server serves HTTP
    observe_consumer_lag(app)
    app.directory_feed = follow_directory(app, config, runtime.names)  # type: ignore[attr-defined]
    assignments = topic(app, config, declared.ASSIGNMENTS)
    escalations = topic(app, config, declared.ESCALATIONS)
    referral_events = topic(app, config, declared.REFERRAL_EVENTS)
    notifications = topic(app, config, declared.NOTIFICATIONS)
    overrides = topic(app, config, declared.OVERRIDES)
    dead_letters = DeadLetters(app, config, consumer=SERVICE)
    span_tracer = tracing.tracer(__name__)

    action_topics = {declared.OVERRIDES.base_name: overrides}

    async def publish_action_event(event: PendingEvent) -> None:
        outgoing = envelopes.decode(event.envelope)
        sent = await action_topics[event.topic].send(
            key=event.key, value=event.envelope, headers=envelopes.kafka_headers(outgoing)
        )
        await sent  # marked published only once the broker has it

    action_relay = ActionRelay(store, publish_action_event)
    desk.events_recorded = action_relay.wake.set

    async def send_erasure(case_id: str, requested_by: str) -> None:
        outgoing = envelopes.new_envelope(
            case_id=case_id,
            producer=SERVICE,
            event_id=str(uuid.uuid4()),
            client_erased=events_pb2.ClientErased(requested_by=requested_by),
        )
        sent = await overrides.send(
            key=case_id.encode(), value=envelopes.encode(outgoing), headers=envelopes.kafka_headers(outgoing)
        )
        await sent  # the broker has it before the agency hears "erased"

    async def send_dead_letter(key: bytes, letter: events_pb2.DeadLetter) -> None:
        await dead_letters.topic.send(key=key, value=letter.SerializeToString())

    channels = client_channels(config, NotifyPaths.of(config).client_outbox)
    dispatcher = Dispatcher(
        store,
        webhooks=load_webhooks(config.notify_webhooks_path),
        sender=WebhookSender(timeout=config.notify_webhook_timeout),
        keys=runtime.keys,
        channel=channels.router,
        messages=ClientMessages(),
        names=runtime.names,
        dead_letters=send_dead_letter,
        notifications_topic=config.topic(declared.NOTIFICATIONS.base_name),
        max_attempts=config.notify_webhook_max_attempts,
        base_delay=config.notify_webhook_base_delay,
        max_delay=config.notify_webhook_max_delay,
        send_policy=send_policy_from(config),
    )
    runtime.dispatcher = dispatcher
    sms_status = channels.status_callback(config, dispatcher.outcomes)

    def _span(name: str, envelope: events_pb2.EventEnvelope):
        parent = tracing.context_from(envelope.trace.traceparent, envelope.trace.tracestate)
        return span_tracer.start_as_current_span(
            f"process {name}",
            context=parent,
            kind=tracing.CONSUMER,
            attributes={"referralmesh.case_id": envelope.case_id, "messaging.system": "kafka"},
        )

    intake = Intake(store, facts, dispatcher.channel_for, span=_span)

    async def send_all(outgoing: list[Outgoing]) -> None:
        """Hand the batch's notification events to the producer, in input order; Faust flushes
        the producer before it commits the inputs' offsets."""
        for item in outgoing:
            await notifications.send(key=item.case_id.encode(), value=item.raw, headers=item.headers)
            log.info(
                "notification emitted",
                extra={
                    "case_id": item.case_id,
                    "notification_id": item.notification_id,
                    "audience": item.audience,
                    "template": item.template,
                },
            )
        if outgoing:
            dispatcher.wake.set()

    @app.agent(assignments)
    async def notify_on_assignment(stream):
        async for batch in decoded_batches(stream, dead_letters, expect="assignment"):
            handled = await store.aio.run(
                intake.assignments, [envelope for _, envelope in batch], assignments.get_topic_name()
            )
            await send_all(handled.outgoing)

    @app.agent(referral_events)
    async def remember_contact(stream):
        async for batch in decoded_batches(stream, dead_letters, expect="referral"):
            handled = await store.aio.run(
                intake.referrals, [envelope for _, envelope in batch], referral_events.get_topic_name()
            )
            await send_all(handled.outgoing)

    @app.agent(escalations)
    async def raise_alerts(stream):
        async for batch in decoded_batches(stream, dead_letters, expect="escalation"):
            handled = await store.aio.run(
                intake.escalations, [envelope for _, envelope in batch], escalations.get_topic_name()
            )
            for index, reason in handled.refused:
                await dead_letters.send(batch[index][0], reason)
            for alert in handled.alerts:
                log.info(
                    "alert raised",
                    extra={
                        "case_id": alert.case_id,
                        "escalation_id": alert.escalation_id,
                        "escalation_level": alert.level,
                        "region": alert.region,
                    },
                )
            if handled.alerts:
                desk.alerts_changed()
            await send_all(handled.outgoing)

    dashboard = Dashboard(
        desk,
        store,
        LocalPasswords(store, allow_demo=config.local_mode),
        runtime.names.regions,
        session_hours=config.notify_session_hours,
        service=SERVICE,
        # Several replicas share one PostgreSQL: they share the sign-in counts too (wall-clock
        # seconds, as replicas share no monotonic clock); one SQLite replica counts in memory.
        throttle=SharedSignInThrottle(store.engine) if store.postgres else None,
        monotonic=time.time if store.postgres else time.monotonic,
        secure=not config.local_mode,
        behind_proxy=config.notify_web_tls_proxy,
    )
    offer_identity_provider(config, dashboard)
    web_tls = dashboard_tls(config)
    web_host = config.notify_web_host
    # Ready: Kafka answers, partitions assigned, no rebalance (meshkernel/health.py).
    readiness = ServiceHealth((NOTIFY_API,), kafka=KafkaProbe(config), checks=faust_worker_checks(app))
    app.readiness = readiness  # type: ignore[attr-defined]  # for tests

    @app.task
    async def readiness_probe():
        await readiness.run(lambda: app.should_stop)

    @app.service
    class NotifyServers(mode.Service):
        runner = None
        grpc_server = None
        health: Any = None
        delivery_task = None
        retention_task = None
        action_relay_task = None

        async def on_start(self) -> None:
            web_app = dashboard.app()
            if sms_status is not None:
                sms_status.add_to(web_app)  # the SMS gateway's delivery reports
            self.runner = await start_http(with_probes(web_app, readiness), web_host, config.notify_web_port, web_tls)
            address = f"{'https' if web_tls else 'http'}://{web_host}:{config.notify_web_port}/"
            log.info("notify dashboard listening", extra={"address": address})
            servicer = NotifyApi(
                desk,
                store,
                keys,
                development_identities=config.development_identities,
                streams_per_caller=config.watch_streams_per_caller,
                stream_seconds=config.watch_stream_seconds,
            )
            servicer.announce_erasure = send_erasure
            tls = server_tls_from(config)
            verifier = make_verifier(tls, load_directory(config.agency_directory_path)) if tls else None
            self.grpc_server, self.health = build_server(servicer, config, tls, verifier)
            await self.grpc_server.start()
            await readiness.attach(self.health)
            log.info("notify gRPC listening", extra={"address": config.notify_grpc_address})
            self.delivery_task = asyncio.ensure_future(dispatcher.run())
            self.action_relay_task = asyncio.ensure_future(action_relay.run())
            keep_seconds = config.notify_dead_letter_retention_days * 86400
            self.retention_task = asyncio.ensure_future(
                run_periodically(
                    "dead_deliveries",
                    lambda: store.purge_dead_deliveries(time.time() - keep_seconds),
                    config.retention_sweep_seconds,
                )
            )

        async def on_stop(self) -> None:
            dashboard.closing = True
            for task in (self.retention_task, self.delivery_task, self.action_relay_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await readiness.stop()
            if self.grpc_server is not None:
                await self.health.enter_graceful_shutdown()
                await self.grpc_server.stop(grace=2)
            if self.runner is not None:
                await self.runner.cleanup()
            await dispatcher.sender.close()
            await channels.close()

    return app
