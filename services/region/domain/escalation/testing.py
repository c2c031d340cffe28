"""Test helpers: a fake clock and a builder of referral / assignment facts for one case.

Used by the unit tests and meant for the Faust agent tests too: hours of policy run in
milliseconds because nothing here sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .model import AssignmentFacts, ReferralFacts, to_ts


class FakeClock:
    """A clock that only moves when told: ``clock()`` gives POSIX seconds."""

    def __init__(self, start: datetime | float) -> None:
        self.now = to_ts(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 0.0, *, hours: float = 0.0, days: float = 0.0) -> float:
        self.now += seconds + hours * 3600 + days * 86400
        return self.now

    def set(self, when: datetime | float) -> float:
        self.now = to_ts(when)
        return self.now

    @property
    def datetime(self) -> datetime:
        from .calendar import utc

        return utc(self.now)


_EVENT_OF = {
    "REQUESTED": "ReferralRequested",
    "RECEIVED": "ReferralAcknowledged",
    "ACCEPTED": "ReferralAccepted",
    "DECLINED": "ReferralDeclined",
    "IN_PROGRESS": "ReferralStarted",
    "COMPLETED": "ReferralCompleted",
    "CANCELLED": "ReferralCancelled",
    "CONTACT_LOST": "ReferralContactLost",
    "FAILED": "ReferralFailed",
}


@dataclass
class CaseScript:
    """Builds consecutive facts for one referral of one case; times come from ``clock``."""

    clock: FakeClock
    case_id: str = "case-1"
    referral_id: str = "ref-1"
    urgency: str = "URGENT"
    version: int = 0
    assignments: int = 0
    holder: str = "agency-sender"
    _seen: list[str] = field(default_factory=list)

    def event(
        self,
        to_status: str,
        *,
        addressee: str = "",
        handover: bool = False,
        event_type: str | None = None,
        decline_reason: str = "",
        at: datetime | float | None = None,
    ) -> ReferralFacts:
        self.version += 1
        return ReferralFacts(
            case_id=self.case_id,
            referral_id=self.referral_id,
            event_type=event_type or _EVENT_OF[to_status],
            to_status=to_status,
            version=self.version,
            occurred_at=self.clock.now if at is None else to_ts(at),
            urgency=self.urgency,
            addressee=addressee,
            holder=self.holder,
            handover=handover,
            decline_reason=decline_reason,
        )

    def request(self, receiver: str = "agency-a") -> ReferralFacts:
        return self.event("REQUESTED", addressee=receiver)

    def forward(self, receiver: str, *, handover: bool = False) -> ReferralFacts:
        return self.event("REQUESTED", addressee=receiver, handover=handover, event_type="ReferralForwarded")

    def assignment(
        self,
        region: str,
        *,
        previous: str = "",
        handover_to: str = "",
        rule: str = "bound_here",
        no_programme_accepts: bool = False,
    ) -> AssignmentFacts:
        self.assignments += 1
        return AssignmentFacts(
            case_id=self.case_id,
            referral_id=self.referral_id,
            responsible_region=region,
            occurred_at=self.clock.now,
            previous_region=previous,
            handover_to=handover_to,
            rule=rule,
            no_programme_accepts=no_programme_accepts,
            event_id=f"{self.case_id}/assignment/{self.assignments}",
        )


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
