"""Working-time arithmetic: add a duration counted only in working hours.

Working hours are a daily window (e.g. 09:00-17:00) on some weekdays in one time zone, minus
public holidays from the ``holidays`` library (Dutch holidays by default) and the days off the
library leaves out (``ANNUAL_DAYS_OFF``). Times are POSIX seconds (UTC); local windows are
converted with ``zoneinfo``, so daylight-saving changes are handled by the time zone database,
not by us.

Holiday names are always asked in one fixed language (``HOLIDAY_NAME_LANGUAGE``, American
English, where the library has it for the country; otherwise the country's own language):
left to itself the library picks the language from the machine's locale (LANG, LC_ALL, ...),
and then ``exclude: ["Good Friday"]`` would silently do nothing on a server set to Dutch or C.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import holidays as _holidays

WEEKDAYS: tuple[str, ...] = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MAX_DAYS = 366 * 20  # a guard: a calendar without working days must not loop forever
HOLIDAY_NAME_LANGUAGE = "en_US"
_NAMES_FROM_YEARS = range(2000, 2101)  # the years whose holiday names `exclude` may use

# Days off every year that the library counts only in some years, per country: (month, day, name).
# Liberation Day: the Algemene termijnenwet (art. 3, BWBR0002448) lists 5 May as a general
# holiday every year, and the municipal collective agreement (Cao Gemeenten) gives it off every
# year; the library follows the many private agreements that give it off only in lustrum years
# (2025, 2030, ...). Deadlines here are kept by municipalities and their partners, so it counts
# every year.
ANNUAL_DAYS_OFF: dict[str, tuple[tuple[int, int, str], ...]] = {
    "NL": ((5, 5, "Liberation Day"),),
}


class UnknownHolidayName(ValueError):
    """An ``exclude`` entry that is no holiday name of the calendar's country."""

    def __init__(self, unknown: list[str], known: list[str]) -> None:
        self.unknown, self.known = unknown, known
        super().__init__(
            f"unknown holiday name(s) {', '.join(repr(n) for n in unknown)}; names are in "
            f"English, whatever the machine's language: {', '.join(known)}"
        )


@dataclass(frozen=True)
class WorkingHours:
    timezone: str = "Europe/Amsterdam"
    days: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    start: time = time(9, 0)
    end: time = time(17, 0)
    country: str = "NL"
    subdivision: str | None = None
    exclude: frozenset[str] = frozenset()  # holiday names that are ordinary working days
    extra_days_off: frozenset[date] = frozenset()
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _holidays: object = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", ZoneInfo(self.timezone))
        object.__setattr__(self, "_holidays", _country_holidays(self.country, self.subdivision))  # expands by year
        unknown = sorted(self.exclude - self.known_holiday_names())
        if unknown:
            raise UnknownHolidayName(unknown, sorted(self.known_holiday_names()))
        # One cache per calendar (lru_cache on a bound method would pin every instance).
        object.__setattr__(self, "window", lru_cache(maxsize=4096)(self._window))

    @property
    def day_seconds(self) -> float:
        """Length of one working day in seconds ("1d" in working time)."""
        return (datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)).total_seconds()

    def holiday_name(self, day: date) -> str | None:
        if day in self.extra_days_off:
            return "extra day off"
        names = list(self._holidays.get_list(day))  # type: ignore[attr-defined]
        names += [
            name
            for month, dom, name in ANNUAL_DAYS_OFF.get(self.country, ())
            if (day.month, day.day) == (month, dom) and name not in names
        ]
        names = [n for n in names if n not in self.exclude]
        return names[0] if names else None

    def known_holiday_names(self) -> frozenset[str]:
        """Every name ``exclude`` may use (in ``HOLIDAY_NAME_LANGUAGE``)."""
        return _known_names(self.country, self.subdivision)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.days and self.holiday_name(day) is None

    def _window(self, day: date) -> tuple[float, float] | None:
        """The working window of a local calendar day as POSIX seconds, or None."""
        if not self.is_working_day(day):
            return None
        start = datetime.combine(day, self.start, tzinfo=self._zone).timestamp()
        end = datetime.combine(day, self.end, tzinfo=self._zone).timestamp()
        return start, end

    def add(self, start: float, seconds: float) -> float:
        """The moment ``seconds`` of working time after ``start`` (POSIX seconds).

        Zero seconds returns ``start`` itself: an immediate deadline stays immediate, even at
        night. Otherwise the result always lies inside a working window (or at its end).
        """
        if seconds <= 0:
            return start
        remaining = float(seconds)
        day = datetime.fromtimestamp(start, self._zone).date()
        for _ in range(_MAX_DAYS):
            window = self.window(day)  # type: ignore[attr-defined]
            if window is not None:
                begin = max(window[0], start)
                if begin < window[1]:
                    available = window[1] - begin
                    if remaining <= available:
                        return float(begin + remaining)
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("the working-hours calendar has no working time in 20 years")

    def working_seconds_between(self, start: float, end: float) -> float:
        """Working time between two moments (for explanations and tests)."""
        total = 0.0
        day = datetime.fromtimestamp(start, self._zone).date()
        last = datetime.fromtimestamp(end, self._zone).date()
        while day <= last:
            window = self.window(day)  # type: ignore[attr-defined]
            if window is not None:
                total += max(0.0, min(window[1], end) - max(window[0], start))
            day += timedelta(days=1)
        return total


def _country_holidays(country: str, subdivision: str | None, years: range | None = None) -> Any:
    entity = type(_holidays.country_holidays(country, subdiv=subdivision))
    language = HOLIDAY_NAME_LANGUAGE if HOLIDAY_NAME_LANGUAGE in entity.supported_languages else entity.default_language
    return _holidays.country_holidays(country, subdiv=subdivision, language=language, years=years or ())


@lru_cache(maxsize=32)
def _known_names(country: str, subdivision: str | None) -> frozenset[str]:
    table = _country_holidays(country, subdivision, _NAMES_FROM_YEARS)
    names = {name for day in table for name in table.get_list(day)}
    return frozenset(names | {name for _, _, name in ANNUAL_DAYS_OFF.get(country, ())})


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
