"""gRPC adapter of the referral service: proto in, use case, proto out, clear status codes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections import Counter
from datetime import UTC

import grpc
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from sqlalchemy.exc import OperationalError

from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api
from referralmesh.v1 import referral_service_pb2_grpc as api_grpc
from services.referral.adapters.event_codec import proto_enum
from services.referral.adapters.identity import Unauthenticated, caller_from
from services.referral.adapters.storage import RequestKeyReused
from services.referral.application import (
    ListFilter,
    NewReferral,
    NoMatchingReceiver,
    NotFound,
    ReferralUseCases,
    decode_cursor,
)
from services.referral.domain import (
    Action,
    ConsentMissing,
    DomainError,
    IllegalTransition,
    InvalidCommand,
    InvalidReferral,
    NotPermitted,
    Referral,
    StaleVersion,
)

log = logging.getLogger(__name__)

_STATUS_FOR_ERROR = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (NotPermitted, grpc.StatusCode.PERMISSION_DENIED),
    (StaleVersion, grpc.StatusCode.ABORTED),
    (IllegalTransition, grpc.StatusCode.FAILED_PRECONDITION),
    (ConsentMissing, grpc.StatusCode.FAILED_PRECONDITION),
    (NoMatchingReceiver, grpc.StatusCode.FAILED_PRECONDITION),
    (RequestKeyReused, grpc.StatusCode.ALREADY_EXISTS),
    (InvalidReferral, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidCommand, grpc.StatusCode.INVALID_ARGUMENT),
    (DomainError, grpc.StatusCode.FAILED_PRECONDITION),
)
_KNOWN_ERRORS = tuple(error for error, _ in _STATUS_FOR_ERROR)

ERROR_CODE_HEADER = "mesh-error-code"  # trailing metadata: a stable machine code, e.g. STALE_VERSION
ERROR_DETAIL_HEADER = "mesh-error-detail"  # trailing metadata: JSON of ids and codes, never personal data
STREAM_POLL_SECONDS = 0.5  # other replicas' commits are seen within this time
STREAM_BATCH = 200

_DIRECTIONS = {api.DIRECTION_UNSPECIFIED: "any", api.SENT: "sent", api.RECEIVED_BY_ME: "received"}


def unknown_field_path(message: Message, path: str = "") -> str | None:
    """The path of the first field this service does not know, anywhere in the message; else None.

    protobuf keeps unknown fields instead of failing the parse; a request that carries any is
    refused, so a client never believes the service stored something it silently dropped.
    """
    if len(UnknownFieldSet(message)):
        return path or message.DESCRIPTOR.name
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            values = value.values() if descriptor.message_type.fields_by_name["value"].message_type else []
        elif descriptor.is_repeated:
            values = value
        else:
            values = [value]
        for item in values:
            found = unknown_field_path(item, f"{path}.{descriptor.name}" if path else descriptor.name)
            if found:
                return found
    return None


async def _timestamp(context, value, field: str):
    """A request's Timestamp as a datetime; one outside protobuf's range is refused, not raised."""
    try:
        return value.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: not a valid timestamp")


def _refuse_unknown_fields(handler):
    """Every RPC first refuses requests with fields this service does not know."""

    @functools.wraps(handler)
    async def checked(self, request, context):
        found = unknown_field_path(request)
        if found:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{found}: unknown field in request; this service does not accept it"
            )
        return await handler(self, request, context)

    return checked


class ChangeSignal:
    """Wakes every open change stream after a commit (called from worker threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def register(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Event]:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def unregister(self, waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, woken in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(woken.set)


async def _enum_name(context, proto_enum_type, number: int, field: str) -> str:
    """The name of a request's enum value; a number the contract does not define is refused."""
    if number not in proto_enum_type.values():
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: unknown value {number}")
    return proto_enum_type.Name(number)


async def _domain_code(context, proto_enum_type, number: int, field: str, prefix: str = "") -> str | None:
    if number == 0:
        return None
    return (await _enum_name(context, proto_enum_type, number, field)).removeprefix(prefix)


def referral_to_proto(referral: Referral, asked_in: str = "") -> api.Referral:
    message = api.Referral(
        referral_id=referral.referral_id,
        case_id=referral.case_id,
        sender=referral.sender,
        receiver=referral.receiver,
        pending_receiver=referral.pending_receiver or "",
        status=proto_enum(common_pb2.ReferralStatus, referral.status),
        version=referral.version,
        need_domains=[str(domain) for domain in referral.need_domains],
        urgency=proto_enum(common_pb2.Urgency, referral.urgency),
        languages=list(referral.languages),
        asked_in=asked_in,
        decline_reason=proto_enum(common_pb2.DeclineReason, referral.decline_reason, "DECLINE_"),
        outcome=proto_enum(common_pb2.Outcome, referral.outcome, "OUTCOME_"),
        cancel_reason=proto_enum(common_pb2.CancelReason, referral.cancel_reason),
        holder=referral.holder,
    )
    message.created_at.FromDatetime(referral.created_at)
    message.updated_at.FromDatetime(referral.updated_at)
    for change in referral.history:
        entry = message.history.add(status=proto_enum(common_pb2.ReferralStatus, change.status), actor=change.actor)
        entry.at.FromDatetime(change.at)
    return message


class ReferralApi(api_grpc.ReferralServiceServicer):
    def __init__(
        self,
        use_cases: ReferralUseCases,
        *,
        allow_dev_identity: bool,
        metrics=None,
        streams_per_agency: int = 4,
        stream_seconds: float = 3600.0,
    ):
        self.use_cases = use_cases
        self.allow_dev_identity = allow_dev_identity
        self.metrics = metrics
        # Resource limits of WatchReferrals: open streams per agency, and each stream's lifetime.
        self.streams_per_agency = streams_per_agency
        self.stream_seconds = stream_seconds
        self.open_streams: Counter[str] = Counter()
        # Open change streams wake on every commit of this process, besides what was set before.
        self.changes = ChangeSignal()
        previous = use_cases.on_commit

        def on_commit() -> None:
            previous()
            self.changes.notify()

        use_cases.on_commit = on_commit

    def _caller(self, context):
        return caller_from(context, allow_dev_identity=self.allow_dev_identity)

    async def _run(self, context, call, *args, **kwargs):
        try:
            caller = self._caller(context)
            return await asyncio.to_thread(call, caller, *args, **kwargs)
        except _KNOWN_ERRORS as error:
            refusal = error
        except OperationalError:
            # The database is down or restarting. UNAVAILABLE tells the caller to retry (a create
            # with the same request key, which is idempotent); UNKNOWN would suggest a bug.
            log.warning("database not reachable; call refused as unavailable")
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the referral database is not reachable; retry")
        # Aborting outside the except block keeps the refusal out of the abort's exception
        # chain, which the tracing instrumentation would otherwise copy into the span.
        await _abort_for(context, refusal)

    @_refuse_unknown_fields
    async def CreateReferral(self, request: api.CreateReferralRequest, context):
        if not request.HasField("consent"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "consent: a recorded consent is required")
        valid_until = await _timestamp(context, request.consent.valid_until, "consent.valid_until")
        command = NewReferral(
            request_key=request.request_key,
            case_id=request.case_id,
            receiver_agency=request.receiver_agency or None,
            match_domain=request.match.domain if request.HasField("match") else None,
            match_region=request.match.region if request.HasField("match") else None,
            match_language=request.match.language if request.HasField("match") else None,
            need_domains=tuple(request.need_domains),
            urgency=(
                await _enum_name(context, common_pb2.Urgency, request.urgency, "urgency")
                if request.urgency
                else "NORMAL"
            ),
            languages=tuple(request.languages),
            asked_in=request.asked_in,
            facts=request.facts,
            consent_organisations=tuple(request.consent.organisations),
            consent_purpose=request.consent.purpose.upper(),
            consent_valid_until=valid_until,
            consent_recorded_at=(
                await _timestamp(context, request.consent.recorded_at, "consent.recorded_at")
                if request.consent.HasField("recorded_at")
                else None
            ),
            contact=request.contact if request.HasField("contact") else None,
            fingerprint_source=_without_key(request),
        )
        referral = await self._run(context, self.use_cases.create, command)
        if self.metrics is not None:
            self.metrics.created(referral)
        return referral_to_proto(referral, request.asked_in)

    @_refuse_unknown_fields
    async def GetReferral(self, request: api.GetReferralRequest, context):
        referral = await self._run(context, self.use_cases.get, request.referral_id)
        return referral_to_proto(referral)

    async def _transition(self, context, request, action: Action, **codes):
        referral = await self._run(
            context, self.use_cases.transition, request.referral_id, action, request.expected_version, **codes
        )
        if self.metrics is not None:
            self.metrics.changed(action, referral)
        return referral_to_proto(referral)

    @_refuse_unknown_fields
    async def Acknowledge(self, request, context):
        return await self._transition(context, request, Action.ACKNOWLEDGE)

    @_refuse_unknown_fields
    async def Accept(self, request, context):
        return await self._transition(context, request, Action.ACCEPT)

    @_refuse_unknown_fields
    async def Decline(self, request, context):
        reason = await _domain_code(context, common_pb2.DeclineReason, request.reason, "reason", "DECLINE_")
        return await self._transition(context, request, Action.DECLINE, decline_reason=reason)

    @_refuse_unknown_fields
    async def Start(self, request, context):
        return await self._transition(context, request, Action.START)

    @_refuse_unknown_fields
    async def Complete(self, request, context):
        outcome = await _domain_code(context, common_pb2.Outcome, request.outcome, "outcome", "OUTCOME_")
        return await self._transition(context, request, Action.COMPLETE, outcome=outcome)

    @_refuse_unknown_fields
    async def Cancel(self, request, context):
        return await self._transition(context, request, Action.CANCEL)

    @_refuse_unknown_fields
    async def ReportContactLost(self, request, context):
        return await self._transition(context, request, Action.REPORT_CONTACT_LOST)

    @_refuse_unknown_fields
    async def Fail(self, request, context):
        outcome = await _domain_code(context, common_pb2.Outcome, request.outcome, "outcome", "OUTCOME_")
        return await self._transition(context, request, Action.FAIL, outcome=outcome)

    @_refuse_unknown_fields
    async def Forward(self, request, context):
        return await self._transition(context, request, Action.FORWARD, new_receiver=request.next_receiver or None)

    @_refuse_unknown_fields
    async def UpdateBindingFacts(self, request: api.UpdateBindingFactsRequest, context):
        referral = await self._run(
            context, self.use_cases.update_facts, request.referral_id, request.expected_version, request.facts
        )
        return referral_to_proto(referral)

    @_refuse_unknown_fields
    async def WithdrawConsent(self, request: api.WithdrawConsentRequest, context):
        cancelled = await self._run(context, self.use_cases.withdraw_consent, request.case_id)
        return api.WithdrawConsentResponse(cancelled=[referral_to_proto(referral) for referral in cancelled])

    @_refuse_unknown_fields
    async def ListReferrals(self, request: api.ListReferralsRequest, context):
        if request.direction not in _DIRECTIONS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "direction: unknown value")
        query = ListFilter(
            statuses=tuple(
                common_pb2.ReferralStatus.Name(status)
                for status in request.status
                if status in common_pb2.ReferralStatus.values() and status != common_pb2.REFERRAL_STATUS_UNSPECIFIED
            ),
            direction=_DIRECTIONS[request.direction],
            need_domain=request.need_domain or None,
            updated_since=(
                await _timestamp(context, request.updated_since, "updated_since")
                if request.HasField("updated_since")
                else None
            ),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        page, token = await self._run(context, self.use_cases.list_referrals, query)
        return api.ListReferralsResponse(referrals=[referral_to_proto(r) for r in page], next_page_token=token)

    async def WatchReferrals(self, request: api.WatchReferralsRequest, context):
        """Every change relevant to the caller, in commit order, from the cursor on.

        Each message carries the cursor of its own change; reconnecting with the last cursor
        seen resumes right after it: nothing is lost and nothing comes twice.
        """
        found = unknown_field_path(request)
        if found:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"{found}: unknown field in request; this service does not accept it"
            )
        try:
            caller = self._caller(context)
            position = await asyncio.to_thread(self.use_cases.stream_start, request.cursor)
        except _KNOWN_ERRORS as error:
            await _abort_for(context, error)
        if self.open_streams[caller.agency_id] >= self.streams_per_agency:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"at most {self.streams_per_agency} open change streams per agency"
            )
        self.open_streams[caller.agency_id] += 1
        ends_at = time.monotonic() + self.stream_seconds
        waiter = self.changes.register()
        try:
            await context.send_initial_metadata(())  # the client sees the stream is open at once
            # When the lifetime is over the stream ends; the client resumes with its last cursor.
            while time.monotonic() < ends_at:
                waiter[1].clear()
                batch = await asyncio.to_thread(self.use_cases.changes_after, caller, position, STREAM_BATCH)
                for change in batch:
                    yield api.ReferralChange(
                        cursor=change.cursor,
                        event_type=change.event_type,
                        referral=referral_to_proto(change.referral),
                    )
                if batch:
                    position = decode_cursor(batch[-1].cursor)
                    if len(batch) == STREAM_BATCH:
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        waiter[1].wait(), timeout=min(STREAM_POLL_SECONDS, max(0.0, ends_at - time.monotonic()))
                    )
        finally:
            self.open_streams[caller.agency_id] -= 1
            self.changes.unregister(waiter)

    @_refuse_unknown_fields
    async def SearchAgencies(self, request: api.SearchAgenciesRequest, context):
        agencies = await self._run(
            context,
            self.use_cases.search_agencies,
            domain=request.domain or None,
            region=request.region or None,
            language=request.language or None,
            accepting_only=request.accepting_only,
        )
        return api.SearchAgenciesResponse(
            agencies=[
                api.Agency(
                    agency_id=agency.agency_id,
                    name=agency.name,
                    kind=str(agency.kind.value),
                    regions_served=list(agency.regions_served),
                    need_domains=[str(domain) for domain in agency.need_domains],
                    languages=list(agency.languages),
                    accepting=agency.accepting,
                )
                for agency in agencies
            ]
        )

    @_refuse_unknown_fields
    async def GetAccessLog(self, request: api.GetAccessLogRequest, context):
        entries = await self._run(context, self.use_cases.access_log, request.case_id)
        response = api.GetAccessLogResponse()
        for entry in entries:
            item = response.entries.add(
                action=entry["action"],
                case_id=entry["case_id"] or "",
                referral_id=entry["referral_id"] or "",
                organisation=entry["organisation"],
                user=entry["user"],
                on_behalf_of=entry["on_behalf_of"],
                purpose=entry["purpose"],
                outcome=entry["outcome"],
            )
            at = entry["at"]
            item.at.FromDatetime(at if at.tzinfo else at.replace(tzinfo=UTC))
        return response


