"""Pure domain core of the referral service: no I/O, no Kafka, no gRPC, no database.

Start with ``lifecycle`` (lifecycle table, warm handover model, order of checks) and
``model`` (the Referral record and who is responsible).
"""

from referencedata.agencies import Agency, AgencyKind, Directory, load_directory, parse_directory

from .codes import (
    NEED_DOMAINS,
    SUCCESS_OUTCOMES,
    SYSTEM_ACTOR,
    Action,
    CancelReason,
    DeclineReason,
    NeedDomain,
    Outcome,
    Purpose,
    Role,
    Status,
    Urgency,
)
from .consent import Consent, check_fresh_consent
from .errors import (
    ConsentMissing,
    DirectoryError,
    DomainError,
    IllegalTransition,
    InvalidCommand,
    InvalidReferral,
    NotPermitted,
    StaleVersion,
)
from .events import ALL_EVENT_TYPES, EVENT_TYPES, FACTS_CHANGED_EVENT, REQUESTED_EVENT, DomainEvent
from .lifecycle import TRANSITIONS, allowed_actions, apply, change_facts, open_referral
from .model import (
    OPEN_STATUSES,
    TERMINAL_STATUSES,
    Referral,
    StatusChange,
    check_invariants,
)
from .permissions import ROLE_ACTIONS, can_read, role_of
from .snapshot import referral_from_dict, referral_to_dict

__all__ = [
    "ALL_EVENT_TYPES",
    "Action",
    "Agency",
    "AgencyKind",
    "CancelReason",
    "Consent",
    "ConsentMissing",
    "DeclineReason",
    "Directory",
    "DirectoryError",
    "DomainError",
    "DomainEvent",
    "EVENT_TYPES",
    "FACTS_CHANGED_EVENT",
    "IllegalTransition",
    "InvalidCommand",
    "InvalidReferral",
    "NEED_DOMAINS",
    "NeedDomain",
    "NotPermitted",
    "OPEN_STATUSES",
    "Outcome",
    "Purpose",
    "REQUESTED_EVENT",
    "ROLE_ACTIONS",
    "Referral",
    "Role",
    "SUCCESS_OUTCOMES",
    "SYSTEM_ACTOR",
    "StaleVersion",
    "Status",
    "StatusChange",
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "Urgency",
    "allowed_actions",
    "apply",
    "can_read",
    "change_facts",
    "check_fresh_consent",
    "check_invariants",
    "load_directory",
    "open_referral",
    "parse_directory",
    "referral_from_dict",
    "referral_to_dict",
    "role_of",
]
