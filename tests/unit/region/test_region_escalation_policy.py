"""The escalation policy file: shipped defaults, validation naming the place, working hours."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.region.domain import PolicyError
from services.region.domain.escalation import (
    DEFAULT_POLICY_PATH,
    RULES,
    build_escalation_policy,
    load_escalation_policy,
)

AMS = ZoneInfo("Europe/Amsterdam")
SHIPPED = load_escalation_policy()
CAL = SHIPPED.working_hours


def shipped_data() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text(encoding="utf-8"))


def ams(*args) -> float:
    return datetime(*args, tzinfo=AMS).timestamp()  # type: ignore[misc]  # args never reach tzinfo


def local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, AMS)


# ------------------------------------------------------------------------- shipped defaults


def test_shipped_policy_has_every_rule_and_the_ladder():
    assert set(SHIPPED.rules) == set(RULES)
    assert SHIPPED.ladder == {
        "AGENCY_REMINDER": "REGION_COORDINATOR",
        "REGION_COORDINATOR": "NATIONAL_COORDINATOR",
        "NATIONAL_COORDINATOR": "DISPUTE",
        "AT_RISK_OF_LOSING_CONTACT": "REGION_COORDINATOR",
    }
    levels = {name: spec.level for name, spec in SHIPPED.rules.items()}
    assert levels == {
        "not_acknowledged": "AGENCY_REMINDER",
        "not_answered": "REGION_COORDINATOR",
        "no_next_receiver": "NATIONAL_COORDINATOR",
        "refused_handover": "NATIONAL_COORDINATOR",
        "no_programme_accepts": "NATIONAL_COORDINATOR",
        "ping_pong": "NATIONAL_COORDINATOR",
        "unresolved": "DISPUTE",
        "not_started": "AT_RISK_OF_LOSING_CONTACT",
        "contact_lost": "REGION_COORDINATOR",
        "receiver_suspended": "REGION_COORDINATOR",
    }
    assert "AGENCY_REMINDER" not in SHIPPED.acknowledge  # followed by not_answered instead
    assert "DISPUTE" not in SHIPPED.acknowledge


def test_urgent_in_hours_around_the_clock_normal_in_working_days():
    rule = SHIPPED.rules["not_answered"].after
    assert rule.seconds["URGENT"] == 8 * 3600 and rule.working["URGENT"] is False
    assert rule.seconds["NORMAL"] == 5 * 8 * 3600 and rule.working["NORMAL"] is True
    for name in ("refused_handover", "no_programme_accepts", "ping_pong", "contact_lost"):
        assert SHIPPED.rules[name].after.seconds == {"URGENT": 0.0, "NORMAL": 0.0}, name


# ------------------------------------------------------------------------- validation


def _set(data, path, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()

BROKEN = [
    (("rules", "not_answered", "after", "URGENT"), "soon", "rules.not_answered.after.URGENT"),
    (("rules", "not_answered", "after"), {"URGENT": "2h"}, "rules.not_answered.after.NORMAL"),
    (("rules", "not_answered", "after"), "-2h", "rules.not_answered.after"),
    (("rules", "not_answered", "level"), "MAYOR", "rules.not_answered.level"),
    (("rules", "not_answered", "working_hours"), "yes", "rules.not_answered.working_hours"),
    (("rules", "not_answered", "passes"), 2, "rules.not_answered.passes"),
    (("rules", "ping_pong", "passes"), 0, "rules.ping_pong.passes"),
    (("rules", "not_answered", "enabled"), "no", "rules.not_answered.enabled"),
    (("rules", "contact_lost"), _DELETE, "rules.contact_lost"),
    (("rules", "sleepy"), {"level": "DISPUTE", "after": 0}, "rules.sleepy"),
    (("ladder", "DISPUTE"), "AGENCY_REMINDER", "ladder."),
    (("ladder", "REGION_COORDINATOR"), "REGION_COORDINATOR", "ladder.REGION_COORDINATOR"),
    (("ladder", "NATIONAL_COORDINATOR"), "JUDGE", "ladder.NATIONAL_COORDINATOR"),
    (("acknowledge", "DISPUTE"), {"after": "1d"}, "acknowledge.DISPUTE"),
    (("acknowledge", "REGION_COORDINATOR", "after"), "1 week", "acknowledge.REGION_COORDINATOR.after"),
    (("working_hours", "timezone"), "Europe/Atlantis", "working_hours.timezone"),
    (("working_hours", "days"), ["MON", "FUNDAY"], "working_hours.days"),
    (("working_hours", "start"), "9:00", "working_hours.start"),
    (("working_hours", "end"), "08:00", "working_hours.end"),
    (("working_hours", "holidays", "country"), "XX", "working_hours.holidays.country"),
    (("working_hours", "holidays", "extra_days_off"), ["someday"], "working_hours.holidays.extra_days_off"),
    (("history_length",), 0, "history_length"),
    (("late_tolerance",), "late", "late_tolerance"),
    (("version",), "", "version"),
    (("surprise",), 1, "surprise"),
]


@pytest.mark.parametrize("path,value,where", BROKEN, ids=[b[2] for b in BROKEN])
def test_broken_policy_is_refused_naming_the_place(path, value, where):
    data = copy.deepcopy(shipped_data())
    _set(data, path, value)
    with pytest.raises(PolicyError) as err:
        build_escalation_policy(data, "escalation.yaml")
    assert err.value.where.startswith(where), str(err.value)
    assert str(err.value).startswith("escalation.yaml: ")


def test_yaml_errors_name_the_line(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("version: 1\nversion: 2\n", encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_escalation_policy(dup)
    assert err.value.where == "line 2" and "twice" in err.value.problem
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [\n", encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_escalation_policy(bad)
    assert err.value.where.startswith("line ")
    with pytest.raises(PolicyError) as err:
        load_escalation_policy(tmp_path / "missing.yaml")
    assert err.value.where == "file"


def test_a_rule_can_be_switched_off_and_durations_take_units():
    data = shipped_data()
    data["rules"]["not_acknowledged"].update(enabled=False)
    data["rules"]["not_answered"].update(after={"URGENT": "90m", "NORMAL": "1.5d"}, working_hours=False)
    policy = build_escalation_policy(data)
    assert not policy.enabled("not_acknowledged")
    assert policy.rules["not_answered"].after.seconds == {"URGENT": 5400.0, "NORMAL": 129600.0}


# ------------------------------------------------------------------------- working hours


def test_working_hours_skip_the_weekend():
    # Friday 16:00 + 2 working hours = Monday 10:00
    due = CAL.add(ams(2026, 3, 13, 16, 0), 2 * 3600)
    assert local(due) == datetime(2026, 3, 16, 10, 0, tzinfo=AMS)


def test_working_hours_skip_kings_day():
    # Friday 24 April 2026 16:00 + one working day (8 h): Mon 27 April is King's Day -> Tue 16:00
    assert CAL.holiday_name(date(2026, 4, 27)) == "King's Day"
    due = CAL.add(ams(2026, 4, 24, 16, 0), 8 * 3600)
    assert local(due) == datetime(2026, 4, 28, 16, 0, tzinfo=AMS)


def test_working_hours_skip_christmas():
    # Thursday 24 Dec 2026 16:00 + 2 h: 25 (Fri) and 26 Dec (Sat) are holidays, then Sunday
    due = CAL.add(ams(2026, 12, 24, 16, 0), 2 * 3600)
    assert local(due) == datetime(2026, 12, 28, 10, 0, tzinfo=AMS)


def test_working_hours_follow_daylight_saving_time():
    # Summer time starts Sunday 29 March 2026: Monday 09:00 is 07:00 UTC, not 08:00.
    due = CAL.add(ams(2026, 3, 27, 16, 0), 2 * 3600)
    assert local(due) == datetime(2026, 3, 30, 10, 0, tzinfo=AMS)
    assert datetime.fromtimestamp(due, ZoneInfo("UTC")).hour == 8


def test_working_hours_start_outside_the_window_and_zero_stays_immediate():
    evening = ams(2026, 3, 10, 20, 30)
    assert local(CAL.add(evening, 3600)) == datetime(2026, 3, 11, 10, 0, tzinfo=AMS)
    assert CAL.add(evening, 0) == evening
    assert CAL.working_seconds_between(ams(2026, 4, 24, 16, 0), ams(2026, 4, 28, 16, 0)) == 8 * 3600


def test_excluded_holiday_is_a_working_day_and_extra_days_off_are_not():
    good_friday = date(2026, 4, 3)
    assert CAL.is_working_day(good_friday)  # excluded in the shipped file
    data = shipped_data()
    data["working_hours"]["holidays"]["exclude"] = []
    data["working_hours"]["holidays"]["extra_days_off"] = [date(2026, 5, 15)]
    calendar = build_escalation_policy(data).working_hours
    assert not calendar.is_working_day(good_friday)
    assert not calendar.is_working_day(date(2026, 5, 15))
    assert calendar.is_working_day(date(2026, 5, 13))


def test_normal_referral_deadline_counts_working_days_over_kings_day():
    # NORMAL not_acknowledged is 2 working days (16 h) from Friday 24 April 16:00:
    # Fri 16-17 (1 h), Mon 27 is King's Day, Tue 9-17 (8 h), Wed 9-16 (7 h) -> Wed 29 April 16:00
    due = SHIPPED.rules["not_acknowledged"].after.due(ams(2026, 4, 24, 16, 0), "NORMAL", CAL)
    assert local(due) == datetime(2026, 4, 29, 16, 0, tzinfo=AMS)
    urgent = SHIPPED.rules["not_acknowledged"].after.due(ams(2026, 4, 24, 16, 0), "URGENT", CAL)
    assert local(urgent) - datetime(2026, 4, 24, 16, 0, tzinfo=AMS) == timedelta(hours=2)


# ------------------------------------------------------------------------- holidays


@pytest.mark.parametrize("year", [2025, 2026, 2027, 2031])
def test_liberation_day_is_a_day_off_every_year_not_only_in_lustrum_years(year):
    # Algemene termijnenwet art. 3 lists 5 May every year; the library alone counts 2025, 2030, ...
    liberation_day = date(year, 5, 5)
    assert CAL.holiday_name(liberation_day) == "Liberation Day"
    assert not CAL.is_working_day(liberation_day)


def test_working_hours_skip_liberation_day_2026():
    # Monday 4 May 2026 16:00 + 2 working hours: Tuesday 5 May is Liberation Day -> Wednesday 10:00
    assert not CAL.is_working_day(date(2026, 5, 5))
    due = CAL.add(ams(2026, 5, 4, 16, 0), 2 * 3600)
    assert local(due) == datetime(2026, 5, 6, 10, 0, tzinfo=AMS)


def test_holiday_names_are_english_whatever_the_library_would_pick():
    assert CAL.holiday_name(date(2026, 4, 6)) == "Easter Monday"
    assert CAL.holiday_name(date(2026, 12, 25)) == "Christmas Day"
    assert {"Good Friday", "Liberation Day", "King's Day"} <= CAL.known_holiday_names()


@pytest.mark.parametrize("unknown", [["Goede vrijdag"], ["Good friday"], ["Good Friday", "Bank Holiday"]])
def test_unknown_holiday_name_in_exclude_is_refused(unknown):
    data = shipped_data()
    data["working_hours"]["holidays"]["exclude"] = unknown
    with pytest.raises(PolicyError) as err:
        build_escalation_policy(data, "escalation.yaml")
    assert err.value.where == "working_hours.holidays.exclude"
    assert repr(unknown[-1]) in str(err.value)
    assert "Good Friday" in err.value.problem  # the message lists the names that are accepted


_EXCLUDE_CHECK = """
from datetime import date
from services.region.domain.escalation import load_escalation_policy
calendar = load_escalation_policy().working_hours
print(calendar.is_working_day(date(2026, 4, 3)), calendar.holiday_name(date(2026, 4, 27)))
"""


@pytest.mark.parametrize("locale", ["C", "nl_NL.UTF-8"])
def test_exclude_good_friday_works_under_any_machine_locale(locale):
    # The holidays library reads these variables when no language is asked for; the shipped
    # `exclude: ["Good Friday"]` must make Good Friday 2026 (3 April) a working day in any case.
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    env.update(LANG=locale, LC_ALL=locale, LC_MESSAGES=locale, LANGUAGE=locale.split(".")[0])
    result = subprocess.run(
        [sys.executable, "-c", _EXCLUDE_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "True King's Day"
