"""Who is calling: the agency is taken from the connection, never from a request field.

Mutual TLS (the agency's certificate, OIN in the subject serial number) is the production
path and arrives with the referral-service issue; until then the embedded default accepts a
development identity header on loopback only, so the walking skeleton can run end to end.
"""
from __future__ import annotations

import grpc

from services.referral.application import Caller

DEV_AGENCY_HEADER = "x-mesh-dev-agency"
USER_HEADER = "x-mesh-user"
ON_BEHALF_HEADER = "x-mesh-on-behalf-of"


class Unauthenticated(Exception):
    pass


def caller_from(context: grpc.aio.ServicerContext, *, allow_dev_identity: bool) -> Caller:
    metadata = {key: value for key, value in (context.invocation_metadata() or ())}
    agency = None
    if allow_dev_identity and context.peer().startswith(("ipv4:127.", "ipv6:[::1]", "unix:")):
        agency = metadata.get(DEV_AGENCY_HEADER)
    if not agency:
        raise Unauthenticated("no agency identity on this connection")
    return Caller(
        agency_id=agency,
        user=metadata.get(USER_HEADER, "system"),
        on_behalf_of=metadata.get(ON_BEHALF_HEADER, "client"),
    )
