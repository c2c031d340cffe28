"""Fixed code lists of the referral domain.

Everything that crosses the mesh is a code from a closed list, never free text: statistics stay
possible and no personal detail can slip into events, logs or spans through a "reason" field.
All enums are ``str`` enums whose values equal their names, so they serialise as plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import TypeVar

from referencedata.agencies import AGENCY_ID_RE, SYSTEM_ACTOR, is_agency_id
from referencedata.languages import ISO_639_1
from referencedata.need_domains import NEED_DOMAINS, NeedDomain

from .errors import DomainError

__all__ = [
    "AGENCY_ID_RE",
    "ISO_639_1",
    "NEED_DOMAINS",
    "OPAQUE_ID_RE",
    "SYSTEM_ACTOR",
    "SUCCESS_OUTCOMES",
    "Action",
    "CancelReason",
    "DeclineReason",
    "NeedDomain",
    "Outcome",
    "Purpose",
    "Role",
    "Status",
    "Urgency",
    "coerce",
    "is_agency_id",
    "is_aware",
]


class _Code(str, Enum):
    """str-valued enum whose ``str()`` is the bare code (Python 3.11 would print 'Cls.NAME')."""

    def __str__(self) -> str:
        return str(self.value)


class Status(_Code):
    REQUESTED = "REQUESTED"
    RECEIVED = "RECEIVED"
    ACCEPTED = "ACCEPTED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    DECLINED = "DECLINED"
    CANCELLED = "CANCELLED"
    CONTACT_LOST = "CONTACT_LOST"
    FAILED = "FAILED"


class Action(_Code):
    ACKNOWLEDGE = "ACKNOWLEDGE"
    ACCEPT = "ACCEPT"
    DECLINE = "DECLINE"
    START = "START"
    COMPLETE = "COMPLETE"
    CANCEL = "CANCEL"
    REPORT_CONTACT_LOST = "REPORT_CONTACT_LOST"
    FORWARD = "FORWARD"
    FAIL = "FAIL"
    WITHDRAW_CONSENT = "WITHDRAW_CONSENT"
    # Added: the system closes referrals whose consent ran out (CancelReason.CONSENT_EXPIRED).
    EXPIRE_CONSENT = "EXPIRE_CONSENT"


class DeclineReason(_Code):
    """Why a request was declined (closed-loop referral standard codes)."""

    CLIENT_DECLINED = "CLIENT_DECLINED"
    NO_CAPACITY = "NO_CAPACITY"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    NO_LONGER_NEEDED = "NO_LONGER_NEEDED"
    CLIENT_UNREACHABLE = "CLIENT_UNREACHABLE"
    # Recorded by the holder or the system when the asked receiver does not answer.
    RECEIVER_UNREACHABLE = "RECEIVER_UNREACHABLE"
    OTHER = "OTHER"


class Outcome(_Code):
    """How a referral ended for the client (COMPLETE and FAIL)."""

    HELPED = "HELPED"
    PARTLY_HELPED = "PARTLY_HELPED"
    NOT_HELPED = "NOT_HELPED"
    CLIENT_DECLINED_SERVICE = "CLIENT_DECLINED_SERVICE"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"
    NO_LONGER_NEEDED = "NO_LONGER_NEEDED"
    OTHER = "OTHER"


# A failed referral did not help; claiming it did would corrupt the statistics.
SUCCESS_OUTCOMES = frozenset({Outcome.HELPED, Outcome.PARTLY_HELPED})


class CancelReason(_Code):
    BY_SENDER = "BY_SENDER"
    CONSENT_WITHDRAWN = "CONSENT_WITHDRAWN"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"


class Urgency(_Code):
    URGENT = "URGENT"
    NORMAL = "NORMAL"


class Role(_Code):
    """Relation of an actor to one referral (see ``permissions.role_of``)."""

    SENDER = "SENDER"
    RECEIVER = "RECEIVER"  # the current receiver; during a handover still the holder
    PENDING_RECEIVER = "PENDING_RECEIVER"  # warm-handover target, not yet accepted
    SYSTEM = "SYSTEM"  # the mesh itself (consent registry, stall detector)
    NONE = "NONE"


class Purpose(_Code):
    """Processing purposes a client can consent to (fixed codes, not free text)."""

    REFERRAL = "REFERRAL"  # exchange a referral so that an agency can help
    CASE_COORDINATION = "CASE_COORDINATION"  # coordinators resolve a stalled case


# Referral and case ids are opaque random tokens (uuid, ulid ...): no spaces, so no free text.
OPAQUE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

E = TypeVar("E", bound=Enum)


def coerce(enum: type[E], value: object, field: str, error: Callable[[str, str], DomainError]) -> E:
    """Accept an enum member or its string value (adapters pass strings); refuse anything else."""
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum)
        # The refused value is not repeated: errors reach logs and spans, and a caller may have
        # typed anything into the field.
        raise error(field, f"unknown code; expected one of: {allowed}") from None


def is_aware(value: object) -> bool:
    """True for timezone-aware datetimes; naive ones are ambiguous across services."""
    return isinstance(value, datetime) and value.utcoffset() is not None
