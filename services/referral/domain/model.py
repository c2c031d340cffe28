"""The referral record: an immutable value; every change makes a new one (see ``lifecycle``).

Responsibility ("holder"): at every moment exactly one agency is responsible for the referral.
It is the sender until a receiver accepts, then that receiver. During a warm handover the
current holder stays holder until the next receiver accepts. ``holder`` is stored explicitly
because after a refused handover (status DECLINED) it cannot be derived from the status alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .codes import (
    Action,
    CancelReason,
    DeclineReason,
    NeedDomain,
    Outcome,
    Purpose,
    Status,
    Urgency,
)
from .consent import Consent
from .errors import InvalidReferral

OPEN_STATUSES = frozenset({Status.REQUESTED, Status.RECEIVED, Status.ACCEPTED, Status.IN_PROGRESS, Status.DECLINED})
TERMINAL_STATUSES = frozenset(Status) - OPEN_STATUSES
# Statuses in which an agency is being asked to answer (acknowledge / accept / decline).
ASKING_STATUSES = frozenset({Status.REQUESTED, Status.RECEIVED})
# Statuses in which the receiver has accepted and therefore must be the holder.
WORKING_STATUSES = frozenset({Status.ACCEPTED, Status.IN_PROGRESS})


@dataclass(frozen=True)
class StatusChange:
    """One line of history. Codes only: no names, notes or other personal data."""

    status: Status
    at: datetime
    actor: str
    action: Action | None = None  # None for the opening entry
    code: str | None = None  # decline reason, outcome or cancel reason of this change
    receiver: str | None = None  # the agency asked / holding after this change (an id)


@dataclass(frozen=True, kw_only=True)
class Referral:
    referral_id: str
    case_id: str
    sender: str
    receiver: str
    status: Status
    version: int
    need_domains: tuple[NeedDomain, ...]
    urgency: Urgency
    languages: tuple[str, ...]
    consent: Consent
    purpose: Purpose
    created_at: datetime
    updated_at: datetime
    holder: str  # the one responsible agency (sender or receiver), see module docstring
    pending_receiver: str | None = None  # warm-handover target until it accepts
    decline_reason: DeclineReason | None = None  # reason of the latest decline
    outcome: Outcome | None = None
    cancel_reason: CancelReason | None = None
    history: tuple[StatusChange, ...] = ()
    # Accepted facts changes (``lifecycle.change_facts``): they raise the version but are no
    # status change, so version == len(history) + facts_changes.
    facts_changes: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def in_handover(self) -> bool:
        return self.pending_receiver is not None

    @property
    def addressee(self) -> str | None:
        """The agency currently asked to acknowledge/accept/decline, if any."""
        if self.status not in ASKING_STATUSES:
            return None
        return self.pending_receiver or self.receiver

    @property
    def parties(self) -> frozenset[str]:
        """Agencies that may read this referral and (depending on role) act on it."""
        return frozenset(p for p in (self.sender, self.receiver, self.pending_receiver) if p)


def check_invariants(r: Referral) -> None:
    """Raise InvalidReferral if a referral breaks a structural rule.

    ``apply`` never produces such a referral; storage adapters can call this on every loaded
    snapshot, and the property tests call it after every command.
    """

    def bad(field: str, why: str) -> None:
        raise InvalidReferral(field, why, referral_id=r.referral_id)

    if not isinstance(r.status, Status):
        bad("status", f"{r.status!r} is not a Status")
    if r.facts_changes < 0 or r.version < 1 or len(r.history) + r.facts_changes != r.version:
        bad(
            "version",
            f"version {r.version} does not match {len(r.history)} history entries and {r.facts_changes} facts changes",
        )
    if r.history and r.history[-1].status != r.status:
        bad("history", "last history entry does not match the status")
    if r.sender == r.receiver:
        bad("receiver", "sender and receiver are the same agency")
    if r.holder not in (r.sender, r.receiver):
        bad("holder", "the holder must be the sender or the receiver")
    if r.pending_receiver is not None:
        # Kept on closed referrals so the handover target still sees how it ended.
        if r.is_open and r.status not in ASKING_STATUSES:
            bad("pending_receiver", f"no handover can be pending in status {r.status}")
        if r.holder != r.receiver:
            bad("holder", "during a handover the current receiver stays holder")
        if r.pending_receiver in (r.sender, r.receiver):
            bad("pending_receiver", "the handover target must be a third agency")
    if r.status in WORKING_STATUSES and r.holder != r.receiver:
        bad("holder", f"in {r.status} the receiver must be the holder")
    if r.status in ASKING_STATUSES and r.pending_receiver is None and r.holder != r.sender:
        bad("holder", "until the receiver accepts, the sender stays holder")
    if (r.status is Status.DECLINED) != (r.decline_reason is not None) and r.is_open:
        bad("decline_reason", "an open referral has a decline reason exactly when DECLINED")
    if (r.status is Status.CANCELLED) != (r.cancel_reason is not None):
        bad("cancel_reason", "a cancel reason is present exactly when CANCELLED")
    if r.status in (Status.COMPLETED, Status.FAILED) and r.outcome is None:
        bad("outcome", f"a {r.status.value} referral needs an outcome")
