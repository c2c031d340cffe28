"""Escalation alerts and what coordinators may do with them. Pure: no I/O, no clock of its own.

An alert is raised once per escalation (the escalation id is stable). Coordinators act on it:
acknowledge ("I have seen it"), take ownership ("I handle it"), reassign responsibility to
another region with a reason code (the region service then decides again), and resolve it with
an outcome code. Every action is one `Change` in the alert's history; codes only, no free text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

NATIONAL = "NATIONAL"  # the scope of a national coordinator: every region


class AlertState(str, Enum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    TAKEN = "TAKEN"
    RESOLVED = "RESOLVED"


class Action(str, Enum):
    RAISED = "RAISED"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    TAKEN = "TAKEN"
    REASSIGNED = "REASSIGNED"
    RESOLVED = "RESOLVED"


# Escalation levels (names of events.proto EscalationLevel), most pressing first. Losing
# contact ranks above the region coordinator: a client out of sight is the harm we prevent.
LEVEL_RANK = {
    "DISPUTE": 5,
    "NATIONAL_COORDINATOR": 4,
    "AT_RISK_OF_LOSING_CONTACT": 3,
    "REGION_COORDINATOR": 2,
    "AGENCY_REMINDER": 1,
}

# Why a coordinator moves responsibility; fixed codes so statistics need no free text.
REASSIGN_REASONS = (
    "BETTER_BOUND_REGION",  # the client has stronger ties there
    "CLIENT_MOVED",  # the client now stays in that region
    "AGREED_BETWEEN_REGIONS",  # the two regions agreed on a warm handover
    "MEDIATOR_DECISION",  # the national coordinator decided, as mediator
    "CAPACITY_ELSEWHERE",  # help is available sooner there
    "OTHER",
)

# How an alert ended.
OUTCOMES = (
    "RECEIVER_RESPONDED",  # the agency answered after the alert
    "HANDED_OVER",  # another region or agency took the case
    "HELP_STARTED",  # the client is being helped
    "CLIENT_UNREACHABLE",
    "NO_LONGER_NEEDED",
    "ESCALATED_TO_DISPUTE",
    "OTHER",
)


class AlertError(ValueError):
    """An action that is not allowed; the message is fit to show to the coordinator."""

    code = "invalid"


class OutOfScope(AlertError):
    code = "out_of_scope"


class NotAllowed(AlertError):
    code = "not_allowed"


@dataclass(frozen=True)
class Coordinator:
    username: str
    scope: str  # a region code, or NATIONAL
    display_name: str = ""

    @property
    def national(self) -> bool:
        return self.scope == NATIONAL

    def may_see(self, region: str) -> bool:
        return self.national or self.scope == region


@dataclass(frozen=True)
class Change:
    action: Action
    actor: str
    at: datetime
    state: AlertState
    code: str = ""
    region: str = ""


@dataclass(frozen=True)
class Alert:
    escalation_id: str
    case_id: str
    referral_id: str
    region: str  # the region responsible now (as far as the coordinators' actions go)
    level: str
    rule: str  # the escalation rule that fired
    fired_at: datetime
    case_started_at: datetime
    responsible_rule: str = ""  # the rule that made the region responsible, if known
    state: AlertState = AlertState.OPEN
    owner: str = ""
    outcome: str = ""
    history: tuple[Change, ...] = field(default_factory=tuple)

    @property
    def open(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.case_started_at).total_seconds())


def raise_alert(alert: Alert) -> Alert:
    """A new alert with its first history entry."""
    return replace(
        alert,
        state=AlertState.OPEN,
        history=(
            Change(Action.RAISED, "system", alert.fired_at, AlertState.OPEN, code=alert.rule, region=alert.region),
        ),
    )


def _check(alert: Alert, who: Coordinator) -> None:
    if not who.may_see(alert.region):
        raise OutOfScope("this case is outside your region")
    if alert.state is AlertState.RESOLVED:
        raise NotAllowed("this alert is already resolved")


def acknowledge(alert: Alert, who: Coordinator, at: datetime) -> Alert:
    """Seen. Idempotent: acknowledging an alert that is already further along changes nothing."""
    if not who.may_see(alert.region):
        raise OutOfScope("this case is outside your region")
    if alert.state is not AlertState.OPEN:
        return alert
    return _step(alert, Action.ACKNOWLEDGED, who, at, AlertState.ACKNOWLEDGED)


def take(alert: Alert, who: Coordinator, at: datetime) -> Alert:
    """Take ownership. Taking over from another owner is for the national coordinator only."""
    _check(alert, who)
    if alert.owner == who.username and alert.state is AlertState.TAKEN:
        return alert
    if alert.owner and alert.owner != who.username and not who.national:
        raise NotAllowed(f"{alert.owner} already handles this case")
    return _step(alert, Action.TAKEN, who, at, AlertState.TAKEN, owner=who.username)


def reassign(
    alert: Alert, who: Coordinator, at: datetime, region: str, reason: str, known_regions: frozenset[str] | set[str]
) -> Alert:
    """Move responsibility to another region with a reason code (the region service follows)."""
    _check(alert, who)
    if reason not in REASSIGN_REASONS:
        raise AlertError(f"unknown reason code {reason!r}")
    if region not in known_regions:
        raise AlertError(f"unknown region {region!r}")
    if region == alert.region:
        raise AlertError("the case is already with that region")
    return _step(alert, Action.REASSIGNED, who, at, alert.state, code=reason, region=region, new_region=region)


def resolve(alert: Alert, who: Coordinator, at: datetime, outcome: str) -> Alert:
    _check(alert, who)
    if outcome not in OUTCOMES:
        raise AlertError(f"unknown outcome code {outcome!r}")
    if alert.owner and alert.owner != who.username and not who.national:
        raise NotAllowed(f"{alert.owner} handles this case")
    return _step(
        alert,
        Action.RESOLVED,
        who,
        at,
        AlertState.RESOLVED,
        code=outcome,
        owner=alert.owner or who.username,
        outcome=outcome,
    )


def _step(
    alert: Alert,
    action: Action,
    who: Coordinator,
    at: datetime,
    state: AlertState,
    *,
    code: str = "",
    region: str = "",
    owner: str | None = None,
    outcome: str | None = None,
    new_region: str | None = None,
) -> Alert:
    change = Change(action, who.username, at, state, code=code, region=region)
    return replace(
        alert,
        state=state,
        owner=alert.owner if owner is None else owner,
        outcome=alert.outcome if outcome is None else outcome,
        region=alert.region if new_region is None else new_region,
        history=alert.history + (change,),
    )


def visible(alerts: Iterable[Alert], who: Coordinator, *, include_resolved: bool = False) -> list[Alert]:
    """The alerts in a coordinator's scope, most pressing level first, newest first within a level."""
    chosen = [a for a in alerts if who.may_see(a.region) and (include_resolved or a.open)]
    return sorted(chosen, key=lambda a: (-LEVEL_RANK.get(a.level, 0), -a.fired_at.timestamp(), a.escalation_id))


def matches(alert: Alert, regions: set[str], levels: set[str]) -> bool:
    """The filter of the gRPC alert stream: empty sets match everything."""
    return (not regions or alert.region in regions) and (not levels or alert.level in levels)
