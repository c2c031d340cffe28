"""Escalation policy: deadlines per rule and urgency, the ladder, acknowledgement deadlines.

Loaded from YAML (``services/region/config/escalation.yaml``) and validated at load. Every
error is a ``PolicyError`` naming the place in the file (``rules.not_answered.after.URGENT``)
or the line for YAML syntax, like the region configuration.

The *rules* are fixed in code (what starts and what stops a deadline, see ``engine.py``); the
file sets, per rule, its level, its deadline per urgency, whether it counts in working hours,
and whether it is enabled. A duration is ``"<number><unit>"`` with unit ``s``, ``m``, ``h`` or
``d``, or ``0`` (immediate). In working time ``h`` is a working hour and ``d`` a working day
(the length of the daily window, 8 hours for 09:00-17:00).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as _holidays

from ..errors import PolicyError
from ..policy import read_policy_file
from .calendar import WEEKDAYS, UnknownHolidayName, WorkingHours

# Levels, named as in proto EscalationLevel.
AGENCY_REMINDER = "AGENCY_REMINDER"
REGION_COORDINATOR = "REGION_COORDINATOR"
NATIONAL_COORDINATOR = "NATIONAL_COORDINATOR"
DISPUTE = "DISPUTE"
AT_RISK_OF_LOSING_CONTACT = "AT_RISK_OF_LOSING_CONTACT"
LEVELS: tuple[str, ...] = (
    AGENCY_REMINDER,
    REGION_COORDINATOR,
    NATIONAL_COORDINATOR,
    DISPUTE,
    AT_RISK_OF_LOSING_CONTACT,
)

URGENCIES: tuple[str, ...] = ("URGENT", "NORMAL")

# Rules (what starts and stops each one is code, documented in ESCALATION.md).
NOT_ACKNOWLEDGED = "not_acknowledged"
NOT_ANSWERED = "not_answered"
NO_NEXT_RECEIVER = "no_next_receiver"
REFUSED_HANDOVER = "refused_handover"
NO_PROGRAMME_ACCEPTS = "no_programme_accepts"
PING_PONG = "ping_pong"
NOT_STARTED = "not_started"
CONTACT_LOST = "contact_lost"
UNRESOLVED = "unresolved"
# An operator suspended the agency that receives (or holds) an open referral: the coordinator
# of the responsible region finds another receiver. Optional in a policy file (default below).
RECEIVER_SUSPENDED = "receiver_suspended"
RULES: tuple[str, ...] = (
    NOT_ACKNOWLEDGED,
    NOT_ANSWERED,
    NO_NEXT_RECEIVER,
    REFUSED_HANDOVER,
    NO_PROGRAMME_ACCEPTS,
    PING_PONG,
    NOT_STARTED,
    CONTACT_LOST,
    UNRESOLVED,
    RECEIVER_SUSPENDED,
)
# Rules a policy file may leave out, and what they are then.
OPTIONAL_RULES: dict[str, dict[str, Any]] = {RECEIVER_SUSPENDED: {"level": "REGION_COORDINATOR", "after": 0}}

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*\Z")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")


@dataclass(frozen=True)
class Timing:
    """A deadline per urgency: seconds (working seconds when ``working`` says so)."""

    seconds: Mapping[str, float]
    working: Mapping[str, bool]

    def due(self, start: float, urgency: str, calendar: WorkingHours) -> float:
        urgency = urgency if urgency in self.seconds else "NORMAL"
        seconds = self.seconds[urgency]
        if self.working[urgency]:
            return calendar.add(start, seconds)
        return start + seconds


@dataclass(frozen=True)
class RuleSpec:
    name: str
    level: str
    after: Timing
    enabled: bool = True
    passes: int = 2  # ping_pong only: passes between regions (or agencies) that trigger it


@dataclass(frozen=True)
class EscalationPolicy:
    version: str
    working_hours: WorkingHours
    ladder: Mapping[str, str]  # level -> the level an unacknowledged alert climbs to
    acknowledge: Mapping[str, Timing]  # level -> time a coordinator has to acknowledge
    rules: Mapping[str, RuleSpec]
    history_length: int = 10
    late_tolerance: float = 5.0  # an escalation fired later than this is marked late
    source: str = "<escalation policy>"

    def rule(self, name: str) -> RuleSpec:
        return self.rules[name]

    def enabled(self, name: str) -> bool:
        spec = self.rules.get(name)
        return spec is not None and spec.enabled

    def climbs_to(self, level: str) -> str | None:
        return self.ladder.get(level)


DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[2] / "config" / "escalation.yaml"


def load_escalation_policy(path: str | Path = DEFAULT_POLICY_PATH) -> EscalationPolicy:
    """Read and validate an escalation policy file. Raises PolicyError naming the place."""
    return build_escalation_policy(read_policy_file(path), str(path))


def build_escalation_policy(data: Any, source: str = "<escalation policy>") -> EscalationPolicy:
    """Validate already-parsed data (as from YAML) into an EscalationPolicy."""
    try:
        return _build(data, source)
    except PolicyError as exc:
        raise PolicyError(exc.where, exc.problem, source) from None


# --------------------------------------------------------------------------- validation


def _build(data: Any, source: str) -> EscalationPolicy:
    top = _mapping(
        data,
        "",
        {"version", "working_hours", "ladder", "acknowledge", "rules", "history_length", "late_tolerance"},
        required={"version", "working_hours", "ladder", "acknowledge", "rules"},
    )
    version = top["version"]
    if isinstance(version, bool) or not isinstance(version, (str, int, float)) or not str(version).strip():
        raise PolicyError("version", 'must be a non-empty text or number, e.g. "2026.1"')
    calendar = _working_hours(top["working_hours"])
    ladder = _ladder(top["ladder"])
    acknowledge = {}
    raw_ack = _mapping(top["acknowledge"], "acknowledge", set(LEVELS))
    for level, raw in raw_ack.items():
        if raw is None:
            continue  # this level does not climb
        if level not in ladder:
            raise PolicyError(
                f"acknowledge.{level}",
                f"{level} does not climb (it is not a step in `ladder`); remove it or add it to the ladder",
            )
        acknowledge[level] = _timing(raw, f"acknowledge.{level}", calendar)
    raw_rules = {
        **OPTIONAL_RULES,
        **_mapping(top["rules"], "rules", set(RULES), required=set(RULES) - set(OPTIONAL_RULES)),
    }
    rules = {name: _rule(name, raw_rules[name], f"rules.{name}", calendar) for name in RULES}
    history_length = top.get("history_length", 10)
    if isinstance(history_length, bool) or not isinstance(history_length, int) or not 1 <= history_length <= 100:
        raise PolicyError("history_length", f"must be a whole number from 1 to 100, not {history_length!r}")
    late_tolerance = _duration(top.get("late_tolerance", "5s"), "late_tolerance", None)
    return EscalationPolicy(
        version=str(version),
        working_hours=calendar,
        ladder=ladder,
        acknowledge=acknowledge,
        rules=rules,
        history_length=history_length,
        late_tolerance=late_tolerance,
        source=source,
    )


def _working_hours(data: Any) -> WorkingHours:
    where = "working_hours"
    wh = _mapping(
        data, where, {"timezone", "days", "start", "end", "holidays"}, required={"timezone", "days", "start", "end"}
    )
    zone = wh["timezone"]
    if not isinstance(zone, str):
        raise PolicyError(f"{where}.timezone", "must be an IANA time zone name, e.g. Europe/Amsterdam")
    days = wh["days"]
    if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
        raise PolicyError(f"{where}.days", f"must be a non-empty list of {', '.join(WEEKDAYS)}")
    if len(set(days)) != len(days):
        raise PolicyError(f"{where}.days", "lists a day twice")
    start, end = _clock(wh["start"], f"{where}.start"), _clock(wh["end"], f"{where}.end")
    if end <= start:
        raise PolicyError(f"{where}.end", "must be later than start (a window within one day)")
    hol = _mapping(
        wh.get("holidays") or {"country": "NL"},
        f"{where}.holidays",
        {"country", "subdivision", "exclude", "extra_days_off"},
        required={"country"},
    )
    exclude = hol.get("exclude", []) or []
    if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
        raise PolicyError(f"{where}.holidays.exclude", "must be a list of holiday names (in English, e.g. Good Friday)")
    extra = hol.get("extra_days_off", []) or []
    if not isinstance(extra, list) or not all(isinstance(x, date) for x in extra):
        raise PolicyError(f"{where}.holidays.extra_days_off", "must be a list of dates (YYYY-MM-DD)")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"{where}.timezone", f"unknown time zone {zone!r}, e.g. Europe/Amsterdam") from None
    country = hol["country"]
    if not isinstance(country, str) or country not in _holidays.list_supported_countries():
        raise PolicyError(
            f"{where}.holidays.country", f"{country!r} is not a country the holidays library knows (e.g. NL)"
        )
    subdivision = hol.get("subdivision")
    try:
        calendar = WorkingHours(
            timezone=zone,
            days=frozenset(WEEKDAYS.index(d) for d in days),
            start=start,
            end=end,
            country=country,
            subdivision=subdivision,
            exclude=frozenset(exclude),
            extra_days_off=frozenset(extra),
        )
    except NotImplementedError as exc:  # the holidays library refuses an unknown subdivision
        raise PolicyError(f"{where}.holidays.subdivision", f"not usable: {exc}") from None
    except UnknownHolidayName as exc:
        raise PolicyError(f"{where}.holidays.exclude", str(exc)) from None
    return calendar


def _ladder(data: Any) -> dict[str, str]:
    ladder = _mapping(data, "ladder", set(LEVELS))
    for level, target in ladder.items():
        if target not in LEVELS:
            raise PolicyError(f"ladder.{level}", f"unknown level {target!r}; known levels: {', '.join(LEVELS)}")
        if target == level:
            raise PolicyError(f"ladder.{level}", "a level cannot climb to itself")
    for start in ladder:  # every climb must end: no cycles
        seen, level = [start], ladder[start]
        while level in ladder:
            if level in seen:
                raise PolicyError(f"ladder.{start}", f"the ladder loops ({' -> '.join(seen + [level])}); it must end")
            seen.append(level)
            level = ladder[level]
    return dict(ladder)


def _rule(name: str, data: Any, where: str, calendar: WorkingHours) -> RuleSpec:
    allowed = {"level", "after", "working_hours", "enabled"} | ({"passes"} if name == PING_PONG else set())
    raw = _mapping(data, where, allowed, required={"level", "after"})
    level = raw["level"]
    if level not in LEVELS:
        raise PolicyError(f"{where}.level", f"unknown level {level!r}; known levels: {', '.join(LEVELS)}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PolicyError(f"{where}.enabled", "must be true or false")
    passes = raw.get("passes", 2)
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise PolicyError(f"{where}.passes", f"must be a whole number of 1 or more, not {passes!r}")
    timing = _timing({"after": raw["after"], "working_hours": raw.get("working_hours", False)}, where, calendar)
    return RuleSpec(name=name, level=level, after=timing, enabled=enabled, passes=passes)


def _timing(data: Any, where: str, calendar: WorkingHours) -> Timing:
    """``{after: <duration or per-urgency>, working_hours: <bool or per-urgency>}``."""
    raw = _mapping(data, where, {"after", "working_hours"}, required={"after"})
    working_raw = raw.get("working_hours", False)
    working = _per_urgency(working_raw, f"{where}.working_hours", _bool)
    seconds = _per_urgency(
        raw["after"],
        f"{where}.after",
        lambda v, w, u: _duration(v, w, calendar if working[u] else None),
    )
    return Timing(seconds=seconds, working=working)


def _per_urgency(value: Any, where: str, parse: Callable[[Any, str, str], Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        _mapping(value, where, set(URGENCIES), required=set(URGENCIES))
        return {u: parse(value[u], f"{where}.{u}", u) for u in URGENCIES}
    return {u: parse(value, where, u) for u in URGENCIES}


def _bool(value: Any, where: str, _urgency: str = "") -> bool:
    if not isinstance(value, bool):
        raise PolicyError(where, f"must be true or false, not {value!r}")
    return value


def _duration(value: Any, where: str, calendar: WorkingHours | None, _urgency: str = "") -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise PolicyError(where, f'must be a duration like "4h", "2d", "30m" or 0, not {value!r}')
    amount, unit = float(match.group(1)), match.group(2)
    if unit == "d":
        return amount * (calendar.day_seconds if calendar is not None else 86400.0)
    return amount * _UNIT[unit]


def _clock(value: Any, where: str) -> time:
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise PolicyError(where, f'must be a time of day "HH:MM" in quotes, not {value!r}')
    hour, minute = map(int, value.split(":"))
    return time(hour, minute)


def _mapping(
    data: Any, where: str, allowed: set[str], required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    def at(key: str) -> str:
        return f"{where}.{key}" if where else str(key)

    if not isinstance(data, dict):
        raise PolicyError(where or "top level", "must be a mapping")
    for key in data:
        if key not in allowed:
            raise PolicyError(at(key), f"unknown key; allowed here: {', '.join(sorted(allowed))}")
    for key in sorted(required):
        if key not in data:
            raise PolicyError(at(key), "is required")
    return data
