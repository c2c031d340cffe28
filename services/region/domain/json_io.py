"""JSON in and out: parse a request (as the CLI and adapters receive it) with errors that name
the field, and render a Decision as plain JSON-able data.

Wire names differ from Python names only where Python forbids them: a period is
`{"municipality", "from", "to", "registered"}` on the wire and `start`/`end` in Python.
Field checks here are about shape (types, required keys, dates); whether a code is known or a
period is plausible is checked by the resolver against the policy, with the same field paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from .decision import LANGUAGES, Candidate, Decision
from .errors import InvalidInput
from .facts import BindingFacts, ResidencePeriod, ResolutionRequest, WorkPeriod
from .rules import RuleOutcome

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")

_REQUEST_KEYS = {"asked_in", "service", "decision_date", "current_region", "facts"}
_FACT_KEYS = {"residence", "grew_up_in", "family_in", "work"}
_RESIDENCE_KEYS = {"municipality", "from", "to", "registered"}
_WORK_KEYS = {"municipality", "from", "to"}


def parse_request(data: Any) -> ResolutionRequest:
    """Turn decoded JSON into a ResolutionRequest. Raises InvalidInput naming the field."""
    obj = _object(data, "", _REQUEST_KEYS, required={"asked_in", "service", "decision_date", "facts"})
    current = obj.get("current_region")
    return ResolutionRequest(
        asked_in=_text(obj["asked_in"], "asked_in"),
        service=_text(obj["service"], "service"),
        decision_date=_date(obj["decision_date"], "decision_date"),
        current_region=None if current is None else _text(current, "current_region"),
        facts=_facts(obj["facts"]),
    )


def _facts(data: Any) -> BindingFacts:
    # The four lists may be left out: an empty list and a missing list both mean "nothing known".
    obj = _object(data, "facts", _FACT_KEYS)
    residence = []
    for i, item in enumerate(_list(obj.get("residence", []), "facts.residence")):
        where = f"facts.residence[{i}]"
        p = _object(item, where, _RESIDENCE_KEYS, required=_RESIDENCE_KEYS)
        if not isinstance(p["registered"], bool):
            raise InvalidInput(f"{where}.registered", "must be true or false")
        residence.append(
            ResidencePeriod(
                municipality=_text(p["municipality"], f"{where}.municipality"),
                start=_date(p["from"], f"{where}.from"),
                end=_optional_date(p["to"], f"{where}.to"),
                registered=p["registered"],
            )
        )
    work = []
    for i, item in enumerate(_list(obj.get("work", []), "facts.work")):
        where = f"facts.work[{i}]"
        p = _object(item, where, _WORK_KEYS, required=_WORK_KEYS)
        work.append(
            WorkPeriod(
                municipality=_text(p["municipality"], f"{where}.municipality"),
                start=_date(p["from"], f"{where}.from"),
                end=_optional_date(p["to"], f"{where}.to"),
            )
        )
    places = {
        name: tuple(_text(v, f"facts.{name}[{i}]") for i, v in enumerate(_list(obj.get(name, []), f"facts.{name}")))
        for name in ("grew_up_in", "family_in")
    }
    return BindingFacts(residence=tuple(residence), work=tuple(work), **places)


def _object(
    data: Any, where: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidInput(where or "input", "must be a JSON object")
    if data.keys() <= allowed and data.keys() >= required:
        return data  # the usual case, checked without building the messages below
    prefix = f"{where}." if where else ""
    for key in sorted(data):
        if key not in allowed:
            raise InvalidInput(f"{prefix}{key}", f"unknown field; allowed: {', '.join(sorted(allowed))}")
    for key in sorted(required):
        if key not in data:
            raise InvalidInput(f"{prefix}{key}", "is required")
    return data


def _list(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidInput(where, "must be a list")
    return data


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(where, "must be a text")
    if not value.strip():
        raise InvalidInput(where, "must not be empty")
    return value


def _date(value: Any, where: str) -> date:
    text = _text(value, where)
    if not _ISO_DATE.match(text):
        raise InvalidInput(where, "is not a date in the form yyyy-mm-dd")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(where, "is not an existing date") from None


def _optional_date(value: Any, where: str) -> date | None:
    return None if value is None else _date(value, where)


# --------------------------------------------------------------------------- output


def request_to_dict(request: ResolutionRequest) -> dict[str, Any]:
    """The inverse of parse_request, for adapters that forward or store requests."""
    f = request.facts
    return {
        "asked_in": request.asked_in,
        "service": request.service,
        "decision_date": request.decision_date.isoformat(),
        "current_region": request.current_region,
        "facts": {
            "residence": [
                {
                    "municipality": p.municipality,
                    "from": p.start.isoformat(),
                    "to": _iso(p.end),
                    "registered": p.registered,
                }
                for p in f.residence
            ],
            "grew_up_in": list(f.grew_up_in),
            "family_in": list(f.family_in),
            "work": [{"municipality": p.municipality, "from": p.start.isoformat(), "to": _iso(p.end)} for p in f.work],
        },
    }


def decision_to_dict(decision: Decision, languages: Iterable[str] = LANGUAGES) -> dict[str, Any]:
    """The decision as JSON-able data, its explanation in `languages` (all five unless narrowed)."""
    tie = decision.tie_broken
    return {
        "region": decision.region,
        "region_name": decision.region_name,
        "responsible_because": decision.responsible_because,
        "handover_to": decision.handover_to,
        "handover_to_name": decision.handover_to_name,
        "rule": decision.rule,
        "bound_nowhere": decision.bound_nowhere,
        "no_programme_accepts": decision.no_programme_accepts,
        "tie_broken": None if tie is None else {"between": list(tie.between), "chosen": tie.chosen, "by": tie.by},
        "asked_in": decision.asked_in,
        "asked_in_region": decision.asked_in_region,
        "service": decision.service,
        "decision_date": decision.decision_date.isoformat(),
        "policy_version": decision.policy_version,
        "candidates": [_candidate(c) for c in decision.candidates],
        "renamed_municipalities": [
            {"code": r.code, "name": r.name, "now": r.now, "now_name": r.now_name, "since": r.since.isoformat()}
            for r in decision.renamed
        ],
        "explanation": decision.explained(languages),
    }


def _candidate(c: Candidate) -> dict[str, Any]:
    return {
        "region": c.region,
        "name": c.name,
        "rank": c.rank,
        "score": c.score,
        "qualifies": c.qualifies,
        "bound": c.bound,
        "accepts": c.accepts,
        "evidence_for": [_evidence(o) for o in c.evidence_for],
        "evidence_against": [_evidence(o) for o in c.evidence_against],
    }


def _evidence(o: RuleOutcome) -> dict[str, Any]:
    measured: dict[str, Any] = {}
    if o.days is not None:
        measured = {"days": o.days, "needed_days": o.needed_days}
    elif o.kind in ("grew_up", "family"):
        measured = {"municipalities": list(o.municipalities)}
    return {
        "rule": o.kind,
        "role": o.role,
        "index": o.index,
        "met": o.met,
        "params": o.params(),
        "measured": measured,
        "summary": o.summary(),
    }


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()
