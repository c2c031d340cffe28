"""Output of the resolver. Frozen and made of plain values so an adapter can serialize it
(see json_io.decision_to_dict)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date
from functools import cached_property

from .rules import RuleOutcome

LANGUAGES: tuple[str, ...] = ("nl", "en", "es", "pl", "ro")
# Always written when a case's explanation is sent: the language of the coordinators, and the text
# there is when none of the client's languages is in the catalogue.
ALWAYS_EXPLAINED = "nl"


def explanation_languages(wanted: Iterable[str]) -> tuple[str, ...]:
    """The languages a case's explanation is sent in: Dutch, then each wanted catalogue language."""
    return tuple(dict.fromkeys([ALWAYS_EXPLAINED, *(lang for lang in wanted if lang in LANGUAGES)]))


# Why the responsible region is responsible (responsibility is immediate, DESIGN.md section 4).
HELP_ASKED_HERE = "help_asked_here"
ALREADY_RESPONSIBLE = "already_responsible"

# The rule that made the decision. Every decision names exactly one of these.
HANDOVER_TO_BETTER_BOUND_REGION = "handover_to_better_bound_region"
BOUND_HERE = "bound_here"
BOUND_NOWHERE = "bound_nowhere"
NO_PROGRAMME_ACCEPTS = "no_programme_accepts"
NO_BETTER_BOUND_REGION = "no_better_bound_region"
DECISION_RULES: tuple[str, ...] = (
    HANDOVER_TO_BETTER_BOUND_REGION,
    BOUND_HERE,
    BOUND_NOWHERE,
    NO_PROGRAMME_ACCEPTS,
    NO_BETTER_BOUND_REGION,
)

# How a tie between equally ranked regions was settled.
TIE_RESPONSIBLE_STAYS = "responsible_region_stays"
TIE_LOWEST_REGION_CODE = "lowest_region_code"


@dataclass(frozen=True)
class Explanation:
    """The decision in plain words, one text per language."""

    nl: str
    en: str
    es: str
    pl: str
    ro: str

    def as_dict(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Candidate:
    """A region the client has any fact in, or the responsible region, with its evidence.
    `bound`: at least one binding rule met. `accepts`: all local requirements met.
    `qualifies`: bound and accepts. `score`: sum of the ranking weights of the kinds of tie met.
    `rank`: 1 = best (qualifying first, then higher score, then lower region code)."""

    region: str
    name: str
    bound: bool
    accepts: bool
    qualifies: bool
    score: int
    rank: int
    evidence_for: tuple[RuleOutcome, ...]
    evidence_against: tuple[RuleOutcome, ...]


@dataclass(frozen=True)
class TieBreak:
    between: tuple[str, ...]  # region codes that ranked equal at the top
    chosen: str
    by: str  # TIE_RESPONSIBLE_STAYS or TIE_LOWEST_REGION_CODE


@dataclass(frozen=True)
class Renamed:
    """A fact given under an abolished municipality code, counted for its successor."""

    code: str  # the abolished CBS code as given, e.g. GM0457
    name: str  # its name, e.g. Weesp
    now: str  # the current municipality's code, e.g. GM0363
    now_name: str  # e.g. Amsterdam
    since: date  # the day the municipality was abolished


@dataclass(frozen=True)
class Decision:
    region: str  # responsible now; never moved by the resolver itself
    region_name: str
    responsible_because: str
    asked_in: str
    asked_in_region: str
    service: str
    decision_date: date
    handover_to: str | None  # proposed warm handover; responsibility moves only when it accepts
    handover_to_name: str | None
    rule: str
    bound_nowhere: bool
    no_programme_accepts: bool
    candidates: tuple[Candidate, ...]
    tie_broken: TieBreak | None
    policy_version: str
    renamed: tuple[Renamed, ...] = ()  # abolished codes in the request and what they count as

    def candidate(self, region: str | None) -> Candidate | None:
        return next((c for c in self.candidates if c.region == region), None)

    # The text is written when asked for, and only in the languages asked for: most readers (the
    # region worker) need one or two languages, and writing all five for every event cost more than
    # deciding (issue 13). The text is a function of the fields above, so it is not compared.
    @cached_property
    def explanation(self) -> Explanation:
        """The decision in plain words in every catalogue language (written once, then kept)."""
        return Explanation(**self.explained(LANGUAGES))

    def explained(self, languages: Iterable[str]) -> dict[str, str]:
        """The decision in plain words in each of `languages` that the catalogue has, in that order."""
        from .explanation import explain_in  # the writer reads Decision: imported when first asked

        return explain_in(self, languages)
