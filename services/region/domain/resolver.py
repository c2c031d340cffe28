"""The resolver: a pure, deterministic function of the request and the region policy.

Responsibility is immediate and never moved here: the region already responsible stays, otherwise
the region where help was asked. Binding only decides whether another region is a better place for
the help; if so it is proposed as `handover_to` (a warm handover that the responsible region starts
and that takes effect only when the other region accepts).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from . import decision as d
from .decision import Candidate, Decision, Renamed, TieBreak
from .errors import InvalidInput
from .facts import BindingFacts, ResolutionRequest
from .policy import MUNICIPALITY_CODE, Region, RegionPolicy
from .rules import BINDING, REQUIREMENT, RuleOutcome, evaluate


def resolve(request: ResolutionRequest, policy: RegionPolicy) -> Decision:
    """Decide who is responsible now, and whether a better-bound region should be asked to take over.
    Raises InvalidInput (naming the field) for a request the policy cannot answer."""
    validate_request(request, policy)
    request, renamed = _current_codes(request, policy)
    asked_region = policy.region_of(request.asked_in)
    assert asked_region is not None  # validate_request guarantees it
    if request.current_region is not None:
        responsible, because = request.current_region, d.ALREADY_RESPONSIBLE
    else:
        responsible, because = asked_region.code, d.HELP_ASKED_HERE

    candidates = _rank(
        [
            _assess_region(policy.region(code), request, policy)
            for code in _involved_regions(request, policy, responsible)
        ]
    )
    resp = next(c for c in candidates if c.region == responsible)
    qualifying = [c for c in candidates if c.qualifies]
    top = [c for c in qualifying if c.score == qualifying[0].score] if qualifying else []

    handover: Candidate | None = None
    tie: TieBreak | None = None
    if top and _better(top[0], resp):
        handover = top[0]  # `top` is sorted by region code within equal score
        if len(top) > 1:
            tie = TieBreak(tuple(c.region for c in top), handover.region, d.TIE_LOWEST_REGION_CODE)
    elif resp in top and len(top) > 1:
        tie = TieBreak(tuple(c.region for c in top), resp.region, d.TIE_RESPONSIBLE_STAYS)

    bound_nowhere = not any(c.bound for c in candidates)
    no_programme_accepts = handover is None and not resp.accepts
    if handover is not None:
        rule = d.HANDOVER_TO_BETTER_BOUND_REGION
    elif resp.qualifies:
        rule = d.BOUND_HERE
    elif no_programme_accepts:
        rule = d.NO_PROGRAMME_ACCEPTS
    elif bound_nowhere:
        rule = d.BOUND_NOWHERE
    else:
        rule = d.NO_BETTER_BOUND_REGION

    return Decision(
        region=responsible,
        region_name=resp.name,
        responsible_because=because,
        asked_in=request.asked_in,
        asked_in_region=asked_region.code,
        service=request.service,
        decision_date=request.decision_date,
        handover_to=handover.region if handover else None,
        handover_to_name=handover.name if handover else None,
        rule=rule,
        bound_nowhere=bound_nowhere,
        no_programme_accepts=no_programme_accepts,
        candidates=tuple(candidates),
        tie_broken=tie,
        policy_version=policy.version,
        renamed=renamed,
    )


def _current_codes(request: ResolutionRequest, policy: RegionPolicy) -> tuple[ResolutionRequest, tuple[Renamed, ...]]:
    """The request with every abolished municipality code replaced by its successor (a residence in
    Weesp until 2022 counts for Amsterdam), and the replacements made, in code order."""
    if not policy.abolished or not any(code in policy.abolished for code in _codes_in(request)):
        return request, ()  # the usual case: nothing to rename, no copy of the request
    used: dict[str, Renamed] = {}

    def now(code: str) -> str:
        gone = policy.abolished.get(code)
        if gone is None:
            return code
        successor = gone.successors[0]  # validate_request refused split municipalities
        used[code] = Renamed(code, gone.name, successor.code, successor.name, gone.since)
        return successor.code

    facts = request.facts
    current = replace(
        request,
        asked_in=now(request.asked_in),
        facts=BindingFacts(
            residence=tuple(replace(p, municipality=now(p.municipality)) for p in facts.residence),
            grew_up_in=tuple(now(c) for c in facts.grew_up_in),
            family_in=tuple(now(c) for c in facts.family_in),
            work=tuple(replace(p, municipality=now(p.municipality)) for p in facts.work),
        ),
    )
    return current, tuple(used[c] for c in sorted(used))


def _codes_in(request: ResolutionRequest) -> list[str]:
    facts = request.facts
    codes = [request.asked_in, *facts.grew_up_in, *facts.family_in]
    codes += [p.municipality for p in facts.residence]
    codes += [p.municipality for p in facts.work]
    return codes


def _better(candidate: Candidate, than: Candidate) -> bool:
    """Strictly better bound: qualifying beats not qualifying; among qualifying, a higher score.
    An equal score is not better: moving a client between regions has a cost of its own."""
    if not candidate.qualifies:
        return False
    return not than.qualifies or candidate.score > than.score


def _involved_regions(request: ResolutionRequest, policy: RegionPolicy, responsible: str) -> list[str]:
    # Only regions the client has a fact in can be bound; listing all 43 would bury the evidence.
    facts = request.facts
    places = [p.municipality for p in facts.residence] + [w.municipality for w in facts.work]
    places += list(facts.grew_up_in) + list(facts.family_in)
    codes = {responsible, _region_code_of(request.asked_in, policy)}
    codes.update(_region_code_of(m, policy) for m in places)
    return sorted(codes)


def _region_code_of(municipality: str, policy: RegionPolicy) -> str:
    region = policy.region_of(municipality)
    assert region is not None  # validated before: every known municipality lies in a region
    return region.code


# A region weighed, before ranking: (region, bound, accepts, score, evidence for, evidence against).
_Assessment = tuple[Region, bool, bool, int, tuple[RuleOutcome, ...], tuple[RuleOutcome, ...]]


def _assess_region(region: Region | None, request: ResolutionRequest, policy: RegionPolicy) -> _Assessment:
    assert region is not None
    service = region.services[request.service]
    members = region.municipality_codes
    facts, on = request.facts, request.decision_date
    binding = [evaluate(r, BINDING, i, facts, members, on) for i, r in enumerate(service.rules)]
    required = [evaluate(r, REQUIREMENT, i, facts, members, on) for i, r in enumerate(service.requires)]
    bound = any(o.met for o in binding)
    accepts = all(o.met for o in required)
    kinds_met = {o.kind for o in binding if o.met}
    outcomes = binding + required
    return (
        region,
        bound,
        accepts,
        sum(policy.ranking[k] for k in kinds_met),
        tuple(o for o in outcomes if o.met),
        tuple(o for o in outcomes if not o.met),
    )


def _rank(assessed: list[_Assessment]) -> list[Candidate]:
    # Deterministic order: qualifying first, higher score first, then the lower region code.
    # Ranked before the candidates are made, so each is built once with its rank.
    ordered = sorted(assessed, key=lambda a: (not (a[1] and a[2]), -a[3], a[0].code))
    return [
        Candidate(
            region=region.code,
            name=region.name,
            bound=bound,
            accepts=accepts,
            qualifies=bound and accepts,
            score=score,
            rank=rank,
            evidence_for=met,
            evidence_against=unmet,
        )
        for rank, (region, bound, accepts, score, met, unmet) in enumerate(ordered, start=1)
    ]


# --------------------------------------------------------------------------- validation


def validate_request(request: ResolutionRequest, policy: RegionPolicy) -> None:
    """Refuse a request the policy cannot answer, naming the field. Never guess a region."""
    _municipality(request.asked_in, "asked_in", policy)
    if not isinstance(request.service, str) or request.service not in policy.service_kinds:
        raise InvalidInput("service", f"unknown service; known: {', '.join(policy.service_kinds)}")
    if not isinstance(request.decision_date, date):
        raise InvalidInput("decision_date", "must be a date")
    if request.current_region is not None:
        _region_code(request.current_region, policy)
    facts = request.facts
    for i, period in enumerate(facts.residence):
        where = f"facts.residence[{i}]"
        _municipality(period.municipality, f"{where}.municipality", policy)
        _period(period.start, period.end, where, request.decision_date)
        if not isinstance(period.registered, bool):
            raise InvalidInput(f"{where}.registered", "must be true or false")
    for i, worked in enumerate(facts.work):
        where = f"facts.work[{i}]"
        _municipality(worked.municipality, f"{where}.municipality", policy)
        _period(worked.start, worked.end, where, request.decision_date)
    for name in ("grew_up_in", "family_in"):
        for i, code in enumerate(getattr(facts, name)):
            _municipality(code, f"facts.{name}[{i}]", policy)


def _municipality(code: object, field: str, policy: RegionPolicy) -> None:
    if not isinstance(code, str) or not code:
        raise InvalidInput(field, "must be a municipality code like GM0363")
    if not MUNICIPALITY_CODE.match(code):
        # Malformed input is not repeated back: it may be anything a person typed (DESIGN.md 5).
        raise InvalidInput(field, "is not a CBS municipality code (GM followed by four digits)")
    gone = policy.abolished.get(code)
    if gone is not None:
        if gone.split:
            names = ", ".join(m.name for m in gone.successors)
            raise InvalidInput(
                field,
                f"{code} ({gone.name}) was divided between {names} on {gone.since.isoformat()}; "
                "give the current municipality instead",
            )
        code = gone.successors[0].code
    if policy.region_of(code) is None:
        raise InvalidInput(field, f"unknown municipality code {code}: not in any region of policy {policy.version}")


def _region_code(code: object, policy: RegionPolicy) -> None:
    _municipality(code, "current_region", policy)
    if policy.region(code) is None:  # type: ignore[arg-type]
        central = policy.region_of(code)  # type: ignore[arg-type]
        assert central is not None  # a known municipality (checked above) lies in a region
        raise InvalidInput(
            "current_region",
            f"{code} is not a region code; regions are named by their central municipality ({central.code})",
        )


def _period(start: object, end: object, where: str, decision_date: date) -> None:
    if not isinstance(start, date):
        raise InvalidInput(f"{where}.from", "must be a date")
    if end is not None and not isinstance(end, date):
        raise InvalidInput(f"{where}.to", "must be a date or null")
    if start > decision_date:
        raise InvalidInput(f"{where}.from", f"is in the future: after decision_date {decision_date.isoformat()}")
    if end is not None and end > decision_date:
        raise InvalidInput(
            f"{where}.to", f"is in the future: after decision_date {decision_date.isoformat()} (use null for ongoing)"
        )
    if end is not None and end < start:
        raise InvalidInput(f"{where}.to", "period ends before it starts")
