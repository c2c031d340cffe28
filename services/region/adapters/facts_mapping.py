"""Proto <-> resolver translation, in the resolver's own JSON input format (see the README)."""

from __future__ import annotations

from referralmesh.v1 import common_pb2, events_pb2


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
