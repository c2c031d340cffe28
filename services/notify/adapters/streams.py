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
from dataclasses import dataclass
from typing import Any

import faust
import mode

from meshkernel import envelope as envelopes
from meshkernel import topics as declared
from meshkernel import tracing
from meshkernel.config import MeshSettings
from meshkernel.health import KafkaProbe, ServiceHealth, faust_worker_checks, with_probes
from meshkernel.retention import run_periodically
from meshkernel.streams import DeadLetters, decoded_events, make_app, observe_consumer_lag, topic
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
from services.notify.adapters.kek_file import kek_from_settings
from services.notify.adapters.keystore import KeyStore, KeyTable
from services.notify.adapters.oidc_dashboard import offer_identity_provider
from services.notify.adapters.shared_throttle import SharedSignInThrottle
from services.notify.adapters.store import NotifyStore, PendingEvent
from services.notify.adapters.webhooks import WebhookSender, load_webhooks
from services.notify.application import AlertDesk
from services.notify.domain.routing import Assignment, Escalation, Notification, route, route_client, route_escalation
from services.notify.paths import NotifyPaths

log = logging.getLogger(__name__)
SERVICE = "notify"


def _assignment_from(envelope: events_pb2.EventEnvelope, has_contact: bool = False) -> Assignment:
    payload = envelope.assignment
    return Assignment(
        event_id=envelope.event_id,
        case_id=envelope.case_id,
        referral_id=payload.referral_id,
        responsible_region=payload.responsible_region,
        previous_region=payload.previous_region,
        handover_to=payload.handover_to,
        rule=payload.rule,
        bound_nowhere=payload.bound_nowhere,
        sender=payload.sender,
        receiver=payload.receiver,
        languages=tuple(payload.languages),
        has_contact=has_contact,
    )


