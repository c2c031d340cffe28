"""A case's timeline: what happened to it, oldest first. Pure: entries in, one ordered list out.

Sources: referral state changes and responsibility decisions (kept by notify as the events
arrive, codes and ids only), and the case's alerts (each escalation, every coordinator action,
the dispute ladder's regions and decisions). Nothing here is free text: a code is shown to a
person through its label (adapters/ui_text.py), never as the only thing they read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from services.notify.domain.alerts import Action, Alert

REFERRAL = "referral"  # code: the new referral status; actor: the agency
DECISION = "decision"  # code: the rule that made `region` responsible
ESCALATION = "escalation"  # code: the escalation rule; level: the level alerted
ACTION = "action"  # code: the coordinator's action; actor: the coordinator
DISPUTE_STEP = "dispute_step"  # a decision the dispute ladder weighed (code: rule, region or level)


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str
    code: str
    region: str = ""
    actor: str = ""
    level: str = ""
    detail: str = ""  # a second code: reason/outcome, decline reason, proposed handover region
    regions: tuple[str, ...] = field(default_factory=tuple)  # regions involved (disputes)


@dataclass(frozen=True)
class DisputeRecord:
    """What a DISPUTE escalation carries: the regions involved and the decisions so far."""

    escalation_id: str
    regions_involved: tuple[str, ...]
    decisions: tuple[Entry, ...]


def alert_entries(alert: Alert, dispute: DisputeRecord | None = None) -> list[Entry]:
    entries = []
    for change in alert.history:
        if change.action is Action.RAISED:
            entries.append(
                Entry(
                    change.at,
                    ESCALATION,
                    alert.rule,
                    region=change.region,
                    level=alert.level,
                    regions=dispute.regions_involved if dispute else (),
                )
            )
        else:
            entries.append(
                Entry(
                    change.at,
                    ACTION,
                    change.action.value,
                    region=change.region if change.action is Action.REASSIGNED else "",
                    actor=change.actor,
                    level=alert.level,
                    detail=change.code,
                )
            )
    return entries


def case_timeline(
    facts: Iterable[Entry], alerts: Iterable[Alert], disputes: Iterable[DisputeRecord] = ()
) -> list[Entry]:
    """Every entry oldest first. A dispute's own decisions are listed under it (`dispute_steps`),
    not here, so the timeline does not show each assignment twice."""
    by_escalation = {d.escalation_id: d for d in disputes}
    entries = list(facts)
    for alert in alerts:
        entries.extend(alert_entries(alert, by_escalation.get(alert.escalation_id)))
    order = {REFERRAL: 0, DECISION: 1, ESCALATION: 2, ACTION: 3, DISPUTE_STEP: 4}
    return sorted(entries, key=lambda e: (e.at, order.get(e.kind, 9), e.code))
