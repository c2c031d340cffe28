"""Stall detection and escalation: pure core (no Kafka, no Faust, no I/O besides the policy file).

    policy = load_escalation_policy()                  # services/region/config/escalation.yaml
    engine = EscalationEngine(policy, clock=time.time)
    engine.on_referral_event(ReferralFacts.from_domain_event(event))
    engine.on_assignment(AssignmentFacts.of(...))
    for escalation in engine.fire_due():               # each at most once, late ones marked
        ...

See services/region/ESCALATION.md.
"""

from .calendar import WorkingHours
from .engine import (
    Changes,
    EscalationEngine,
    escalation_id,
    fire,
    on_alert_acknowledged,
    on_alert_resolved,
    on_assignment,
    on_referral_event,
)
from .model import (
    AssignmentFacts,
    CaseState,
    Deadline,
    Escalation,
    ReferralFacts,
    Track,
    state_from_dict,
    state_to_dict,
)
from .policy import (
    DEFAULT_POLICY_PATH,
    LEVELS,
    RULES,
    EscalationPolicy,
    RuleSpec,
    Timing,
    build_escalation_policy,
    load_escalation_policy,
)
from .schedule import DueIndex

__all__ = [
    "AssignmentFacts",
    "CaseState",
    "Changes",
    "DEFAULT_POLICY_PATH",
    "Deadline",
    "DueIndex",
    "Escalation",
    "EscalationEngine",
    "EscalationPolicy",
    "LEVELS",
    "RULES",
    "ReferralFacts",
    "RuleSpec",
    "Timing",
    "Track",
    "WorkingHours",
    "build_escalation_policy",
    "escalation_id",
    "fire",
    "load_escalation_policy",
    "on_alert_acknowledged",
    "on_alert_resolved",
    "on_assignment",
    "on_referral_event",
    "state_from_dict",
    "state_to_dict",
]
