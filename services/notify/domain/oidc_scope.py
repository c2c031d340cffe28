"""Which dashboard scope a user signed in at an identity provider gets: one region, NATIONAL, or
none (then the sign-in is refused).

Pure: the claims of a validated ID token and the operator's mapping in, a decision out.

Guarantees:
- a subject named in the mapping gets exactly the scope the mapping names for it, whatever its
  claims say (the operator's word is final);
- otherwise the scope claim decides; it may be one string or a list of strings (a groups or
  roles claim). Each value counts if the mapping names it (`claim_values`), or if it is itself a
  region code of the policy or NATIONAL (compared without regard to case or surrounding space);
- NATIONAL among the values wins (a national coordinator sees every region anyway); two or more
  different regions without NATIONAL is ambiguous and refused, never resolved by picking one;
- no usable value refuses; a claim of another type (number, object) counts as no value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum

from services.notify.domain.alerts import NATIONAL


class ScopeReason(Enum):
    SUBJECT_MAPPING = "subject_mapping"
    CLAIM = "claim"
    NO_SCOPE = "no_scope"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class ScopeMapping:
    claim: str = "mesh_region"
    subjects: Mapping[str, str] = field(default_factory=dict)  # subject -> region code or NATIONAL
    claim_values: Mapping[str, str] = field(default_factory=dict)  # group/role value -> region code or NATIONAL


@dataclass(frozen=True)
class ScopeDecision:
    scope: str | None  # None: refused
    reason: ScopeReason


class ScopeMappingError(ValueError):
    pass


def check_mapping(mapping: ScopeMapping, regions: Collection[str]) -> None:
    """Refuse a mapping that names a scope the region policy does not know (at start, not at sign-in)."""
    if not mapping.claim.strip():
        raise ScopeMappingError("the scope claim name is empty")
    for kind, entries in (("subjects", mapping.subjects), ("claim_values", mapping.claim_values)):
        for key, scope in entries.items():
            if scope != NATIONAL and scope not in regions:
                raise ScopeMappingError(f"{kind}: {key!r} -> {scope!r} is neither a region of the policy nor NATIONAL")


def decide_scope(claims: Mapping[str, object], mapping: ScopeMapping, regions: Collection[str]) -> ScopeDecision:
    subject = claims.get("sub")
    if isinstance(subject, str) and subject in mapping.subjects:
        return ScopeDecision(mapping.subjects[subject], ScopeReason.SUBJECT_MAPPING)
    scopes = {scope for value in _values(claims.get(mapping.claim)) if (scope := _scope_of(value, mapping, regions))}
    if NATIONAL in scopes:
        return ScopeDecision(NATIONAL, ScopeReason.CLAIM)
    if len(scopes) == 1:
        return ScopeDecision(scopes.pop(), ScopeReason.CLAIM)
    return ScopeDecision(None, ScopeReason.AMBIGUOUS if scopes else ScopeReason.NO_SCOPE)


def _values(claim: object) -> list[str]:
    if isinstance(claim, str):
        return [claim]
    if isinstance(claim, list | tuple):
        return [value for value in claim if isinstance(value, str)]
    return []


def _scope_of(value: str, mapping: ScopeMapping, regions: Collection[str]) -> str | None:
    if value in mapping.claim_values:
        return mapping.claim_values[value]
    code = value.strip().upper()
    if code == NATIONAL or code in regions:
        return code
    return None
