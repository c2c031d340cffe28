"""Domain events: one per accepted command, the facts other services react to.

Events carry ids, statuses and codes only. No names, BSN, contact details or free text, so they
can go to Kafka, logs and spans as they are (DESIGN.md section 5). ``languages`` is only filled
on events that ask a new agency (request / forward), because only matching needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .codes import (
    Action,
    CancelReason,
    DeclineReason,
    NeedDomain,
    Outcome,
    Status,
    Urgency,
)

REQUESTED_EVENT = "ReferralRequested"
# Not a lifecycle action (see ``lifecycle.change_facts``): the status stays, the facts change.
FACTS_CHANGED_EVENT = "ReferralFactsChanged"

EVENT_TYPES: Mapping[Action, str] = {
    Action.ACKNOWLEDGE: "ReferralAcknowledged",
    Action.ACCEPT: "ReferralAccepted",
    Action.DECLINE: "ReferralDeclined",
    Action.START: "ReferralStarted",
    Action.COMPLETE: "ReferralCompleted",
    Action.CANCEL: "ReferralCancelled",
    Action.REPORT_CONTACT_LOST: "ReferralContactLost",
    Action.FORWARD: "ReferralForwarded",
    Action.FAIL: "ReferralFailed",
    Action.WITHDRAW_CONSENT: "ReferralConsentWithdrawn",
    Action.EXPIRE_CONSENT: "ReferralConsentExpired",
}

ALL_EVENT_TYPES = frozenset({REQUESTED_EVENT, FACTS_CHANGED_EVENT, *EVENT_TYPES.values()})


@dataclass(frozen=True, kw_only=True)
class DomainEvent:
    event_type: str
    referral_id: str
    case_id: str
    action: Action | None  # None for ReferralRequested (the opening) and ReferralFactsChanged
    from_status: Status | None  # None for ReferralRequested
    to_status: Status
    actor: str
    version: int  # the referral's version after this event (1 for ReferralRequested)
    occurred_at: datetime
    sender: str
    receiver: str
    pending_receiver: str | None
    addressee: str | None  # agency asked to answer now (stall detector deadlines start here)
    holder: str  # responsible agency after the event
    previous_holder: str | None  # set when responsibility moved with this event
    handover: bool  # the event belongs to a warm handover between receivers
    urgency: Urgency
    need_domains: tuple[NeedDomain, ...]
    languages: tuple[str, ...] = ()
    decline_reason: DeclineReason | None = None
    outcome: Outcome | None = None
    cancel_reason: CancelReason | None = None

    @property
    def event_id(self) -> str:
        """Stable id (one event per referral version): consumers deduplicate on it."""
        return f"{self.referral_id}:{self.version}"

    @property
    def refused_handover(self) -> bool:
        """A handover target declined: escalate to the national coordinator (DESIGN.md 4)."""
        return self.handover and self.action is Action.DECLINE
