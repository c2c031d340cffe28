"""`mesh agency add|update|suspend|list`: the agency directory, changed without a redeploy.

Calls the referral service's AgencyAdminService as an operator: with the operator's client
certificate (MESH_TLS_CLIENT_CERT/KEY + MESH_TLS_CA, a certificate whose URI name is
urn:referralmesh:operator:NAME, e.g. `var/pki/operators/operator.crt` of `mesh pki init`),
or in MESH_MODE=local without TLS as the development operator `--operator NAME`.

`add --pki DIR` also issues the new agency's client certificate from the local CA of
`mesh pki init DIR`; `suspend --pki DIR` revokes it there, which rewrites DIR/crl.pem (the
servers reload a changed CRL file on the next call). With a real PKI (PKIoverheid) the
operator asks the CA to revoke it and puts its new CRL where MESH_TLS_CRL points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from google.protobuf import json_format

from meshkernel.callers import DEV_OPERATOR_HEADER
from meshkernel.tls import client_identity_from, open_channel

CALL_TIMEOUT = 10.0


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _entry_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("agency_id", help="a lowercase slug such as shelter-zwolle")
    parser.add_argument("--name", required=required, help="the full name, for agencies and coordinators")
    parser.add_argument(
        "--client-display-name", required=required, help="the neutral name client messages show (no outing words)"
    )
    parser.add_argument("--kind", required=required, help="shelter, care, municipality, central_municipality, ...")
    parser.add_argument("--oin", required=required, help="the 20-digit OIN its certificate carries")
    parser.add_argument("--regions", required=required, help="CBS codes served, comma-separated (GM0363,GM0599)")
    parser.add_argument("--domains", required=required, help="need domains, comma-separated (shelter,health)")
    parser.add_argument("--languages", required=required, help="ISO 639-1 codes, comma-separated (nl,en)")
    parser.add_argument(
        "--not-accepting", action="store_true", help="no capacity for new referrals by matching right now"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, help="referral service (default: MESH_REFERRAL_GRPC_ADDRESS)")
    parser.add_argument(
        "--operator", default="operator", help="development operator name (MESH_MODE=local without TLS only)"
    )
    commands = parser.add_subparsers(dest="agency_command", required=True)
    add = commands.add_parser("add", help="add an agency; --pki DIR also issues its certificate")
    _entry_arguments(add, required=True)
    add.add_argument("--pki", type=Path, default=None, help="issue its client certificate from this local CA")
    update = commands.add_parser("update", help="replace an agency's entry (fields not given stay as they are)")
    _entry_arguments(update, required=False)
    update.add_argument("--accepting", action="store_true", help="takes new referrals by matching again")
    suspend = commands.add_parser(
        "suspend", help="no new referrals to it, its open referrals to the region coordinator; --pki DIR revokes"
    )
    suspend.add_argument("agency_id")
    suspend.add_argument("--reason", required=True, help="a short code such as CONTRACT_ENDED (no free text)")
    suspend.add_argument("--pki", type=Path, default=None, help="revoke its certificate in this local CA")
    listing = commands.add_parser("list", help="the directory as the referral service holds it")
    listing.add_argument("--all", action="store_true", help="include suspended agencies")


class AgencyAdminClient:
    def __init__(self, config: Any, address: str | None = None, operator: str = "operator"):
        from referralmesh.v1 import agency_admin_service_pb2_grpc as api_grpc

        identity = client_identity_from(config)
        self.channel = open_channel(address or config.referral_grpc_address, identity)
        self.metadata: tuple = () if identity is not None else ((DEV_OPERATOR_HEADER, operator),)
        self.stub = api_grpc.AgencyAdminServiceStub(self.channel)

    def call(self, method: str, request: Any) -> Any:
        return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT, metadata=self.metadata)

    def close(self) -> None:
        self.channel.close()


def _fill(entry: Any, options: argparse.Namespace) -> None:
    for option, field in (("name", "name"), ("client_display_name", "client_display_name"), ("kind", "kind")):
        value = getattr(options, option)
        if value is not None:
            setattr(entry, field, value)
    if options.oin is not None:
        entry.oin = options.oin
    for option, field in (("regions", "regions_served"), ("domains", "need_domains"), ("languages", "languages")):
        value = getattr(options, option)
        if value is not None:
            del getattr(entry, field)[:]
            getattr(entry, field).extend(_csv(value))
    if options.not_accepting:
        entry.accepting = False
    elif options.agency_command == "add" or getattr(options, "accepting", False):
        entry.accepting = True


def _issue_certificate(pki: Path, entry: Any, *, revoke: bool) -> None:
    from meshcli.pki import init

    holder = SimpleNamespace(agency_id=entry.agency_id, name=entry.name, oin=entry.oin)
    init(pki, [holder], operators=(), revoke=(entry.agency_id,) if revoke else (), log=_say)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def run(options: argparse.Namespace) -> int:
    import grpc

    from meshkernel.config import settings
    from referralmesh.v1 import agency_admin_service_pb2 as api
    from referralmesh.v1 import common_pb2

    client = AgencyAdminClient(settings(), options.address, options.operator)
    try:
        if options.agency_command == "add":
            entry = common_pb2.DirectoryAgency(agency_id=options.agency_id)
            _fill(entry, options)
            result = client.call("AddAgency", api.AddAgencyRequest(agency=entry)).agency
            if options.pki is not None:
                _issue_certificate(options.pki, result, revoke=False)
        elif options.agency_command == "update":
            listed = client.call("ListAgencies", api.ListAgenciesRequest(include_suspended=True)).agencies
            current = next((a for a in listed if a.agency_id == options.agency_id), None)
            if current is None:
                print(f"error: NOT_FOUND: no agency {options.agency_id} in the directory", file=sys.stderr)
                return 1
            entry = common_pb2.DirectoryAgency()
            entry.CopyFrom(current)
            _fill(entry, options)
            request = api.UpdateAgencyRequest(agency=entry, expected_version=current.version)
            result = client.call("UpdateAgency", request).agency
        elif options.agency_command == "suspend":
            answer = client.call(
                "SuspendAgency", api.SuspendAgencyRequest(agency_id=options.agency_id, reason_code=options.reason)
            )
            result = answer
            if options.pki is not None:
                _issue_certificate(options.pki, answer.agency, revoke=True)
            _say(f"{len(answer.escalated_referral_ids)} open referral(s) escalated to the region coordinator")
        else:
            result = client.call("ListAgencies", api.ListAgenciesRequest(include_suspended=options.all))
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(json_format.MessageToDict(result), indent=2, ensure_ascii=False))
    return 0
