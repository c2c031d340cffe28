"""NotifyService over gRPC: the alert stream, acknowledge, sealing/erasing contact details, and
what became of the client's messages (codes only).

Who calls comes from the verified client certificate (meshkernel/callers.py): a coordinator
(with a region or national scope), an agency, or a mesh service. In MESH_MODE=local without
TLS only, development headers name the caller (`x-mesh-coordinator`, whose scope comes from the
coordinator accounts; `x-mesh-dev-agency`). What each may do is decided by the pure policy in
services/notify/domain/authorisation.py; every refusal and every erasure is access-logged.

Limits: at most `watch_streams_per_caller` open alert streams per caller, each ended
after `watch_stream_seconds` (the client resumes from its last cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import timestamp_pb2

from meshkernel.callers import DEV_COORDINATOR_HEADER, NoIdentity, principal_of
from meshkernel.config import MeshSettings
from meshkernel.grpc_health import add_health_and_reflection, mark_serving
from meshkernel.grpc_server import bind, new_server
from meshkernel.principal import Denied, Principal
from meshkernel.tls import ROLES, PeerVerifier, ServerTls
from referralmesh.v1 import events_pb2, notify_service_pb2_grpc
from referralmesh.v1 import notify_service_pb2 as api
from services.notify.adapters.client_outcomes import ClientOutcome, ClientOutcomes
from services.notify.adapters.keystore import KeyStore
from services.notify.adapters.store import Delivery, NotifyStore, StoredAlert
from services.notify.application import AlertDesk
from services.notify.domain import alerts as domain
from services.notify.domain import authorisation as policy
from services.notify.domain.alerts import AlertError
from services.notify.domain.contact import Contact, InvalidContact

log = logging.getLogger(__name__)
SERVICE_NAME = api.DESCRIPTOR.services_by_name["NotifyService"].full_name
POLL_SECONDS = 1.0
MAX_MESSAGE_BYTES = 64 * 1024
CHANNELS = {api.SMS: "sms", api.EMAIL: "email"}


def _timestamp(moment) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def alert_message(stored: StoredAlert, cursor: int) -> api.Alert:
    alert = stored.alert
    return api.Alert(
        cursor=str(cursor),
        escalation=events_pb2.EscalationEvent.FromString(stored.escalation),
        state=api.AlertState.Value(alert.state.value),
        owner=alert.owner,
        updated_at=_timestamp(stored.updated_at),
        case_id=alert.case_id,
        outcome=alert.outcome,
        responsible_rule=alert.responsible_rule,
        responsible_region=alert.region,
        history=[
            api.AlertChange(
                action=c.action.value,
                actor=c.actor,
                at=_timestamp(c.at),
                state=api.AlertState.Value(c.state.value),
                code=c.code,
                region=c.region,
            )
            for c in alert.history
        ],
    )


ErasureAnnouncer = Callable[[str, str], Awaitable[None]]  # (case id, requesting agency)


class NotifyApi(notify_service_pb2_grpc.NotifyServiceServicer):
    # Tells the region service to forget the case (set by the worker; None in bare API tests).
    announce_erasure: ErasureAnnouncer | None = None

    def __init__(
        self,
        desk: AlertDesk,
        store: NotifyStore,
        keys: KeyStore,
        *,
        development_identities: bool,
        streams_per_caller: int = 4,
        stream_seconds: float = 3600.0,
        outcomes: ClientOutcomes | None = None,
    ):
        self.desk = desk
        self.store = store
        self.keys = keys
        self.outcomes = outcomes or ClientOutcomes(store.engine)
        self.development_identities = development_identities
        self.streams_per_caller = streams_per_caller
        self.stream_seconds = stream_seconds
        self.open_streams: Counter[str] = Counter()

    async def _coordinator_scope(self, username: str) -> str | None:
        row = await self.store.aio.coordinator(username)
        return row["scope"] if row and not row["disabled"] else None  # a disabled account acts nowhere

    async def _principal(self, context) -> Principal:
        # A development coordinator header (local mode) is looked up first, off the event loop.
        scope = None
        if self.development_identities:
            named = dict(context.invocation_metadata() or ()).get(DEV_COORDINATOR_HEADER, "")[:64]
            scope = await self._coordinator_scope(named) if named else None
        try:
            return principal_of(
                context, development_identities=self.development_identities, coordinator_scope=lambda _name: scope
            )
        except NoIdentity as problem:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(problem))
            raise  # abort raises; this line is for the type checker

    async def _refuse(self, context, who: Principal, action: str, case_id: str, problem: Denied) -> None:
        await self.store.aio.log_access(
            actor=who.name,
            action=action,
            case_id=case_id,
            why="authorisation",
            channel="grpc",
            organisation=who.name if who.is_agency else (who.scope or who.role),
            result="refused:not_allowed",
        )
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(problem))

    async def WatchAlerts(self, request, context):
        if any(level not in events_pb2.EscalationLevel.values() for level in request.levels):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "levels: unknown value")
        who = await self._principal(context)
        requested = {code for code in request.regions if code}
        try:
            regions = policy.watch_regions(who, requested)
        except Denied as problem:
            await self._refuse(context, who, "WATCH_ALERTS", "*", problem)
        if self.open_streams[str(who)] >= self.streams_per_caller:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self.streams_per_caller} open alert streams per caller"
            )
        self.open_streams[str(who)] += 1
        try:
            async for alert in self._alerts(request, context, who, regions or set()):
                yield alert
        finally:
            self.open_streams[str(who)] -= 1

    async def _alerts(self, request, context, who: Principal, regions: set[str]):
        levels = {events_pb2.EscalationLevel.Name(level) for level in request.levels if level}
        await self.store.aio.log_access(
            actor=who.name,
            action="WATCH_ALERTS",
            case_id="*",
            why="coordination",
            channel="grpc",
            organisation=who.scope or "",
        )
        ends_at = time.monotonic() + self.stream_seconds
        if request.cursor:
            try:
                cursor = int(request.cursor)
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "cursor: not a cursor of this stream")
        else:
            # No cursor: first the open alerts as they are now, then every change.
            cursor = await self.store.aio.last_cursor()
            for stored in sorted(await self.store.aio.alerts(), key=lambda s: s.alert.fired_at):
                if domain.matches(stored.alert, regions, levels):
                    yield alert_message(stored, cursor)
        while time.monotonic() < ends_at:
            changed = self.desk.changed
            batch = await self.store.aio.changes_after(cursor)
            for stored in batch:
                cursor = stored.seq
                if domain.matches(stored.alert, regions, levels):
                    yield alert_message(stored, stored.seq)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(POLL_SECONDS, max(0.0, ends_at - time.monotonic())))
        # The stream's lifetime is over; the client resumes with its last cursor.

    async def AcknowledgeAlert(self, request, context):
        who = await self._principal(context)
        try:
            coordinator = policy.acting_coordinator(who)
        except Denied as problem:
            stored = await self.store.aio.get_alert(request.escalation_id)
            await self._refuse(context, who, "ACKNOWLEDGE", stored.alert.case_id if stored else "unknown", problem)
        try:
            await self.desk.act(coordinator, request.escalation_id, "acknowledge", channel="grpc")
        except domain.OutOfScope as problem:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(problem))
        except AlertError as problem:
            code = grpc.StatusCode.NOT_FOUND if "no such" in str(problem) else grpc.StatusCode.FAILED_PRECONDITION
            await context.abort(code, str(problem))
        stored = await self.store.aio.get_alert(request.escalation_id)
        assert stored is not None  # acted on just above
        return alert_message(stored, await self.store.aio.last_cursor())

    async def SealContact(self, request, context):
        who = await self._principal(context)
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id: required")
        try:
            policy.may_seal_contact(who, await self.store.aio.case_parties(request.case_id))
        except Denied as problem:
            await self._refuse(context, who, "SEAL_CONTACT", request.case_id, problem)
        if request.channel not in CHANNELS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "channel: SMS or EMAIL")
        try:
            contact = Contact(CHANNELS[request.channel], request.address)
        except InvalidContact as problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"address: {problem}")
        await self.store.aio.record_sealer(request.case_id, who.name)
        sealed = await self.keys.aio.seal(request.case_id, contact)
        await self.store.aio.log_access(
            actor=who.name,
            action="SEAL_CONTACT",
            case_id=request.case_id,
            why="client_messages",
            channel="grpc",
            organisation=who.name,
        )
        return sealed

    async def EraseClient(self, request, context):
        who = await self._principal(context)
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id: required")
        try:
            policy.may_erase_client(who, await self.store.aio.case_parties(request.case_id))
        except Denied as problem:
            await self._refuse(context, who, "ERASE_CLIENT", request.case_id, problem)
        destroyed = await asyncio.to_thread(erase_client, self.keys, self.store, request.case_id)
        if self.announce_erasure is not None:
            # Every time, not only when a key existed: the region service may hold the case anyway.
            # A failure here fails the call, so the agency asks again (erasure is idempotent).
            await self.announce_erasure(request.case_id, who.name)
        await self.store.aio.log_access(
            actor=who.name,
            action="ERASE_CLIENT",
            case_id=request.case_id,
            why="erasure_request",
            channel="grpc",
            organisation=who.name,
        )
        return api.EraseClientResponse(key_destroyed=destroyed)

    async def ListClientMessages(self, request, context):
        who = await self._principal(context)
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id: required")
        try:
            policy.may_read_client_messages(who, await self.store.aio.case_parties(request.case_id))
        except Denied as problem:
            await self._refuse(context, who, "LIST_CLIENT_MESSAGES", request.case_id, problem)
        outcomes = await self.store.aio.run(self.outcomes.for_case, request.case_id)
        messages = [
            client_message_outcome(delivery, outcomes.get(delivery.notification_id))
            for delivery in await self.store.aio.deliveries(request.case_id)
            if delivery.channel == "client"
        ]
        await self.store.aio.log_access(
            actor=who.name,
            action="LIST_CLIENT_MESSAGES",
            case_id=request.case_id,
            why="delivery_outcome",
            channel="grpc",
            organisation=who.name,
        )
        return api.ListClientMessagesResponse(messages=messages)


def client_message_status(delivery: Delivery, outcome: ClientOutcome | None) -> str:
    """One word for where a client message stands (ListClientMessages' `status`)."""
    if delivery.status == "delivered":
        return "sent"
    if delivery.status == "skipped":
        return "not_sent"
    if delivery.status == "dead":
        return "rejected" if outcome is not None and outcome.state == "rejected" else "failed"
    if outcome is not None and outcome.state.startswith("held_"):
        return outcome.state
    return "retrying" if delivery.attempts else "pending"


def client_message_outcome(delivery: Delivery, outcome: ClientOutcome | None) -> api.ClientMessageOutcome:
    message = api.ClientMessageOutcome(
        notification_id=delivery.notification_id,
        template=delivery.template,
        language=delivery.language,
        channel=outcome.medium if outcome else "",
        status=client_message_status(delivery, outcome),
        report=outcome.receipt if outcome else "",
        attempts=delivery.attempts,
    )
    if delivery.status == "pending":
        message.next_attempt_at.FromSeconds(int(delivery.next_attempt_at))
    if outcome is not None:
        message.updated_at.FromSeconds(int(outcome.updated_at))
    return message


def erase_client(keys: KeyStore, store: NotifyStore, case_id: str) -> bool:
    """Crypto-shredding: destroy the case's key, and drop our copy of the ciphertext too."""
    destroyed = keys.erase(case_id)
    store.forget_contact(case_id)
    return destroyed


def build_server(
    servicer: NotifyApi, config: MeshSettings, tls: ServerTls | None = None, verifier: PeerVerifier | None = None
):
    server = new_server(config, max_receive_bytes=MAX_MESSAGE_BYTES, verifier=verifier, roles=ROLES)
    notify_service_pb2_grpc.add_NotifyServiceServicer_to_server(servicer, server)
    health_servicer = add_health_and_reflection(server, SERVICE_NAME)
    bind(server, config.notify_grpc_address, tls)
    return server, health_servicer


async def serving(health_servicer) -> None:
    await mark_serving(health_servicer, SERVICE_NAME)


__all__ = ["NotifyApi", "alert_message", "build_server", "erase_client", "serving"]