def notification_envelope(
    notification: Notification, *, case_id: str, referral_id: str, caused_by: str, responsible_region: str
) -> bytes:
    """The NotificationEvent of one notification, under the notification's id (derived from its
    cause). These bytes are recorded with the delivery and are what a redelivery sends again."""
    payload = events_pb2.NotificationEvent(
        notification_id=notification.notification_id,
        referral_id=referral_id,
        audience=events_pb2.Audience.Value(notification.audience.value),
        recipient=notification.recipient,
        template=notification.template,
        language=notification.language,
        caused_by_event_id=caused_by,
        responsible_region=responsible_region,
    )
    outgoing = envelopes.new_envelope(
        case_id=case_id, producer=SERVICE, event_id=notification.notification_id, notification=payload
    )
    return envelopes.encode(outgoing)


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

    async def emit(
        notification: Notification, *, case_id: str, referral_id: str, caused_by: str, responsible_region: str
    ) -> None:
        recorded = await store.aio.delivery(notification.notification_id)
        if recorded is not None:
            # A redelivered input. The record is written before the broker has the event, and the
            # input is committed only after the producer flushed: so a crash in between leaves a
            # record whose event may be lost. Send the recorded bytes again, under the same id
            # (receivers deduplicate on it); recorded once, delivered once.
            await _send_notification(case_id, recorded.envelope)
            return
        raw = notification_envelope(
            notification,
            case_id=case_id,
            referral_id=referral_id,
            caused_by=caused_by,
            responsible_region=responsible_region,
        )
        await _send_notification(case_id, raw)
        await store.aio.record_notification(
            notification_id=notification.notification_id,
            case_id=case_id,
            audience=notification.audience.value,
            recipient=notification.recipient,
            template=notification.template,
            language=notification.language,
            channel=dispatcher.channel_for(notification.audience.value, notification.recipient),
            envelope=raw,
        )
        dispatcher.wake.set()
        log.info(
            "notification emitted",
            extra={
                "case_id": case_id,
                "notification_id": notification.notification_id,
                "audience": notification.audience.value,
                "template": notification.template,
            },
        )

    async def _send_notification(case_id: str, raw: bytes) -> None:
        outgoing = envelopes.decode(raw, expect="notification")
        await notifications.send(key=case_id.encode(), value=raw, headers=envelopes.kafka_headers(outgoing))

    def _span(name: str, envelope: events_pb2.EventEnvelope):
        parent = tracing.context_from(envelope.trace.traceparent, envelope.trace.tracestate)
        return span_tracer.start_as_current_span(
            f"process {name}",
            context=parent,
            kind=tracing.CONSUMER,
            attributes={"referralmesh.case_id": envelope.case_id, "messaging.system": "kafka"},
        )

    @app.agent(assignments)
    async def notify_on_assignment(stream):
        async for _event, envelope in decoded_events(stream, dead_letters, expect="assignment"):
            with _span(assignments.get_topic_name(), envelope):
                payload = envelope.assignment
                await store.aio.run(facts.record_assignment, envelope)
                case = await store.aio.update_case(
                    envelope.case_id,
                    referral_id=payload.referral_id,
                    responsible_region=payload.responsible_region,
                    responsible_rule=payload.rule,
                    sender=payload.sender,
                    receiver=payload.receiver,
                    languages=tuple(payload.languages),
                    last_assignment=envelopes.encode(envelope),
                )
                assignment = _assignment_from(envelope, has_contact=bool(case.contact_ciphertext))
                for notification in route(assignment):
                    await emit(
                        notification,
                        case_id=envelope.case_id,
                        referral_id=payload.referral_id,
                        caused_by=envelope.event_id,
                        responsible_region=payload.responsible_region,
                    )

    @app.agent(referral_events)
    async def remember_contact(stream):
        async for _event, envelope in decoded_events(stream, dead_letters, expect="referral"):
            referral = envelope.referral
            await store.aio.run(facts.record_referral, envelope)
            if not referral.contact.ciphertext:
                continue
            with _span(referral_events.get_topic_name(), envelope):
                case = await store.aio.update_case(
                    envelope.case_id,
                    referral_id=referral.referral_id,
                    contact_key_id=referral.contact.key_id,
                    contact_ciphertext=referral.contact.ciphertext,
                )
                if case.last_assignment:  # the assignment came first: the client hears now
                    last = envelopes.decode(case.last_assignment, expect="assignment")
                    notification = route_client(_assignment_from(last, has_contact=True))
                    if notification is not None:
                        await emit(
                            notification,
                            case_id=envelope.case_id,
                            referral_id=referral.referral_id,
                            caused_by=last.event_id,
                            responsible_region=last.assignment.responsible_region,
                        )

    @app.agent(escalations)
    async def raise_alerts(stream):
        async for event, envelope in decoded_events(stream, dead_letters, expect="escalation"):
            with _span(escalations.get_topic_name(), envelope):
                try:
                    alert = await desk.record_escalation(envelope)
                except ValueError as problem:
                    await dead_letters.send(event, str(problem))
                    continue
                if alert is not None:
                    log.info(
                        "alert raised",
                        extra={
                            "case_id": alert.case_id,
                            "escalation_id": alert.escalation_id,
                            "escalation_level": alert.level,
                            "region": alert.region,
                        },
                    )
                case = await store.aio.case(envelope.case_id)
                escalation = envelope.escalation
                for notification in route_escalation(
                    Escalation(
                        escalation_id=escalation.escalation_id,
                        case_id=envelope.case_id,
                        referral_id=escalation.referral_id,
                        region=escalation.region,
                        level=events_pb2.EscalationLevel.Name(escalation.level),
                        # The agency the deadline was about, as the region saw it: the case's
                        # assignment may not have reached this replica yet (another topic).
                        receiver=escalation.agency or (case.receiver if case else ""),
                    )
                ):
                    await emit(
                        notification,
                        case_id=envelope.case_id,
                        referral_id=escalation.referral_id,
                        caused_by=envelope.event_id,
                        responsible_region=escalation.region,
                    )

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
