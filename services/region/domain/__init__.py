"""Region-binding resolver: pure domain core (no Kafka, no gRPC, no I/O besides loading the policy).

policy = load_policy("services/region/config/regions.yaml")
decision = resolve(request, policy)
"""

from .decision import (
    DECISION_RULES,
    LANGUAGES,
    Candidate,
    Decision,
    Explanation,
    TieBreak,
    explanation_languages,
)
from .errors import InvalidInput, PolicyError, RegionError
from .facts import BindingFacts, ResidencePeriod, ResolutionRequest, WorkPeriod
from .json_io import decision_to_dict, parse_request, request_to_dict
from .policy import SERVICE_KINDS, Municipality, Region, RegionPolicy, ServiceRules, build_policy, load_policy
from .resolver import resolve, validate_request
from .rules import RULE_KINDS, FamilyRule, GrewUpRule, ResidenceRule, Rule, RuleOutcome, WorkRule

__all__ = [
    "BindingFacts",
    "Candidate",
    "DECISION_RULES",
    "Decision",
    "Explanation",
    "FamilyRule",
    "GrewUpRule",
    "InvalidInput",
    "LANGUAGES",
    "Municipality",
    "PolicyError",
    "RULE_KINDS",
    "Region",
    "RegionError",
    "RegionPolicy",
    "ResidencePeriod",
    "ResidenceRule",
    "ResolutionRequest",
    "Rule",
    "RuleOutcome",
    "SERVICE_KINDS",
    "ServiceRules",
    "TieBreak",
    "WorkPeriod",
    "WorkRule",
    "build_policy",
    "decision_to_dict",
    "explanation_languages",
    "load_policy",
    "parse_request",
    "request_to_dict",
    "resolve",
    "validate_request",
]