async def _abort_for(context, error: Exception):
    status = next(code for kind, code in _STATUS_FOR_ERROR if isinstance(error, kind))
    if isinstance(error, NotPermitted) and not error.details.get("party", True):
        # A stranger learns nothing, not even that the referral exists.
        await context.abort(
            grpc.StatusCode.NOT_FOUND, "no such referral", trailing_metadata=((ERROR_CODE_HEADER, "NOT_FOUND"),)
        )
    trailing = []
    if isinstance(error, DomainError):
        trailing.append((ERROR_CODE_HEADER, error.code))
        detail = {
            key: value for key, value in error.details.items() if isinstance(value, (str, int, bool)) and key != "party"
        }
        if detail:
            trailing.append((ERROR_DETAIL_HEADER, json.dumps(detail, sort_keys=True)))
    elif isinstance(error, RequestKeyReused):
        trailing.append((ERROR_CODE_HEADER, "REQUEST_KEY_REUSED"))
    elif isinstance(error, NotFound):
        trailing.append((ERROR_CODE_HEADER, "NOT_FOUND"))
    await context.abort(status, _describe(error), trailing_metadata=tuple(trailing))


def _without_key(request: api.CreateReferralRequest) -> bytes:
    """The payload a request key stands for; the same key with other content is refused."""
    copy = api.CreateReferralRequest()
    copy.CopyFrom(request)
    copy.request_key = ""
    return copy.SerializeToString(deterministic=True)


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
