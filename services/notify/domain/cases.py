"""A coordinator's case view: one card per case, built from its alerts. Pure: no I/O, no clock.

A stalled case can raise several alerts as it climbs the ladder (a reminder to the agency, then
the region coordinator, then the national one). Coordinators think in cases, so the alerts of
one case make one card: its level is the most pressing level among its unresolved alerts, its
state the least advanced state among them (a new escalation on a case being handled shows as
open again), and it is resolved only when every alert is. Acting on a case acts on all its
unresolved alerts in the coordinator's scope (adapters/case_view.py), so an older reminder
never stays open behind a case someone already handles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.notify.domain.alerts import LEVEL_RANK, Alert, AlertState, Coordinator

# Least advanced first: the card shows the state that still needs someone.
STATE_ORDER = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.TAKEN, AlertState.RESOLVED)
# The age filter's choices: at least this old.
AGE_FILTERS: dict[str, timedelta] = {
    "1d": timedelta(days=1),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
}


@dataclass(frozen=True)
class CaseCard:
    case_id: str
    alerts: tuple[Alert, ...]  # oldest first

    @property
    def unresolved(self) -> tuple[Alert, ...]:
        return tuple(alert for alert in self.alerts if alert.open)

    @property
    def current(self) -> Alert:
        """The alert that sets the card's level: the most pressing unresolved one (newest on a tie)."""
        pool = self.unresolved or self.alerts
        return max(pool, key=lambda a: (LEVEL_RANK.get(a.level, 0), a.fired_at.timestamp(), a.escalation_id))

    @property
    def level(self) -> str:
        return self.current.level

    @property
    def region(self) -> str:
        return self.current.region

    @property
    def state(self) -> AlertState:
        pool = self.unresolved
        if not pool:
            return AlertState.RESOLVED
        return min((alert.state for alert in pool), key=STATE_ORDER.index)

    @property
    def handler(self) -> str:
        """Who handles the case: the owner of the current alert, else of any unresolved one."""
        if self.current.owner:
            return self.current.owner
        return next((alert.owner for alert in reversed(self.unresolved) if alert.owner), "")

    @property
    def started_at(self) -> datetime:
        return min(alert.case_started_at for alert in self.alerts)

    @property
    def last_fired_at(self) -> datetime:
        return max(alert.fired_at for alert in self.alerts)

    @property
    def referral_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(alert.referral_id for alert in self.alerts))

    def age_seconds(self, now: datetime) -> float:
        return max(0.0, (now - self.started_at).total_seconds())


def case_cards(alerts: Iterable[Alert], who: Coordinator) -> list[CaseCard]:
    """The cases in a coordinator's scope (only the alerts they may see), most pressing level
    first, then the case whose latest escalation is newest."""
    grouped: dict[str, list[Alert]] = {}
    for alert in alerts:
        if who.may_see(alert.region):
            grouped.setdefault(alert.case_id, []).append(alert)
    cards = [
        CaseCard(case_id, tuple(sorted(group, key=lambda a: (a.fired_at.timestamp(), a.escalation_id))))
        for case_id, group in grouped.items()
    ]
    return sorted(
        cards,
        key=lambda card: (
            card.state is AlertState.RESOLVED,
            -LEVEL_RANK.get(card.level, 0),
            -card.last_fired_at.timestamp(),
            card.case_id,
        ),
    )


@dataclass(frozen=True)
class CaseFilter:
    """Empty fields match everything. `state` "" means every case that is not resolved."""

    level: str = ""
    state: str = ""
    age: str = ""

    @classmethod
    def parse(cls, level: str, state: str, age: str) -> CaseFilter:
        """From untrusted query values: unknown values are dropped rather than refused."""
        return cls(
            level=level if level in LEVEL_RANK else "",
            state=state if state in {s.value for s in AlertState} else "",
            age=age if age in AGE_FILTERS else "",
        )

    def matches(self, card: CaseCard, now: datetime) -> bool:
        if self.state:
            if card.state.value != self.state:
                return False
        elif card.state is AlertState.RESOLVED:
            return False
        if self.level and card.level != self.level:
            return False
        return not self.age or card.age_seconds(now) >= AGE_FILTERS[self.age].total_seconds()


def open_cases_per_level(cards: Iterable[CaseCard], levels: Sequence[str]) -> dict[str, int]:
    """How many unresolved cases are at each level (a case counts once, at its current level)."""
    counts = dict.fromkeys(levels, 0)
    for card in cards:
        if card.state is not AlertState.RESOLVED and card.level in counts:
            counts[card.level] += 1
    return counts


def case_actions_for(card: CaseCard, action: str) -> list[Alert]:
    """The alerts a case-level action applies to: acknowledge the open ones; take or resolve
    every unresolved one; reassign once, through the current alert (one override event)."""
    if action == "acknowledge":
        return [alert for alert in card.unresolved if alert.state is AlertState.OPEN]
    if action in {"take", "resolve"}:
        return list(card.unresolved)
    if action == "reassign":
        return [card.current] if card.unresolved else []
    raise ValueError(f"unknown case action {action!r}")
