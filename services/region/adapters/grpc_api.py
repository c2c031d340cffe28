"""RegionService over gRPC, served from inside the Faust worker (same process, same event loop).

Resolve is a dry run of the pure resolver; GetAssignment answers from the worker's `cases`
table; ListRegions describes the loaded policy: regions, municipalities, per service kind the
binding rules and local requirements (each with its parameters and a plain-English summary), and
the national ranking weights. Health checking and server reflection are on,
so `grpcurl -plaintext ADDRESS list` works without the proto files.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

import faust
import grpc
import mode
from kafka.partitioner.default import murmur2

from meshkernel.callers import NoIdentity, principal_of
from meshkernel.config import MeshSettings
from meshkernel.grpc_health import add_health_and_reflection, mark_serving
from meshkernel.grpc_server import bind, new_server
from meshkernel.health import ServiceHealth
from meshkernel.principal import Denied, Principal
from meshkernel.tls import ROLES, PeerVerifier, ServerTls, make_verifier, server_tls_from
from referencedata.agencies import load_directory
from referralmesh.v1 import region_service_pb2 as api
from referralmesh.v1 import region_service_pb2_grpc
from services.region.adapters.assigning import assignment_from_entry
from services.region.adapters.facts_mapping import assignment_from_decision, request_document
from services.region.decide import Resolver
from services.region.domain.authorisation import may_read_assignment
from services.region.domain.errors import InvalidInput
from services.region.domain.policy import ServiceRules
from services.region.domain.rules import GrewUpRule, ResidenceRule, Rule, WorkRule

log = logging.getLogger(__name__)
SERVICE_NAME = api.DESCRIPTOR.services_by_name["RegionService"].full_name
MAX_MESSAGE_BYTES = 256 * 1024


def partition_of(case_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) puts a case id on."""
    return (murmur2(case_id.encode()) & 0x7FFFFFFF) % partitions


class RegionApi(region_service_pb2_grpc.RegionServiceServicer):
    def __init__(
        self,
        resolver: Resolver,
        cases,
        *,
        app: faust.App | None,
        source_topic: str,
        partitions: int,
        development_identities: bool = False,
    ):
        self.resolver = resolver
        self.cases = cases
        self.app = app
        self.source_topic = source_topic
        self.partitions = partitions
        self.development_identities = development_identities

    async def _principal(self, context) -> Principal:
        try:
            return principal_of(context, development_identities=self.development_identities)
        except NoIdentity as problem:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(problem))
            raise

    async def Resolve(self, request: api.ResolveRequest, context) -> api.ResolveResponse:
        await self._principal(context)  # any authenticated caller: no case data involved
        service = request.service
        document = request_document(
            asked_in=request.asked_in,
            service=service,
            decision_date=request.decision_date or date.today().isoformat(),  # noqa: DTZ011 - the service's calendar day
            current_region=request.current_region or None,
            facts=request.facts,
        )
        try:
            decision = self.resolver.decide(document)
        except InvalidInput as problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{problem.field}: {problem.problem}")
        return api.ResolveResponse(decision=assignment_from_decision(decision, service=service, trigger="Resolve"))

    async def GetAssignment(self, request: api.GetAssignmentRequest, context) -> api.GetAssignmentResponse:
        who = await self._principal(context)
        case_id = request.case_id.strip()
        if not case_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "case_id: must not be empty")
        record = self.cases.get(case_id) if hasattr(self.cases, "get") else None
        if not record:
            problem = self._not_here(case_id)
            if problem:
                await context.abort(grpc.StatusCode.UNAVAILABLE, problem)
            await context.abort(grpc.StatusCode.NOT_FOUND, f"case_id: no assignment known for case {case_id}")
        assert record is not None  # abort raises
        history = record.get("history", [])
        if not history:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"case_id: no assignment known for case {case_id}")
        try:
            may_read_assignment(
                who,
                parties=(record.get("sender", ""), record.get("receiver", ""), *record.get("parties", ())),
                regions=(history[-1].get("region", ""), history[-1].get("handover_to", "")),
            )
        except Denied:
            log.warning("assignment read refused", extra={"case_id": case_id, "caller": str(who)})
            # The same answer as for an unknown case, so strangers learn nothing of its existence.
            await context.abort(grpc.StatusCode.NOT_FOUND, f"case_id: no assignment known for case {case_id}")
        response = api.GetAssignmentResponse(current=assignment_from_entry(history[-1], record))
        for entry in history:
            item = response.history.add(assignment=assignment_from_entry(entry, record))
            item.at.FromDatetime(datetime.fromisoformat(entry["at"]))
        return response

    def _not_here(self, case_id: str) -> str | None:
        """Why this worker may not know a case it has no record of, or None if it should know."""
        app = self.app
        if app is None:
            return None
        partition = partition_of(case_id, self.partitions)
        if getattr(app, "rebalancing", False) or getattr(app, "in_recovery", False):
            return f"case {case_id}: this worker is rebalancing or recovering its table; try again shortly"
        try:
            actives = {(tp.topic, tp.partition) for tp in app.assignor.assigned_actives()}
        except Exception:
            return None
        if (self.source_topic, partition) not in actives:
            return f"case {case_id} lives on partition {partition}, which another region worker owns; ask that worker"
        return None

    async def ListRegions(self, request: api.ListRegionsRequest, context) -> api.ListRegionsResponse:
        await self._principal(context)  # any authenticated caller: the published policy
        policy = self.resolver.policy
        response = api.ListRegionsResponse(policy_version=policy.version, ranking=dict(policy.ranking))
        for region in policy.regions:
            response.regions.add(
                code=region.code,
                name=region.name,
                municipalities=[m.code for m in region.municipalities],
                services=sorted(region.services),
                policies=[service_policy(kind, region.services[kind]) for kind in sorted(region.services)],
            )
        return response


