"""Proto <-> resolver translation: the resolver's own JSON input format (see the README) for the
gRPC `Resolve` call, and the domain objects themselves for the region worker (issue 13: the
document -> dict -> parse round trip and the JSON decision cost more per event than deciding)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from referralmesh.v1 import common_pb2, events_pb2
from services.region.domain import (
    BindingFacts,
    Decision,
    ResidencePeriod,
    ResolutionRequest,
    WorkPeriod,
    parse_request,
)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def _period(period: common_pb2.Period, *, with_registration: bool) -> dict:
    entry: dict[str, str | bool | None] = {
        "municipality": period.municipality,
        "from": period.from_date,
        "to": period.to_date or None,
    }
    if with_registration:
        entry["registered"] = period.registered
    return entry


def request_document(
    *,
    asked_in: str,
    service: str,
    decision_date: str,
    current_region: str | None,
    facts: common_pb2.BindingFacts,
) -> dict:
    return {
        "asked_in": asked_in,
        "service": service,
        "decision_date": decision_date,
        "current_region": current_region,
        "facts": {
            "residence": [_period(p, with_registration=True) for p in facts.residence],
            "grew_up_in": list(facts.grew_up_in),
            "family_in": list(facts.family_in),
            "work": [_period(p, with_registration=False) for p in facts.work],
        },
    }


def assignment_from_decision(decision: dict, **context) -> events_pb2.AssignmentEvent:
    """Build the assignment event from the resolver's JSON decision plus case context."""
    assignment = events_pb2.AssignmentEvent(
        responsible_region=decision["region"],
        handover_to=decision.get("handover_to") or "",
        rule=decision["rule"],
        bound_nowhere=bool(decision.get("bound_nowhere")),
        no_programme_accepts=bool(decision.get("no_programme_accepts")),
        policy_version=str(decision.get("policy_version", "")),
        **context,
    )
    for candidate in decision.get("candidates", []):
        assignment.candidates.append(
            events_pb2.CandidateRegion(
                region=candidate.get("region", ""),
                qualifies=bool(candidate.get("qualifies")),
                score=float(candidate.get("score") or 0.0),
                evidence_for=[_summary(item) for item in candidate.get("evidence_for", [])],
                evidence_against=[_summary(item) for item in candidate.get("evidence_against", [])],
            )
        )
    assignment.explanation.update(decision.get("explanation", {}))
    return assignment


def _summary(evidence) -> str:
    return evidence.get("summary", "") if isinstance(evidence, dict) else str(evidence)


def request_from_proto(
    *,
    asked_in: str,
    service: str,
    decision_date: str,
    current_region: str | None,
    facts: common_pb2.BindingFacts,
) -> ResolutionRequest:
    """The request the resolver's document would parse to, built straight from the proto. Input
    the JSON parser would refuse (an empty text, a malformed date) goes through that parser, so
    the refusal names the field in the same words (`InvalidInput`)."""
    try:
        return ResolutionRequest(
            asked_in=_text(asked_in),
            service=_text(service),
            decision_date=_date(decision_date),
            current_region=None if current_region is None else _text(current_region),
            facts=BindingFacts(
                residence=tuple(
                    ResidencePeriod(
                        municipality=_text(p.municipality),
                        start=_date(p.from_date),
                        end=_date(p.to_date) if p.to_date else None,
                        registered=p.registered,
                    )
                    for p in facts.residence
                ),
                grew_up_in=tuple(_text(code) for code in facts.grew_up_in),
                family_in=tuple(_text(code) for code in facts.family_in),
                work=tuple(
                    WorkPeriod(
                        municipality=_text(p.municipality),
                        start=_date(p.from_date),
                        end=_date(p.to_date) if p.to_date else None,
                    )
                    for p in facts.work
                ),
            ),
        )
    except ValueError:
        document = request_document(
            asked_in=asked_in,
            service=service,
            decision_date=decision_date,
            current_region=current_region,
            facts=facts,
        )
        return parse_request(document)  # raises InvalidInput naming the field


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError(value)
    return value


def _date(value: str) -> date:
    if not _ISO_DATE.match(value):
        raise ValueError(value)
    return date.fromisoformat(value)


def assignment_from(decision: Decision, explained_in: Iterable[str], **context) -> events_pb2.AssignmentEvent:
    """The assignment event from the resolver's Decision plus case context, explained in the
    languages `explained_in`: what `assignment_from_decision(decision_to_dict(decision,
    explained_in))` builds, without the JSON decision in between."""
    assignment = events_pb2.AssignmentEvent(
        responsible_region=decision.region,
        handover_to=decision.handover_to or "",
        rule=decision.rule,
        bound_nowhere=decision.bound_nowhere,
        no_programme_accepts=decision.no_programme_accepts,
        policy_version=decision.policy_version,
        **context,
    )
    for candidate in decision.candidates:
        assignment.candidates.append(
            events_pb2.CandidateRegion(
                region=candidate.region,
                qualifies=candidate.qualifies,
                score=float(candidate.score),
                evidence_for=[outcome.summary() for outcome in candidate.evidence_for],
                evidence_against=[outcome.summary() for outcome in candidate.evidence_against],
            )
        )
    assignment.explanation.update(decision.explained(explained_in))
    return assignment
