"""Input of the resolver: the minimal binding facts of a client and the request itself.

Only municipality codes and dates, never names or addresses (DESIGN.md section 5): the resolver
needs to know *where* and *how long*, nothing that identifies the person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class ResidencePeriod:
    """A period of living in a municipality. `registered` is True when the client was registered
    at an address there (BRP); False when the stay is only declared by the client or an agency.
    `end` None means: still living there on the decision date. Both ends count as days lived."""

    municipality: str
    start: date
    end: date | None
    registered: bool


@dataclass(frozen=True)
class WorkPeriod:
    """A period of work in a municipality, registered or not (salons, windows, escort, other work)."""

    municipality: str
    start: date
    end: date | None


@dataclass(frozen=True)
class BindingFacts:
    residence: tuple[ResidencePeriod, ...] = ()
    grew_up_in: tuple[str, ...] = ()
    family_in: tuple[str, ...] = ()
    work: tuple[WorkPeriod, ...] = ()

    def __post_init__(self) -> None:
        # Accept lists from adapters but store tuples, so facts stay immutable and hashable.
        for name in ("residence", "grew_up_in", "family_in", "work"):
            object.__setattr__(self, name, tuple(getattr(self, name)))


@dataclass(frozen=True)
class ResolutionRequest:
    """`asked_in`: municipality where help was asked. `current_region`: region code (central
    municipality) already responsible for the case, or None for a new case."""

    asked_in: str
    service: str
    decision_date: date
    facts: BindingFacts = field(default_factory=BindingFacts)
    current_region: str | None = None
