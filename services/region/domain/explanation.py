"""Writes the decision in plain words, in every catalogue language.

The text answers four questions in this order: who is responsible now, why, what happens next,
and what the client can do if they disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from .catalogue import CATALOGUE, plural_form
from .decision import (
    BOUND_HERE,
    BOUND_NOWHERE,
    HANDOVER_TO_BETTER_BOUND_REGION,
    HELP_ASKED_HERE,
    LANGUAGES,
    NO_PROGRAMME_ACCEPTS,
    TIE_LOWEST_REGION_CODE,
    Candidate,
    Decision,
    Explanation,
)
from .merged_places import merged_sentences
from .rules import BINDING, REQUIREMENT, RULE_KINDS, ResidenceRule, RuleOutcome, WorkRule


def explain(decision: Decision) -> Explanation:
    return Explanation(**explain_in(decision, LANGUAGES))


def explain_in(decision: Decision, languages: Iterable[str]) -> dict[str, str]:
    """The text in each of `languages` the catalogue has (others are left out), in the order given."""
    return {lang: _Writer(decision, lang).text() for lang in dict.fromkeys(languages) if lang in CATALOGUE}


class _Writer:
    def __init__(self, decision: Decision, language: str) -> None:
        self.d = decision
        self.lang = language
        self.messages = CATALOGUE[language]

    def t(self, key: str, **values: object) -> str:
        return self.messages[key].format(**values)

    def text(self) -> str:
        d = self.d
        region = d.region_name
        service = self.t(f"service.{d.service}")
        who = "who.asked_here" if d.responsible_because == HELP_ASKED_HERE else "who.already"
        parts = [self.t(who, region=region)]
        responsible = d.candidate(d.region)
        if d.rule == HANDOVER_TO_BETTER_BOUND_REGION:
            target = d.candidate(d.handover_to)
            assert target is not None  # a handover target is always a candidate
            parts.append(self.t("why.handover", target=target.name, because=self.because(target), service=service))
            parts.append(self.t("next.handover", region=region, target=target.name))
        elif d.rule == BOUND_HERE:
            assert responsible is not None  # the responsible region is always a candidate
            parts.append(self.t("why.bound_here", region=region, because=self.because(responsible)))
            parts.append(self.t("next.bound_here", region=region, service=service))
        elif d.rule == NO_PROGRAMME_ACCEPTS:
            assert responsible is not None
            parts.append(
                self.t(
                    "why.no_programme_accepts",
                    region=region,
                    service=service,
                    requirement=self.requirements(responsible),
                )
            )
            parts.append(self.t("next.no_programme_accepts", region=region))
        elif d.rule == BOUND_NOWHERE:
            parts.append(self.t("why.bound_nowhere"))
            parts.append(self.t("next.stays", region=region))
        else:  # NO_BETTER_BOUND_REGION
            others = [c.name for c in d.candidates if c.bound and c.region != d.region]
            key = _counted("why.no_better_bound_region", others)
            parts.append(self.t(key, others=self.join(others), service=service))
            parts.append(self.t("next.stays", region=region))
        if d.tie_broken is not None:
            names = {c.region: c.name for c in d.candidates}
            tie = d.tie_broken
            if tie.by == TIE_LOWEST_REGION_CODE:
                parts.append(
                    self.t(
                        "tie.lowest_code", regions=self.join([names[c] for c in tie.between]), target=names[tie.chosen]
                    )
                )
            else:
                others = [names[c] for c in tie.between if c != tie.chosen]
                key = _counted("tie.responsible_stays", others)
                parts.append(self.t(key, others=self.join(others), region=region))
        parts.extend(merged_sentences(d.renamed, self.lang))
        parts.append(self.t("disagree"))
        return " ".join(parts)

    def join(self, items: list[str]) -> str:
        if len(items) <= 1:
            return "".join(items)
        return ", ".join(items[:-1]) + self.conjunction(items[-1]) + items[-1]

    def conjunction(self, following: str) -> str:
        # Spanish "y" becomes "e" before an /i/ sound ("Amsterdam e Hilversum"), not before "hie"/"hia".
        lowered = following.lower()
        i_sound = lowered.startswith(("i", "hi")) and not lowered.startswith(("hia", "hie", "hio", "hiu"))
        if self.lang == "es" and i_sound:
            return " e "
        return self.t("list.and")

    def because(self, candidate: Candidate) -> str:
        """The sentence giving the ties that count, e.g. "Dat komt omdat u daar lang hebt gewoond."."""
        met = [o for o in candidate.evidence_for if o.role == BINDING]
        keys: list[str] = []
        for kind in RULE_KINDS:  # a fixed order keeps the text stable
            for outcome in (o for o in met if o.kind == kind):
                key = "reason.residence_registered" if _registered_only(outcome) else f"reason.{kind}"
                if key not in keys:
                    keys.append(key)
        return self.t(_counted("because", keys), reasons=self.join([self.t(k) for k in keys]))

    def requirements(self, candidate: Candidate) -> str:
        unmet = [o for o in candidate.evidence_against if o.role == REQUIREMENT]
        return self.join([self.requirement(o) for o in unmet])

    def requirement(self, outcome: RuleOutcome) -> str:
        rule = outcome.rule
        if isinstance(rule, ResidenceRule):
            key = "req.residence_registered" if rule.registered_only else "req.residence"
            return self.t(key, years=self.count("years", rule.years), window=self.window(rule.within_years))
        if isinstance(rule, WorkRule):
            return self.t("req.work", months=self.count("months", rule.months), window=self.window(rule.within_years))
        return self.t(f"req.{rule.kind}")

    def count(self, unit: str, n: int) -> str:
        return self.t(f"{unit}.{plural_form(self.lang, n)}", n=n)

    def window(self, within_years: int | None) -> str:
        if within_years is None:
            return ""
        return self.t(f"window.{plural_form(self.lang, within_years)}", n=within_years)


def _counted(key: str, items: list[str]) -> str:
    """The key for one item or for several: lists of regions and reasons read differently."""
    return f"{key}.one" if len(items) == 1 else f"{key}.other"


def _registered_only(outcome: RuleOutcome) -> bool:
    return isinstance(outcome.rule, ResidenceRule) and outcome.rule.registered_only
