"""Who hears about a new or changed assignment, and with which template.

Pure: an assignment in, a list of notifications out. Ids are derived from the assignment's
event id, so a redelivered assignment yields the same notifications and receivers can
deduplicate.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from meshkernel.envelope import derived_id


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
        notifications.append(
            _notification(assignment, Audience.COORDINATOR, assignment.responsible_region, template)
        )
    return notifications


def _notification(assignment: Assignment, audience: Audience, recipient: str, template: str) -> Notification:
    language = "nl" if audience is not Audience.CLIENT else (assignment.languages or ("nl",))[0]
    return Notification(
        notification_id=derived_id("notification", assignment.event_id, audience.value, recipient, template),
        audience=audience,
        recipient=recipient,
        template=template,
        language=language,
    )
