"""NotifyService over gRPC: the alert stream, acknowledge, and sealing/erasing contact details.

Development identities (MESH_MODE=local without TLS only, like the referral service's header):
`x-mesh-coordinator: <username>` names the acting coordinator for AcknowledgeAlert; the
coordinator's scope applies. `x-mesh-dev-agency: <agency id>` names the calling agency for the
access log of SealContact/EraseClient. Otherwise these headers are ignored.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf import timestamp_pb2

from meshkernel.grpc_health import add_health_and_reflection, mark_serving
from meshkernel.tls import ServerTls, server_credentials
from referralmesh.v1 import events_pb2, notify_service_pb2_grpc
from referralmesh.v1 import notify_service_pb2 as api
from services.notify.adapters.keystore import KeyStore
from services.notify.adapters.store import NotifyStore, StoredAlert
from services.notify.application import AlertDesk
from services.notify.domain import alerts as domain
from services.notify.domain.alerts import AlertError, Coordinator
from services.notify.domain.contact import Contact, InvalidContact

log = logging.getLogger(__name__)
SERVICE_NAME = api.DESCRIPTOR.services_by_name["NotifyService"].full_name
COORDINATOR_HEADER = "x-mesh-coordinator"
AGENCY_HEADER = "x-mesh-dev-agency"
POLL_SECONDS = 1.0
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
        history=[api.AlertChange(action=c.action.value, actor=c.actor, at=_timestamp(c.at),
                                 state=api.AlertState.Value(c.state.value), code=c.code, region=c.region)
                 for c in alert.history],
    )


ErasureAnnouncer = Callable[[str, str], Awaitable[None]]  # (case id, requesting agency)


class NotifyApi(notify_service_pb2_grpc.NotifyServiceServicer):
    # Tells the region service to forget the case (set by the worker; None in bare API tests).
    announce_erasure: ErasureAnnouncer | None = None

    def __init__(self, desk: AlertDesk, store: NotifyStore, keys: KeyStore, *, development_identities: bool):
        self.desk = desk
        self.store = store
        self.keys = keys
        self.development_identities = development_identities

    def _metadata(self, context) -> dict[str, str]:
        if not self.development_identities:
            return {}
        return dict(context.invocation_metadata() or ())

    async def WatchAlerts(self, request, context):
        regions = {code for code in request.regions if code}
        levels = {events_pb2.EscalationLevel.Name(level) for level in request.levels if level}
        caller = self._metadata(context).get(COORDINATOR_HEADER) or self._metadata(context).get(AGENCY_HEADER) or "-"
        self.store.log_access(actor=caller, action="WATCH_ALERTS", case_id="*", why="coordination", channel="grpc")
        if request.cursor:
            try:
                cursor = int(request.cursor)
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "cursor: not a cursor of this stream")
        else:
            # No cursor: first the open alerts as they are now, then every change.
            cursor = self.store.last_cursor()
            for stored in sorted(self.store.alerts(), key=lambda s: s.alert.fired_at):
                if domain.matches(stored.alert, regions, levels):
                    yield alert_message(stored, cursor)
        while True:
            changed = self.desk.changed
            batch = self.store.changes_after(cursor)
            for stored in batch:
                cursor = stored.seq
                if domain.matches(stored.alert, regions, levels):
                    yield alert_message(stored, stored.seq)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), POLL_SECONDS)

    async def AcknowledgeAlert(self, request, context):
        username = self._metadata(context).get(COORDINATOR_HEADER, "")
        row = self.store.coordinator(username) if username else None
        if row is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"{COORDINATOR_HEADER}: unknown coordinator")
        assert row is not None  # abort raises
        who = Coordinator(row["username"], row["scope"], row["display_name"])
        try:
            await self.desk.act(who, request.escalation_id, "acknowledge", channel="grpc")
        except domain.OutOfScope as problem:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(problem))
        except AlertError as problem:
            code = grpc.StatusCode.NOT_FOUND if "no such" in str(problem) else grpc.StatusCode.FAILED_PRECONDITION
            await context.abort(code, str(problem))
        stored = self.store.get_alert(request.escalation_id)
        assert stored is not None  # acted on just above
        return alert_message(stored, self.store.last_cursor())

    async def SealContact(self, request, context):
        agency = self._metadata(context).get(AGENCY_HEADER, "-")
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id: required")
        if request.channel not in CHANNELS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "channel: SMS or EMAIL")
        try:
            contact = Contact(CHANNELS[request.channel], request.address)
        except InvalidContact as problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"address: {problem}")
        sealed = await asyncio.to_thread(self.keys.seal, request.case_id, contact)
        self.store.log_access(actor=agency, action="SEAL_CONTACT", case_id=request.case_id, why="client_messages",
                              channel="grpc", organisation=agency)
        return sealed

    async def EraseClient(self, request, context):
        agency = self._metadata(context).get(AGENCY_HEADER, "-")
        if not request.case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id: required")
        destroyed = await asyncio.to_thread(erase_client, self.keys, self.store, request.case_id)
        if self.announce_erasure is not None:
            # Every time, not only when a key existed: the region service may hold the case anyway.
            # A failure here fails the call, so the agency asks again (erasure is idempotent).
            await self.announce_erasure(request.case_id, agency)
        self.store.log_access(actor=agency, action="ERASE_CLIENT", case_id=request.case_id, why="erasure_request",
                              channel="grpc", organisation=agency)
        return api.EraseClientResponse(key_destroyed=destroyed)


def erase_client(keys: KeyStore, store: NotifyStore, case_id: str) -> bool:
    """Crypto-shredding: destroy the case's key, and drop our copy of the ciphertext too."""
    destroyed = keys.erase(case_id)
    store.forget_contact(case_id)
    return destroyed


def build_server(servicer: NotifyApi, address: str, tls: ServerTls | None = None):
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024)])
    notify_service_pb2_grpc.add_NotifyServiceServicer_to_server(servicer, server)
    health_servicer = add_health_and_reflection(server, SERVICE_NAME)
    if tls is not None:
        server.add_secure_port(address, server_credentials(tls))
    else:
        server.add_insecure_port(address)
    return server, health_servicer


async def serving(health_servicer) -> None:
    await mark_serving(health_servicer, SERVICE_NAME)


__all__ = ["NotifyApi", "alert_message", "build_server", "erase_client", "serving"]