def rule_summary(rule: Rule) -> str:
    """The rule in one plain English line, e.g. "residence of at least 2 years in the last 3 years"."""
    if isinstance(rule, ResidenceRule):
        what = "registered residence" if rule.registered_only else "residence"
        window = f" in the last {rule.within_years} years" if rule.within_years else ""
        return f"{what} of at least {rule.years} {'year' if rule.years == 1 else 'years'}{window}"
    if isinstance(rule, WorkRule):
        window = f" in the last {rule.within_years} years" if rule.within_years else ""
        return f"worked at least {rule.months} {'month' if rule.months == 1 else 'months'}{window}"
    if isinstance(rule, GrewUpRule):
        return "grew up in a municipality of the region"
    return "close family lives in a municipality of the region"


def binding_rule(rule: Rule, *, required: bool) -> api.BindingRule:
    params = {
        name: (str(value).lower() if isinstance(value, bool) else str(value))
        for name, value in vars(rule).items()
        if value is not None
    }
    return api.BindingRule(kind=rule.kind, params=params, summary=rule_summary(rule), required=required)


def service_policy(kind: str, rules: ServiceRules) -> api.ServicePolicy:
    return api.ServicePolicy(
        service=kind,
        rules=[binding_rule(r, required=False) for r in rules.rules],
        requires=[binding_rule(r, required=True) for r in rules.requires],
    )


def build_server(
    api_servicer: RegionApi, config: MeshSettings, tls: ServerTls | None = None, verifier: PeerVerifier | None = None
) -> tuple[grpc.aio.Server, object]:
    server = new_server(config, max_receive_bytes=MAX_MESSAGE_BYTES, verifier=verifier, roles=ROLES)
    region_service_pb2_grpc.add_RegionServiceServicer_to_server(api_servicer, server)
    health_servicer = add_health_and_reflection(server, SERVICE_NAME)
    bind(server, config.region_grpc_address, tls)
    return server, health_servicer


def attach_grpc_server(
    app: faust.App,
    config: MeshSettings,
    resolver: Resolver,
    cases,
    *,
    incoming_topic: str,
    readiness: ServiceHealth | None = None,
) -> None:
    """Start the gRPC server with the worker and stop it (gracefully) when the worker stops."""

    @app.service
    class RegionGrpcServer(mode.Service):
        server: grpc.aio.Server | None = None
        health_servicer: Any = None

        async def on_start(self) -> None:
            servicer = RegionApi(
                resolver,
                cases,
                app=app,
                source_topic=incoming_topic,
                partitions=config.topic_partitions,
                development_identities=config.development_identities,
            )
            tls = server_tls_from(config)
            verifier = make_verifier(tls, load_directory(config.agency_directory_path)) if tls else None
            self.server, self.health_servicer = build_server(servicer, config, tls, verifier)
            await self.server.start()
            if readiness is not None:  # SERVING only while the worker is ready
                await readiness.attach(self.health_servicer)
            else:
                await mark_serving(self.health_servicer, SERVICE_NAME)
            log.info("region gRPC listening", extra={"address": config.region_grpc_address})

        async def on_stop(self) -> None:
            if self.server is not None:
                if readiness is not None:
                    await readiness.stop()
                await self.health_servicer.enter_graceful_shutdown()
                await self.server.stop(grace=3)
                log.info("region gRPC stopped")
