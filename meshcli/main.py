"""The `mesh` command: run services, play the demo, resolve regions, work with referrals."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf import json_format

from meshcli import referral_reads

TRANSITIONS = {
    "acknowledge": "Acknowledge",
    "accept": "Accept",
    "decline": "Decline",
    "start": "Start",
    "complete": "Complete",
    "cancel": "Cancel",
    "contact-lost": "ReportContactLost",
    "forward": "Forward",
    "fail": "Fail",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mesh", description="Referral mesh command line.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=("referral", "region", "notify"))

    commands.add_parser("demo", help="start Kafka and the mesh, then play the demo scenario")

    region = commands.add_parser("region", help="region-binding resolver")
    region_commands = region.add_subparsers(dest="region_command", required=True)
    resolve = region_commands.add_parser("resolve", help="dry run: who is responsible, and where is help best?")
    resolve.add_argument("args", nargs=argparse.REMAINDER)
    data = region_commands.add_parser("data", help="region data: `import FILE.csv` refreshes it from CBS")
    data.add_argument("args", nargs=argparse.REMAINDER)

    notify = commands.add_parser("notify", help="notify service operations")
    notify_commands = notify.add_subparsers(dest="notify_command", required=True)
    replay = notify_commands.add_parser("replay", help="requeue dead-lettered notification deliveries")
    replay.add_argument("--now", action="store_true", help="also try each one once from this command")
    replay.add_argument("--id", action="append", dest="ids", default=None, help="only this notification id")
    notify_commands.add_parser("login", help="print the dashboard address and a demo coordinator login")

    coordinator = commands.add_parser("coordinator", help="dashboard accounts of region and national coordinators")
    from services.notify.accounts import add_arguments as add_coordinator_arguments

    add_coordinator_arguments(coordinator)

    pki = commands.add_parser("pki", help="local certificate authority for the demo and tests")
    from meshcli.pki import add_arguments as add_pki_arguments

    add_pki_arguments(pki)

    agency = commands.add_parser("agency", help="the agency directory (operators): add, update, suspend, list")
    from meshcli.agency import add_arguments as add_agency_arguments

    add_agency_arguments(agency)

    kafka = commands.add_parser("kafka", help="credentials, topics and ACLs of a secured Kafka")
    from meshcli.kafka_ops import add_arguments as add_kafka_arguments

    add_kafka_arguments(kafka)

    outbox = commands.add_parser("outbox", help="referral outbox: events waiting to publish, parked rows")
    from meshcli.outbox_ops import add_arguments as add_outbox_arguments

    add_outbox_arguments(outbox)

    referral = commands.add_parser("referral", help="work with referrals as an agency")
    referral.add_argument("--address", default=None, help="referral service address (default from config)")
    referral.add_argument("--agency", required=True, help="acting agency id (development identity)")
    referral_commands = referral.add_subparsers(dest="referral_command", required=True)
    create = referral_commands.add_parser("create", help="create from a JSON CreateReferralRequest")
    create.add_argument("file", help="JSON file, or - for standard input")
    get = referral_commands.add_parser("get", help="show one referral")
    get.add_argument("referral_id")
    for name in TRANSITIONS:
        step = referral_commands.add_parser(name, help=f"{name} a referral")
        step.add_argument("referral_id")
        step.add_argument("--version", type=int, required=True, help="the version you last saw")
        if name == "decline":
            step.add_argument("--reason", required=True, help="e.g. NO_CAPACITY")
        if name in ("complete", "fail"):
            step.add_argument("--outcome", required=True, help="e.g. HELPED")
        if name == "forward":
            step.add_argument("--to", required=True, dest="next_receiver")
    referral_reads.add_parsers(referral_commands)
    facts = referral_commands.add_parser("update-facts", help="record changed binding facts")
    facts.add_argument("referral_id")
    facts.add_argument("--version", type=int, required=True, help="the version you last saw")
    facts.add_argument("file", help="BindingFacts as JSON (protobuf JSON mapping), or - for standard input")
    return parser


def _referral_command(options) -> int:
    import grpc

    from meshcli.client import ReferralClient
    from meshkernel.config import settings
    from referralmesh.v1 import common_pb2
    from referralmesh.v1 import referral_service_pb2 as api

    # With MESH_TLS_AGENCY_DIR or MESH_TLS_CLIENT_CERT/KEY (+ MESH_TLS_CA) this is mutual TLS.
    client = ReferralClient.for_agency(settings(), options.agency, options.address)
    try:
        if options.referral_command in referral_reads.HANDLED:
            return referral_reads.run(options, client)
        if options.referral_command == "create":
            source = sys.stdin if options.file == "-" else open(options.file, encoding="utf-8")  # noqa: SIM115
            with source:
                request = json_format.Parse(source.read(), api.CreateReferralRequest())
            result = client.create(request)
        elif options.referral_command == "get":
            result = client.get(options.referral_id)
        elif options.referral_command == "update-facts":
            try:
                source = sys.stdin if options.file == "-" else open(options.file, encoding="utf-8")  # noqa: SIM115
                with source:
                    facts = json_format.Parse(source.read(), common_pb2.BindingFacts())
            except (OSError, json_format.ParseError) as problem:
                print(f"error: {options.file}: not BindingFacts JSON: {problem}", file=sys.stderr)
                return 2
            result = client.update_facts(options.referral_id, options.version, facts)
        else:
            fields: dict[str, Any] = {}
            if options.referral_command == "decline":
                name = options.reason.upper()
                known = name in common_pb2.DeclineReason.keys()  # noqa: SIM118 - protobuf enums have no `in`
                fields["reason"] = common_pb2.DeclineReason.Value(name if known else f"DECLINE_{name}")
            if options.referral_command in ("complete", "fail"):
                name = options.outcome.upper()
                known = name in common_pb2.Outcome.keys()  # noqa: SIM118 - protobuf enums have no `in`
                fields["outcome"] = common_pb2.Outcome.Value(name if known else f"OUTCOME_{name}")
            if options.referral_command == "forward":
                fields["next_receiver"] = options.next_receiver
            result = client.transition(
                TRANSITIONS[options.referral_command], options.referral_id, options.version, **fields
            )
    except grpc.RpcError as error:
        print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(json_format.MessageToDict(result), indent=2, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    if options.command == "serve":
        import os

        from meshcli.supervisor import PARENT_PID_ENV, die_with_parent

        if os.environ.get(PARENT_PID_ENV, "").isdigit():
            die_with_parent(int(os.environ[PARENT_PID_ENV]))
        from pydantic import ValidationError

        from meshkernel.config import settings

        try:
            settings()
        except ValidationError as invalid:
            problem = invalid.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]).upper()
            print(f"mesh serve {options.service}: refusing to start: MESH_{where}: {problem['msg']}", file=sys.stderr)
            return 2
        if options.service == "referral":
            from services.referral.main import run
        elif options.service == "region":
            from services.region.main import run
        else:
            from services.notify.main import run
        from meshkernel.kafka import KafkaAccessRefused
        from meshkernel.kafka_security import KafkaSecurityError

        try:
            run()
        except (KafkaSecurityError, KafkaAccessRefused) as refused:  # one line, no stack trace
            print(f"mesh serve {options.service}: refusing to start: {refused}", file=sys.stderr, flush=True)
            return 2
        return 0
    if options.command == "demo":
        from meshcli.demo import run_demo

        return run_demo()
    if options.command == "region" and options.region_command == "data":
        from services.region.data_cli import run_data_command

        return run_data_command(options.args, sys.stdout, sys.stderr)
    if options.command == "region":
        from services.region.cli import run_resolve

        return run_resolve(options.args, sys.stdin, sys.stdout, sys.stderr)
    if options.command == "referral":
        return _referral_command(options)
    if options.command == "notify":
        from meshkernel.config import settings

        if options.notify_command == "login":
            from services.notify.demo import describe_dashboard

            if not settings().local_mode:
                print(
                    "error: demo accounts exist only with MESH_MODE=local; an operator creates accounts "
                    "with `mesh coordinator add`",
                    file=sys.stderr,
                )
                return 2
            print(describe_dashboard(settings()))
            return 0
        from services.notify.replay import run_replay

        return run_replay(settings(), now=options.now, only=set(options.ids) if options.ids else None)
    if options.command == "coordinator":
        from meshkernel.config import settings
        from services.notify.accounts import run as run_accounts

        return run_accounts(options, settings())
    if options.command == "pki":
        from meshcli.pki import run as run_pki

        return run_pki(options)
    if options.command == "agency":
        from meshcli.agency import run as run_agency

        return run_agency(options)
    if options.command == "kafka":
        from meshcli.kafka_ops import run as run_kafka

        return run_kafka(options)
    if options.command == "outbox":
        from meshcli.outbox_ops import run as run_outbox
        from meshkernel.config import settings

        return run_outbox(options, settings())
    return 2


if __name__ == "__main__":
    sys.exit(main())
