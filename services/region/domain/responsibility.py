"""When responsibility for a case moves between regions: a pure state machine, no I/O.

The resolver (resolver.py) never moves responsibility: it names who is responsible now and
proposes a better-bound region for a warm handover. This module holds the other half of the
rule (DESIGN.md section 4): per case, which region is responsible, which region is proposed,
whether a coordinator override is in force, and what an incoming trigger does to that.

Responsibility moves in exactly three ways, and in no other (a fourth, technical one: a case
first seen through an override learns its ordinary region from its first referral event):

* ``HandoverAccepted`` by an agency that serves the proposed handover region: the proposed
  region becomes responsible (rule ``handover_accepted``). While an override is in force the
  move is recorded underneath (``base_region``) and takes effect when the override is lifted.
* ``OverrideSet``: the coordinator's region is responsible (``coordinator_override``) until
* ``OverrideLifted``: the region responsible by the ordinary rules is responsible again
  (``override_lifted``).

Everything else (a new referral, a decline, a forward, changed facts (ReferralFactsChanged), a
refused handover, an accepted handover by an agency that does not serve the proposed region)
leaves responsibility where it is. The first trigger of a case makes the region where help was asked responsible
(``help_asked_here``), so a case has exactly one responsible region from its first event on.
A case first seen through an override holds the override's region underneath provisionally,
until its first referral event: the outcome does not depend on which topic was read first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# Rules this module can name. When it names none, the resolver's own rule names the decision.
HANDOVER_ACCEPTED = "handover_accepted"
HANDOVER_REFUSED = "handover_refused"
COORDINATOR_OVERRIDE = "coordinator_override"
OVERRIDE_LIFTED = "override_lifted"
RESPONSIBILITY_RULES: tuple[str, ...] = (HANDOVER_ACCEPTED, HANDOVER_REFUSED, COORDINATOR_OVERRIDE, OVERRIDE_LIFTED)


# --------------------------------------------------------------------------- triggers


@dataclass(frozen=True)
class Redecide:
    """A referral event after which the resolver decides again; responsibility stays.
    `first_region` is the region the resolver named responsible (the region where help was
    asked when the case has none yet). `proposed` is the resolver's handover target or None."""

    kind: str  # the event type, e.g. ReferralRequested, ReferralDeclined, ReferralFactsChanged
    first_region: str
    proposed: str | None


@dataclass(frozen=True)
class HandoverAccepted:
    """An agency accepted and became the holder; `acceptor_regions` are the regions it serves."""

    acceptor_regions: frozenset[str]


@dataclass(frozen=True)
class HandoverRefused:
    """The target of a warm handover declined (ReferralDeclined with handover=True)."""


@dataclass(frozen=True)
class OverrideSet:
    region: str
    reason_code: str


@dataclass(frozen=True)
class OverrideLifted:
    reason_code: str = ""


Trigger = Redecide | HandoverAccepted | HandoverRefused | OverrideSet | OverrideLifted


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Override:
    region: str
    reason_code: str


@dataclass(frozen=True)
class CaseState:
    """What the region service remembers about a case between events (no personal data).

    `base_region`: responsible by the ordinary rules (help asked here, accepted handovers).
    `override`: a coordinator override in force, which wins over `base_region`.
    `proposed`: the handover target the resolver proposed last, or None.
    `provisional`: the case was first seen through an override (overrides and referral events
    travel on two topics, so either may come first); `base_region` is then the override's region
    until the first referral event names the region where help was asked. So the state after
    both streams is the same whichever order they were read in."""

    base_region: str | None = None
    override: Override | None = None
    proposed: str | None = None
    provisional: bool = False

    @property
    def responsible(self) -> str | None:
        return self.override.region if self.override is not None else self.base_region

    @property
    def ordinary_region(self) -> str | None:
        """The region responsible by the ordinary rules, as far as referral events have told."""
        return None if self.provisional else self.base_region

    @property
    def known(self) -> bool:
        return self.base_region is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_region": self.base_region,
            "override": None
            if self.override is None
            else {"region": self.override.region, "reason_code": self.override.reason_code},
            "proposed": self.proposed,
            "provisional": self.provisional,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> CaseState:
        data = data or {}
        override = data.get("override")
        return cls(
            base_region=data.get("base_region"),
            override=None if not override else Override(override["region"], override.get("reason_code", "")),
            proposed=data.get("proposed"),
            provisional=bool(data.get("provisional", False)),
        )


@dataclass(frozen=True)
class Step:
    """The outcome of one trigger.

    `rule`: the responsibility rule that made this decision, or None when the resolver's rule
    should name it. `moved`: the responsible region changed. `emit`: an assignment is due."""

    before: CaseState
    after: CaseState
    rule: str | None
    emit: bool = True
    notes: tuple[str, ...] = field(default=())

    @property
    def moved(self) -> bool:
        return self.before.responsible != self.after.responsible


class NotYetResponsible(ValueError):
    """A trigger that needs a responsible region came before the case had one."""


def step(state: CaseState, trigger: Trigger) -> Step:
    """Apply one trigger to a case. Pure and total for every (state, trigger) pair, except that
    a case with no region yet can only be opened by `Redecide` or `OverrideSet`."""
    if isinstance(trigger, Redecide):
        if state.base_region is None or state.provisional:
            after = replace(state, base_region=trigger.first_region, proposed=trigger.proposed, provisional=False)
        else:
            after = replace(state, proposed=trigger.proposed)
        return Step(state, after, COORDINATOR_OVERRIDE if state.override is not None else None)

    if isinstance(trigger, OverrideSet):
        override = Override(trigger.region, trigger.reason_code)
        # A case first seen through an override keeps the override's region underneath too,
        # so lifting it later still leaves exactly one responsible region.
        if state.base_region is None:
            return Step(
                state,
                replace(state, base_region=trigger.region, override=override, provisional=True),
                COORDINATOR_OVERRIDE,
            )
        return Step(state, replace(state, override=override), COORDINATOR_OVERRIDE)

    if state.base_region is None:
        raise NotYetResponsible(f"{type(trigger).__name__} before the case had a responsible region")

    if isinstance(trigger, OverrideLifted):
        if state.override is None:
            return Step(state, state, None, emit=False, notes=("no override in force",))
        return Step(state, replace(state, override=None), OVERRIDE_LIFTED)

    if isinstance(trigger, HandoverRefused):
        return Step(state, state, HANDOVER_REFUSED)

    if isinstance(trigger, HandoverAccepted):
        target = state.proposed
        if target is None or target not in trigger.acceptor_regions or target == state.base_region:
            return Step(state, state, None, emit=False, notes=("accepting agency does not serve the proposed region",))
        after = replace(state, base_region=target, proposed=None)
        if state.override is not None:
            # The override still wins; the move takes effect underneath and shows when it is lifted.
            return Step(state, after, COORDINATOR_OVERRIDE, notes=("handover recorded under a coordinator override",))
        return Step(state, after, HANDOVER_ACCEPTED)


def propose(state: CaseState, region: str | None) -> CaseState:
    """Record the resolver's handover proposal made for the region now responsible."""
    return replace(state, proposed=None if region == state.base_region else region)
