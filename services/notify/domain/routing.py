"""Who hears about a new or changed assignment, and with which template.

Pure: an assignment in, a list of notifications out. Ids are derived from the assignment's
event id, so a redelivered assignment yields the same notifications and receivers can
deduplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from meshkernel.envelope import derived_id
from services.notify.domain.messages import choose_language


class Audience(str, Enum):
    AGENCY = "AGENCY"
    COORDINATOR = "COORDINATOR"
    CLIENT = "CLIENT"


@dataclass(frozen=True)
class Assignment:
    event_id: str
    case_id: str
    referral_id: str
    responsible_region: str
    previous_region: str
    handover_to: str
    rule: str
    bound_nowhere: bool
    sender: str
    receiver: str
    languages: tuple[str, ...]
    # The notify service holds a sealed contact for the client (then the client hears too).
    has_contact: bool = False


@dataclass(frozen=True)
class Escalation:
    escalation_id: str
    case_id: str
    referral_id: str
    region: str
    level: str  # EscalationLevel name
    receiver: str = ""  # the receiving agency, when known from the case's last assignment


@dataclass(frozen=True)
class Notification:
    notification_id: str
    audience: Audience
    recipient: str
    template: str
    language: str


def route(assignment: Assignment) -> list[Notification]:
    notifications = [
        _notification(assignment, Audience.AGENCY, assignment.receiver, "referral_assigned"),
        _notification(assignment, Audience.AGENCY, assignment.sender, "responsible_region_named"),
    ]
    if assignment.bound_nowhere or assignment.handover_to:
        # Nobody may wait for a region that will never volunteer: the coordinator hears at once.
        template = "handover_proposed" if assignment.handover_to else "client_bound_nowhere"
        notifications.append(_notification(assignment, Audience.COORDINATOR, assignment.responsible_region, template))
    client = route_client(assignment)
    if client is not None:
        notifications.append(client)
    return notifications


def route_client(assignment: Assignment) -> Notification | None:
    """The client hears who is responsible when the responsible region is first named or
    changes, and when a handover is proposed; only if a sealed contact is known."""
    if not assignment.has_contact:
        return None
    changed = assignment.previous_region != assignment.responsible_region
    if not (changed or assignment.handover_to):
        return None
    template = "client_handover_proposed" if assignment.handover_to else "client_responsible_region"
    return _notification(assignment, Audience.CLIENT, assignment.case_id, template)


def route_escalation(escalation: Escalation) -> list[Notification]:
    """Agency reminders go to the receiving agency's system; coordinator levels are alerts on
    the dashboard and the gRPC stream, not notifications."""
    if escalation.level != "AGENCY_REMINDER" or not escalation.receiver:
        return []
    return [
        Notification(
            notification_id=derived_id(
                "notification",
                escalation.escalation_id,
                Audience.AGENCY.value,
                escalation.receiver,
                "referral_reminder",
            ),
            audience=Audience.AGENCY,
            recipient=escalation.receiver,
            template="referral_reminder",
            language="nl",
        )
    ]


def _notification(assignment: Assignment, audience: Audience, recipient: str, template: str) -> Notification:
    language = "nl" if audience is not Audience.CLIENT else choose_language(assignment.languages)
    return Notification(
        notification_id=derived_id("notification", assignment.event_id, audience.value, recipient, template),
        audience=audience,
        recipient=recipient,
        template=template,
        language=language,
    )
