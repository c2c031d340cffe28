"""gRPC adapter of the referral service: proto in, use case, proto out, clear status codes."""
from __future__ import annotations

import asyncio
import logging
from datetime import timezone

import grpc

from referralmesh.v1 import common_pb2, referral_service_pb2 as api, referral_service_pb2_grpc as api_grpc
from services.referral.adapters.event_codec import proto_enum
from services.referral.adapters.identity import Unauthenticated, caller_from
from services.referral.adapters.storage import RequestKeyReused
from services.referral.application import (
    NewReferral,
    NoMatchingReceiver,
    NotFound,
    ReferralUseCases,
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


def _domain_code(proto_enum_type, number: int, prefix: str = "") -> str | None:
    if number == 0:
        return None
    return proto_enum_type.Name(number).removeprefix(prefix)


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
    def __init__(self, use_cases: ReferralUseCases, *, allow_dev_identity: bool):
        self.use_cases = use_cases
        self.allow_dev_identity = allow_dev_identity

    async def _run(self, context, call, *args):
        try:
            caller = caller_from(context, allow_dev_identity=self.allow_dev_identity)
            return await asyncio.to_thread(call, caller, *args)
        except tuple(error for error, _ in _STATUS_FOR_ERROR) as error:
            status = next(code for kind, code in _STATUS_FOR_ERROR if isinstance(error, kind))
            if isinstance(error, NotPermitted) and not error.details.get("party", True):
                # A stranger learns nothing, not even that the referral exists.
                await context.abort(grpc.StatusCode.NOT_FOUND, "no such referral")
            await context.abort(status, _describe(error))

    async def CreateReferral(self, request: api.CreateReferralRequest, context):
        if not request.HasField("consent"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "consent: a recorded consent is required")
        valid_until = request.consent.valid_until.ToDatetime(tzinfo=timezone.utc)
        command = NewReferral(
            request_key=request.request_key,
            case_id=request.case_id,
            receiver_agency=request.receiver_agency or None,
            match_domain=request.match.domain if request.HasField("match") else None,
            match_region=request.match.region if request.HasField("match") else None,
            match_language=request.match.language if request.HasField("match") else None,
            need_domains=tuple(request.need_domains),
            urgency=common_pb2.Urgency.Name(request.urgency) if request.urgency else "NORMAL",
            languages=tuple(request.languages),
            asked_in=request.asked_in,
            facts=request.facts,
            consent_organisations=tuple(request.consent.organisations),
            consent_purpose=request.consent.purpose.upper(),
            consent_valid_until=valid_until,
            contact=request.contact if request.HasField("contact") else None,
            fingerprint_source=_without_key(request),
        )
        referral = await self._run(context, self.use_cases.create, command)
        return referral_to_proto(referral, request.asked_in)

    async def GetReferral(self, request: api.GetReferralRequest, context):
        referral = await self._run(context, self.use_cases.get, request.referral_id)
        return referral_to_proto(referral)

    async def _transition(self, context, request, action: Action, **codes):
        referral = await self._run(
            context, self.use_cases.transition, request.referral_id, action, request.expected_version, **codes
        )
        return referral_to_proto(referral)

    async def Acknowledge(self, request, context):
        return await self._transition(context, request, Action.ACKNOWLEDGE)

    async def Accept(self, request, context):
        return await self._transition(context, request, Action.ACCEPT)

    async def Decline(self, request, context):
        reason = _domain_code(common_pb2.DeclineReason, request.reason, "DECLINE_")
        return await self._transition(context, request, Action.DECLINE, decline_reason=reason)

    async def Start(self, request, context):
        return await self._transition(context, request, Action.START)

    async def Complete(self, request, context):
        outcome = _domain_code(common_pb2.Outcome, request.outcome, "OUTCOME_")
        return await self._transition(context, request, Action.COMPLETE, outcome=outcome)

    async def Cancel(self, request, context):
        return await self._transition(context, request, Action.CANCEL)

    async def ReportContactLost(self, request, context):
        return await self._transition(context, request, Action.REPORT_CONTACT_LOST)

    async def Fail(self, request, context):
        outcome = _domain_code(common_pb2.Outcome, request.outcome, "OUTCOME_")
        return await self._transition(context, request, Action.FAIL, outcome=outcome)

    async def Forward(self, request, context):
        return await self._transition(context, request, Action.FORWARD, new_receiver=request.next_receiver or None)


def _without_key(request: api.CreateReferralRequest) -> bytes:
    """The payload a request key stands for; the same key with other content is refused."""
    copy = api.CreateReferralRequest()
    copy.CopyFrom(request)
    copy.request_key = ""
    return copy.SerializeToString(deterministic=True)


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
