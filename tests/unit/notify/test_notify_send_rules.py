"""Send-time rules for client messages: no SMS at night unless urgent, at most one message per
case per hour unless urgent; held messages are deferred to the first allowed moment."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.domain.messages import CLIENT_TEMPLATES
from services.notify.domain.send_rules import URGENT_TEMPLATES, Hold, SendPolicy, earliest_send, is_urgent

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
POLICY = SendPolicy()
NOT_URGENT = "client_handover_proposed"
URGENT = "client_responsible_region"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=AMSTERDAM)


def test_the_urgent_templates_are_client_templates_and_the_handover_proposal_is_not_urgent():
    assert set(CLIENT_TEMPLATES) >= URGENT_TEMPLATES
    assert is_urgent(URGENT) and not is_urgent(NOT_URGENT)


def test_a_night_sms_waits_until_eight_in_the_morning_amsterdam_time():
    decision = earliest_send(POLICY, channel="sms", template=NOT_URGENT, now=local(2026, 12, 1, 23, 30), last_sent=None)
    assert decision.hold is Hold.QUIET_HOURS
    assert decision.at == local(2026, 12, 2, 8, 0)


def test_after_midnight_the_sms_waits_until_eight_the_same_morning():
    decision = earliest_send(POLICY, channel="sms", template=NOT_URGENT, now=local(2026, 12, 2, 3, 0), last_sent=None)
    assert decision.at == local(2026, 12, 2, 8, 0)


def test_a_night_e_mail_goes_at_once():
    now = local(2026, 12, 1, 23, 30)
    assert earliest_send(POLICY, channel="email", template=NOT_URGENT, now=now, last_sent=None).at == now


def test_an_urgent_sms_goes_at_night_and_right_after_another_message():
    now = local(2026, 12, 1, 23, 30)
    decision = earliest_send(POLICY, channel="sms", template=URGENT, now=now, last_sent=now - timedelta(minutes=1))
    assert decision.now and decision.at == now


def test_a_second_message_within_the_hour_waits_for_the_hour_to_end():
    last = local(2026, 12, 1, 10, 0)
    decision = earliest_send(
        POLICY, channel="email", template=NOT_URGENT, now=last + timedelta(minutes=20), last_sent=last
    )
    assert decision.hold is Hold.CASE_RATE
    assert decision.at == last + timedelta(hours=1)


def test_an_hour_that_ends_in_the_night_waits_for_the_morning():
    last = local(2026, 12, 1, 20, 30)
    decision = earliest_send(
        POLICY, channel="sms", template=NOT_URGENT, now=last + timedelta(minutes=5), last_sent=last
    )
    assert decision.hold is Hold.QUIET_HOURS
    assert decision.at == local(2026, 12, 2, 8, 0)


def test_quiet_hours_follow_daylight_saving_time():
    # 27 March 2027: clocks go forward that night; 08:00 local is 06:00 UTC the next morning
    decision = earliest_send(POLICY, channel="sms", template=NOT_URGENT, now=local(2027, 3, 27, 22, 0), last_sent=None)
    assert decision.at.astimezone(UTC) == datetime(2027, 3, 28, 6, 0, tzinfo=UTC)


def test_a_window_that_ends_inside_the_spring_forward_gap_ends_an_hour_after_that_wall_time():
    policy = SendPolicy(quiet_start=time(1, 0), quiet_end=time(2, 30))
    decision = earliest_send(policy, channel="sms", template=NOT_URGENT, now=local(2027, 3, 28, 1, 15), last_sent=None)
    assert not policy.in_quiet_hours(decision.at)
    assert decision.at.astimezone(UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)  # 03:30 summer time


def test_the_window_and_zone_are_settings():
    policy = SendPolicy(quiet_start=time(22, 0), quiet_end=time(7, 0), timezone="Europe/Warsaw")
    now = datetime(2026, 12, 1, 21, 30, tzinfo=ZoneInfo("Europe/Warsaw"))
    assert earliest_send(policy, channel="sms", template=NOT_URGENT, now=now, last_sent=None).now
    with pytest.raises(ZoneInfoNotFoundError):
        SendPolicy(timezone="Nowhere/Atlantis")


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        earliest_send(POLICY, channel="sms", template=NOT_URGENT, now=datetime(2026, 12, 1, 12), last_sent=None)  # noqa: DTZ001


moments = st.datetimes(
    min_value=datetime(2025, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2030, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)
clock_times = st.times().map(lambda t: t.replace(second=0, microsecond=0))
policies = st.builds(
    SendPolicy,
    quiet_start=clock_times,
    quiet_end=clock_times,
    timezone=st.sampled_from(["Europe/Amsterdam", "Europe/Bucharest", "America/Bogota", "UTC"]),
    case_gap=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=2)),
)


@given(
    policy=policies,
    channel=st.sampled_from(["sms", "email"]),
    template=st.sampled_from(CLIENT_TEMPLATES),
    now=moments,
    since_last=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=3)),
)
def test_every_answer_obeys_every_rule_and_delays_nothing_for_nothing(policy, channel, template, now, since_last):
    last_sent = None if since_last is None else now - since_last
    decision = earliest_send(policy, channel=channel, template=template, now=now, last_sent=last_sent)
    assert decision.at >= now
    if is_urgent(template):
        assert decision.at == now and decision.now
        return
    if channel == "sms":
        assert not policy.in_quiet_hours(decision.at)
    if last_sent is not None:
        assert decision.at >= last_sent + policy.case_gap
    rate_free = last_sent is None or last_sent + policy.case_gap <= now
    quiet_free = channel != "sms" or not policy.in_quiet_hours(now)
    if rate_free and quiet_free:
        assert decision.at == now and decision.now
    if decision.hold is Hold.CASE_RATE:
        assert decision.at == last_sent + policy.case_gap
    if decision.hold is Hold.QUIET_HOURS:  # when the quiet hours end, not later
        zone = ZoneInfo(policy.timezone)
        wall = decision.at.astimezone(zone)
        end = datetime.combine(wall.date(), policy.quiet_end)
        assert wall.time() == policy.quiet_end or not _exists(end, zone)  # (a daylight-saving gap)


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall
