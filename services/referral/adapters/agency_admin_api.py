"""gRPC AgencyAdminService (proto/referralmesh/v1/agency_admin_service.proto): the agency
directory for operators. The caller is an operator by its certificate (or, in MESH_MODE=local
without TLS, the `x-mesh-dev-operator` header from loopback); anyone else is refused."""

from __future__ import annotations

import asyncio
import logging

import grpc
from sqlalchemy.exc import OperationalError

from meshkernel.callers import NoIdentity, principal_of
from meshkernel.principal import Denied
from referralmesh.v1 import agency_admin_service_pb2 as api
from referralmesh.v1 import agency_admin_service_pb2_grpc as api_grpc
from services.referral.adapters.grpc_api import ERROR_CODE_HEADER
from services.referral.agency_admin import AgencyAdmin, agency_fields_of, directory_agency
from services.referral.domain.agency_directory import (
    AgencyAlreadySuspended,
    AgencyExists,
    DirectoryRefused,
    InvalidAgency,
    NoSuchAgency,
    StaleAgencyVersion,
)

log = logging.getLogger(__name__)

_STATUS = (
    (InvalidAgency, grpc.StatusCode.INVALID_ARGUMENT),
    (AgencyExists, grpc.StatusCode.ALREADY_EXISTS),
    (NoSuchAgency, grpc.StatusCode.NOT_FOUND),
    (StaleAgencyVersion, grpc.StatusCode.ABORTED),
    (AgencyAlreadySuspended, grpc.StatusCode.FAILED_PRECONDITION),
    (DirectoryRefused, grpc.StatusCode.FAILED_PRECONDITION),
)


class AgencyAdminApi(api_grpc.AgencyAdminServiceServicer):
    def __init__(self, admin: AgencyAdmin, *, allow_dev_identity: bool):
        self.admin = admin
        self.allow_dev_identity = allow_dev_identity

    async def _run(self, context, call, *args, **kwargs):
        refusal: tuple[grpc.StatusCode, str, str] | None = None
        try:
            principal = principal_of(context, development_identities=self.allow_dev_identity)
            return await asyncio.to_thread(call, principal, *args, **kwargs)
        except NoIdentity as error:
            refusal = (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", str(error))
        except Denied as error:
            refusal = (grpc.StatusCode.PERMISSION_DENIED, "NOT_PERMITTED", str(error))
        except DirectoryRefused as error:
            status = next(code for kind, code in _STATUS if isinstance(error, kind))
            refusal = (status, error.code, error.message)
        except OperationalError:
            refusal = (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", "the referral database is not reachable; retry")
        status, code, message = refusal
        log.info("agency directory call refused", extra={"code": code})
        context.set_trailing_metadata(((ERROR_CODE_HEADER, code),))
        await context.abort(status, message)

    async def AddAgency(self, request: api.AddAgencyRequest, context) -> api.AddAgencyResponse:
        entry = await self._run(context, self.admin.add, agency_fields_of(request.agency))
        return api.AddAgencyResponse(agency=directory_agency(entry))

    async def UpdateAgency(self, request: api.UpdateAgencyRequest, context) -> api.UpdateAgencyResponse:
        entry = await self._run(context, self.admin.update, agency_fields_of(request.agency), request.expected_version)
        return api.UpdateAgencyResponse(agency=directory_agency(entry))

    async def SuspendAgency(self, request: api.SuspendAgencyRequest, context) -> api.SuspendAgencyResponse:
        entry, escalated = await self._run(context, self.admin.suspend, request.agency_id, request.reason_code)
        return api.SuspendAgencyResponse(agency=directory_agency(entry), escalated_referral_ids=escalated)

    async def ListAgencies(self, request: api.ListAgenciesRequest, context) -> api.ListAgenciesResponse:
        entries = await self._run(context, self.admin.listing, include_suspended=request.include_suspended)
        return api.ListAgenciesResponse(agencies=[directory_agency(entry) for entry in entries])
