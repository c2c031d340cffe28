"""The rule vocabulary: four kinds of tie a client can have with a region, and how each is measured.

Kept deliberately small so that every outcome can be explained to a client in one sentence:

- `residence`: lived in the region at least `years` years (optionally only counting the last
  `within_years` years; optionally only registered periods: `registered_only`).
- `grew_up`:   grew up in a municipality of the region.
- `family`:    close family lives in a municipality of the region.
- `work`:      worked in the region at least `months` months (optionally within the last
  `within_years` years).

Counting: periods include both their first and last day; `end` None counts up to the decision
date; overlapping periods in the region are counted once. A year is 365 days and a month 30 days,
a simple and slightly lenient measure, which is intended: doubt should favour the client's tie.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import ClassVar

from .facts import BindingFacts

DAYS_PER_YEAR = 365
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class ResidenceRule:
    kind: ClassVar[str] = "residence"
    years: int
    within_years: int | None = None
    registered_only: bool = False


@dataclass(frozen=True)
class GrewUpRule:
    kind: ClassVar[str] = "grew_up"


@dataclass(frozen=True)
class FamilyRule:
    kind: ClassVar[str] = "family"


@dataclass(frozen=True)
class WorkRule:
    kind: ClassVar[str] = "work"
    months: int
    within_years: int | None = None


Rule = ResidenceRule | GrewUpRule | FamilyRule | WorkRule
RULE_TYPES: dict[str, type] = {t.kind: t for t in (ResidenceRule, GrewUpRule, FamilyRule, WorkRule)}
RULE_KINDS: tuple[str, ...] = tuple(RULE_TYPES)

BINDING = "binding"  # a met rule ties the client to the region
REQUIREMENT = "requirement"  # a local eligibility condition that must be met for the programme to accept


@dataclass(frozen=True)
class RuleOutcome:
    """One rule applied to one region: met or not, and what was measured (the evidence)."""

    role: str  # BINDING or REQUIREMENT
    index: int  # position in the configured list, so the evidence points back into the file
    rule: Rule
    met: bool
    days: int | None = None  # measured days, for residence and work
    needed_days: int | None = None
    municipalities: tuple[str, ...] = ()  # matching municipalities, for grew_up and family

    @property
    def kind(self) -> str:
        return self.rule.kind

    def params(self) -> dict[str, object]:
        return {k: v for k, v in vars(self.rule).items() if v is not None}

    def summary(self) -> str:
        """One English line for case workers; clients get the translated explanation instead."""
        rule = self.rule
        verdict = "met" if self.met else "not met"
        if isinstance(rule, ResidenceRule):
            what = "registered residence" if rule.registered_only else "residence"
            window = f" in the last {rule.within_years} years" if rule.within_years else ""
            return f"{what} {self.days} days{window}, needs {self.needed_days} ({rule.years} years): {verdict}"
        if isinstance(rule, WorkRule):
            window = f" in the last {rule.within_years} years" if rule.within_years else ""
            return f"work {self.days} days{window}, needs {self.needed_days} ({rule.months} months): {verdict}"
        label = "grew up" if isinstance(rule, GrewUpRule) else "close family"
        found = ", ".join(self.municipalities) or "no municipality of this region"
        return f"{label}: {found}: {verdict}"


def shift_years(day: date, years: int) -> date:
    """Same calendar day `years` earlier; 29 February falls back to 28 February."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def window_start(decision_date: date, within_years: int | None) -> date:
    # The window holds exactly `within_years` calendar years ending on the decision date.
    if within_years is None:
        return date.min
    return shift_years(decision_date, within_years) + timedelta(days=1)


def covered_days(spans: Iterable[tuple[date, date]], first: date, last: date) -> int:
    """Days in [first, last] covered by at least one inclusive span; overlaps count once."""
    clipped = sorted((max(s, first), min(e, last)) for s, e in spans)
    total = 0
    current_start: date | None = None
    current_end: date | None = None
    for start, end in clipped:
        if start > end:
            continue
        if current_end is not None and start <= current_end + timedelta(days=1):
            current_end = max(current_end, end)
            continue
        if current_start is not None and current_end is not None:
            total += (current_end - current_start).days + 1
        current_start, current_end = start, end
    if current_start is not None and current_end is not None:
        total += (current_end - current_start).days + 1
    return total


def evaluate(
    rule: Rule,
    role: str,
    index: int,
    facts: BindingFacts,
    municipalities: frozenset[str],
    decision_date: date,
) -> RuleOutcome:
    """Apply one rule to the facts for a region given by its member municipalities."""
    if isinstance(rule, ResidenceRule):
        spans = [
            (p.start, p.end or decision_date)
            for p in facts.residence
            if p.municipality in municipalities and (p.registered or not rule.registered_only)
        ]
        days = covered_days(spans, window_start(decision_date, rule.within_years), decision_date)
        needed = rule.years * DAYS_PER_YEAR
        return RuleOutcome(role, index, rule, days >= needed, days=days, needed_days=needed)
    if isinstance(rule, WorkRule):
        spans = [(p.start, p.end or decision_date) for p in facts.work if p.municipality in municipalities]
        days = covered_days(spans, window_start(decision_date, rule.within_years), decision_date)
        needed = rule.months * DAYS_PER_MONTH
        return RuleOutcome(role, index, rule, days >= needed, days=days, needed_days=needed)
    places = facts.grew_up_in if isinstance(rule, GrewUpRule) else facts.family_in
    found = tuple(sorted({code for code in places if code in municipalities}))
    return RuleOutcome(role, index, rule, bool(found), municipalities=found)
