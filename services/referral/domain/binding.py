"""The shape of the binding facts a referral carries for the region-binding resolver.

The referral service checks the form (municipality codes, dates, periods that make sense)
so that a malformed fact is refused at the door and never travels on; whether a code belongs
to a region is the region policy's business, decided by the region service.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from .errors import InvalidReferral

MUNICIPALITY_CODE = re.compile(r"^GM\d{4}$")


@dataclass(frozen=True)
class FactPeriod:
    municipality: str
    from_date: str
    to_date: str  # empty: still ongoing


def check_municipality(field: str, code: str) -> None:
    if not code:
        raise InvalidReferral(field, "name a municipality by its CBS code, like GM0363")
    if not MUNICIPALITY_CODE.match(code):
        # Not repeated back: the field may hold anything a person typed.
        raise InvalidReferral(field, "is not a CBS municipality code (GM followed by four digits)")


def _day(field: str, text: str, today: date) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidReferral(field, "is not a date in the form yyyy-mm-dd") from None
    if day > today:
        raise InvalidReferral(field, "is in the future")
    return day


def check_binding_facts(
    *,
    asked_in: str,
    residence: Iterable[FactPeriod],
    work: Iterable[FactPeriod],
    grew_up_in: Iterable[str],
    family_in: Iterable[str],
    today: date,
) -> None:
    """Raise InvalidReferral naming the first malformed fact; facts may be empty (bound nowhere)."""
    check_municipality("asked_in", asked_in)
    for kind, periods in (("residence", residence), ("work", work)):
        for index, period in enumerate(periods):
            where = f"facts.{kind}[{index}]"
            check_municipality(f"{where}.municipality", period.municipality)
            start = _day(f"{where}.from_date", period.from_date, today)
            if period.to_date:
                end = _day(f"{where}.to_date", period.to_date, today)
                if end < start:
                    raise InvalidReferral(f"{where}.to_date", "the period ends before it starts")
    for kind, codes in (("grew_up_in", grew_up_in), ("family_in", family_in)):
        for index, code in enumerate(codes):
            check_municipality(f"facts.{kind}[{index}]", code)
