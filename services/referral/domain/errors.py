"""Domain errors of the referral service.

Every refusal is a ``DomainError`` with a stable machine ``code`` and a plain-language message.
Messages and ``details`` carry only ids and codes (referral id, agency ids, statuses), never
personal data, so adapters may log them and return them to the calling agency as they are.

``grpc_status`` is a *hint* (the name of a ``grpc.StatusCode``) so the gRPC adapter can map
errors without a table of its own; the domain itself does not import grpc.
"""

from __future__ import annotations

from typing import Any, ClassVar

# The agency directory is shared reference data; its load error is re-exported for callers.
from referencedata.errors import DirectoryError

__all__ = [
    "ConsentMissing",
    "DirectoryError",
    "DomainError",
    "IllegalTransition",
    "InvalidCommand",
    "InvalidReferral",
    "NotPermitted",
    "StaleVersion",
]


class DomainError(Exception):
    """Base of all refusals. A refused command changes nothing."""

    code: ClassVar[str] = "DOMAIN_ERROR"
    grpc_status: ClassVar[str] = "FAILED_PRECONDITION"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class IllegalTransition(DomainError):
    """The action is not in the lifecycle table for the referral's current status."""

    code = "ILLEGAL_TRANSITION"
    grpc_status = "FAILED_PRECONDITION"


class StaleVersion(DomainError):
    """The caller acted on an older version (optimistic concurrency): re-read and retry."""

    code = "STALE_VERSION"
    grpc_status = "ABORTED"


class NotPermitted(DomainError):
    """The actor is not a party that may perform this action (or read this referral).

    Adapters should answer a caller that is no party at all as NOT_FOUND, so that the
    existence of a referral is not revealed to strangers (``details['party'] is False``).
    """

    code = "NOT_PERMITTED"
    grpc_status = "PERMISSION_DENIED"


class ConsentMissing(DomainError):
    """Recorded consent does not cover this organisation, purpose and moment."""

    code = "CONSENT_MISSING"
    grpc_status = "FAILED_PRECONDITION"


class InvalidReferral(DomainError):
    """A field of a new referral (or a stored snapshot) is empty or invalid; ``field`` names it."""

    code = "INVALID_REFERRAL"
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", field=field, **details)
        self.field = field


class InvalidCommand(DomainError):
    """An argument of a command is missing, superfluous or invalid; ``field`` names it."""

    code = "INVALID_COMMAND"
    grpc_status = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", field=field, **details)
        self.field = field


class ReceiverSuspended(DomainError):
    """The receiver (or forward target) is suspended by an operator: it takes no new referrals."""

    code = "AGENCY_SUSPENDED"
    grpc_status = "FAILED_PRECONDITION"
