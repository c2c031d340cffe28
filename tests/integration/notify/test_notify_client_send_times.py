"""The dispatcher applies the send-time rules: a held message is postponed (not dropped, no try
counted) and delivered by the delivery loop once allowed; urgent messages go at once."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from services.notify.domain.contact import Contact
from services.notify.domain.send_rules import SendPolicy
from tests.integration.notify.client_channel_kit import (
    PHONE_NUMBER,
    client_case,
    dispatcher,
    record_client_notification,
)

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
NOT_URGENT = "client_handover_proposed"
# The store stamps a recorded message with the real time, and the dispatcher sends it once its
# clock reaches that stamp: the test clock must run ahead of the real one. Next year's December
# keeps the dates in the future and in winter time (quiet hours are local, CET).
YEAR = datetime.now(AMSTERDAM).year + 1
URGENT = "client_responsible_region"


def _at(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=AMSTERDAM).timestamp()


class Clock:
    def __init__(self, year: int, month: int, day: int, hour: int, minute: int):
        self.now = _at(year, month, day, hour, minute)

    def set(self, year: int, month: int, day: int, hour: int, minute: int) -> None:
        self.now = _at(year, month, day, hour, minute)

    def __call__(self) -> float:
        return self.now


def _sent(tmp_path) -> list[dict]:
    outbox = tmp_path / "outbox.jsonl"
    return [json.loads(line) for line in outbox.read_text().splitlines()] if outbox.exists() else []


async def test_a_night_sms_is_held_until_eight_and_then_delivered_by_the_loop(tmp_path):
    clock = Clock(YEAR, 12, 1, 23, 0)
    sender = dispatcher(tmp_path, send_policy=SendPolicy(), clock=clock)
    case_id = client_case(sender, Contact("sms", PHONE_NUMBER))
    held = record_client_notification(sender, case_id, template=NOT_URGENT)

    await sender.run_due()
    delivery = sender.store.delivery(held)
    assert (delivery.status, delivery.attempts, delivery.last_result) == ("pending", 0, "held_quiet_hours")
    assert delivery.next_attempt_at == _at(YEAR, 12, 2, 8, 0)
    assert sender.outcomes.get(held).state == "held_quiet_hours"
    assert _sent(tmp_path) == []

    clock.set(YEAR, 12, 2, 7, 59)
    assert await sender.run_due() == 0  # not due yet
    clock.set(YEAR, 12, 2, 8, 0)
    await sender.run_due()
    assert sender.store.delivery(held).status == "delivered"
    assert [m["notification_id"] for m in _sent(tmp_path)] == [held]


async def test_an_urgent_sms_goes_out_at_night(tmp_path):
    clock = Clock(YEAR, 12, 1, 23, 0)
    sender = dispatcher(tmp_path, send_policy=SendPolicy(), clock=clock)
    case_id = client_case(sender, Contact("sms", PHONE_NUMBER))
    urgent = record_client_notification(sender, case_id, template=URGENT)
    await sender.run_due()
    assert sender.store.delivery(urgent).status == "delivered"


async def test_at_most_one_message_per_case_per_hour_later_ones_wait_their_turn(tmp_path):
    clock = Clock(YEAR, 12, 1, 10, 0)
    sender = dispatcher(tmp_path, send_policy=SendPolicy(), clock=clock)
    case_id = client_case(sender, Contact("email", "someone@example.org"))
    other_case = client_case(sender, Contact("email", "someone.else@example.org"))
    first = record_client_notification(sender, case_id, template=NOT_URGENT)
    await sender.run_due()
    assert sender.store.delivery(first).status == "delivered"

    clock.set(YEAR, 12, 1, 10, 10)
    second = record_client_notification(sender, case_id, template=NOT_URGENT)
    third = record_client_notification(sender, case_id, template=NOT_URGENT)
    urgent = record_client_notification(sender, case_id, template=URGENT)
    unrelated = record_client_notification(sender, other_case, template=NOT_URGENT)
    for _ in range(4):  # one client message per case per pass
        await sender.run_due()
    assert sender.store.delivery(urgent).status == "delivered"  # urgent: not held
    assert sender.store.delivery(unrelated).status == "delivered"  # another case: its own hour
    for held in (second, third):
        delivery = sender.store.delivery(held)
        assert (delivery.status, delivery.last_result) == ("pending", "held_case_rate")
        assert delivery.attempts == 0

    # the urgent message counts too: the hour runs from 10:10
    clock.set(YEAR, 12, 1, 11, 10)
    for _ in range(3):
        await sender.run_due()
    statuses = sorted(sender.store.delivery(n).status for n in (second, third))
    assert statuses == ["delivered", "pending"]  # one now, the other an hour later

    clock.set(YEAR, 12, 1, 12, 10)
    for _ in range(3):
        await sender.run_due()
    assert {sender.store.delivery(n).status for n in (second, third)} == {"delivered"}
    assert len(_sent(tmp_path)) == 5  # every message went out in the end; none was dropped
