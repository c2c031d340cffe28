"""Recorded consent of the client for a referral.

Consent names which organisations may receive the referral, for which purpose (a fixed code)
and until when. It is checked when a referral is opened and whenever the referral reaches a new
organisation or new processing starts (see ``lifecycle``); withdrawal closes the referral.

A withdrawal is the client's, not one agency's: it closes every open referral of the case, and
the case takes no new referral until the client gives consent again, i.e. until a referral
arrives whose consent was recorded after the withdrawal (``check_fresh_consent``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .codes import Purpose, coerce, is_agency_id, is_aware
from .errors import ConsentMissing, InvalidReferral

# A consent recorded "later than now" by more than clock drift is a mistake, not fresh consent.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Consent:
    organisations: frozenset[str]
    purpose: Purpose
    valid_until: datetime
    withdrawn_at: datetime | None = None

    def __post_init__(self) -> None:
        orgs = self.organisations
        if isinstance(orgs, str) or not hasattr(orgs, "__iter__"):
            raise InvalidReferral("consent.organisations", "must be a collection of agency ids")
        orgs = frozenset(orgs)
        if not orgs:
            raise InvalidReferral("consent.organisations", "must name at least one organisation")
        for org in sorted(orgs, key=str):
            if not is_agency_id(org):
                raise InvalidReferral("consent.organisations", "names something that is not a valid agency id")
        # Normalise in place; the dataclass is frozen, so use object.__setattr__ once, here.
        object.__setattr__(self, "organisations", orgs)
        object.__setattr__(self, "purpose", coerce(Purpose, self.purpose, "consent.purpose", InvalidReferral))
        if not is_aware(self.valid_until):
            raise InvalidReferral("consent.valid_until", "must be a timezone-aware datetime")
        if self.withdrawn_at is not None and not is_aware(self.withdrawn_at):
            raise InvalidReferral("consent.withdrawn_at", "must be a timezone-aware datetime")

    def covers(self, agency_id: str, purpose: Purpose | str, at: datetime) -> bool:
        return self.why_not(agency_id, purpose, at) is None

    def why_not(self, agency_id: str, purpose: Purpose | str, at: datetime) -> str | None:
        """The reason consent does not cover this use, in plain words; None if it does."""
        if self.withdrawn_at is not None and at >= self.withdrawn_at:
            return "the client withdrew consent"
        # valid_until is exclusive: at that instant consent has run out.
        if at >= self.valid_until:
            return "the client's consent has expired"
        if purpose != self.purpose:
            return f"consent is for purpose {self.purpose.value}, not {purpose}"
        if agency_id not in self.organisations:
            return f"consent does not cover organisation {agency_id}"
        return None

    def withdrawn(self, at: datetime) -> Consent:
        return Consent(self.organisations, self.purpose, self.valid_until, at)


def check_fresh_consent(withdrawn_at: datetime | None, recorded_at: datetime | None, now: datetime) -> None:
    """After a withdrawal, only consent recorded later (and not in the future) opens a referral."""
    if recorded_at is not None:
        if not is_aware(recorded_at):
            raise InvalidReferral("consent.recorded_at", "must be a timezone-aware datetime")
        if recorded_at > now + CLOCK_SKEW:
            raise InvalidReferral("consent.recorded_at", "lies in the future")
    if withdrawn_at is None:
        return
    if recorded_at is None or recorded_at <= withdrawn_at:
        raise ConsentMissing(
            "the client withdrew consent for this case; record the client's fresh consent "
            "(consent.recorded_at after the withdrawal) before referring again"
        )
