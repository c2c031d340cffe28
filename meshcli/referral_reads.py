"""`mesh referral` commands beyond create, get and the transitions: list, watch, agencies,
access log and consent withdrawal. Each prints protobuf JSON, one object per result."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import grpc
from google.protobuf import json_format

from referralmesh.v1 import common_pb2
from referralmesh.v1 import referral_service_pb2 as api

DIRECTIONS = {"any": api.DIRECTION_UNSPECIFIED, "sent": api.SENT, "received": api.RECEIVED_BY_ME}


def add_parsers(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser("list", help="list my referrals, newest change first")
    listing.add_argument("--status", action="append", default=[], help="e.g. REQUESTED (repeatable)")
    listing.add_argument("--direction", choices=sorted(DIRECTIONS), default="any")
    listing.add_argument("--need", default="", help="need domain, e.g. shelter")
    listing.add_argument("--updated-since", default="", help="ISO time, e.g. 2026-11-01T00:00:00+00:00")
    listing.add_argument("--page-size", type=int, default=50)
    listing.add_argument("--all-pages", action="store_true", help="follow page tokens to the end")

    watch = commands.add_parser("watch", help="stream every change relevant to me (Ctrl-C stops)")
    watch.add_argument("--cursor", default="", help="resume after this cursor; empty: from now on")
    watch.add_argument(
        "--for-seconds",
        type=float,
        default=3600.0,
        help="stop after this long (every call has a deadline; resume with --cursor)",
    )

    agencies = commands.add_parser("agencies", help="search the agency directory")
    agencies.add_argument("--domain", default="")
    agencies.add_argument("--region", default="", help="CBS code of a central municipality, e.g. GM0363")
    agencies.add_argument("--language", default="", help="ISO 639-1, e.g. es")
    agencies.add_argument("--accepting", action="store_true", help="only agencies taking new clients")

    access = commands.add_parser("access-log", help="who read or changed a case of mine (client's right of access)")
    access.add_argument("case_id")

    withdraw = commands.add_parser("withdraw-consent", help="the client withdrew consent: cancel open referrals")
    withdraw.add_argument("case_id")


HANDLED = frozenset({"list", "watch", "agencies", "access-log", "withdraw-consent"})


def run(options, client) -> int:
    """Run one of HANDLED against a ReferralClient; raises grpc.RpcError on a refusal."""
    stub, metadata = client.stub, client.metadata
    command = options.referral_command
    if command == "list":
        request = api.ListReferralsRequest(
            status=[common_pb2.ReferralStatus.Value(name.upper()) for name in options.status],
            direction=DIRECTIONS[options.direction],
            need_domain=options.need,
            page_size=options.page_size,
        )
        if options.updated_since:
            request.updated_since.FromDatetime(_aware(options.updated_since))
        while True:
            page = stub.ListReferrals(request, metadata=metadata, timeout=10)
            for referral in page.referrals:
                _print(referral)
            if not (options.all_pages and page.next_page_token):
                return 0
            request.page_token = page.next_page_token
    if command == "watch":
        try:
            for change in stub.WatchReferrals(
                api.WatchReferralsRequest(cursor=options.cursor), metadata=metadata, timeout=options.for_seconds
            ):
                _print(change)
        except KeyboardInterrupt:
            pass
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        return 0
    if command == "agencies":
        found = stub.SearchAgencies(
            api.SearchAgenciesRequest(
                domain=options.domain,
                region=options.region,
                language=options.language,
                accepting_only=options.accepting,
            ),
            metadata=metadata,
            timeout=10,
        )
        for agency in found.agencies:
            _print(agency)
        return 0
    if command == "access-log":
        entries = stub.GetAccessLog(api.GetAccessLogRequest(case_id=options.case_id), metadata=metadata, timeout=10)
        for entry in entries.entries:
            _print(entry)
        return 0
    if command == "withdraw-consent":
        result = stub.WithdrawConsent(
            api.WithdrawConsentRequest(case_id=options.case_id), metadata=metadata, timeout=10
        )
        for referral in result.cancelled:
            _print(referral)
        return 0
    raise ValueError(f"not a read command: {command}")


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _print(message) -> None:
    print(json.dumps(json_format.MessageToDict(message), ensure_ascii=False), flush=True)
    sys.stdout.flush()
