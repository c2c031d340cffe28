"""When a client message may go out. Pure: the caller passes the clock reading and the case's
last message; nothing here reads a clock or a store.

Rules (services/notify/README.md, "Client channels"):

1. **No SMS at night.** An SMS that falls in the quiet hours (21:00-08:00 Europe/Amsterdam by
   default; the window and the time zone are settings) waits until the quiet hours end. A phone
   that buzzes at night may be a shared phone or wake someone; an e-mail does not buzz, so
   e-mail is not held.
2. **At most one message per case per hour.** A message for a case that had a message less
   than an hour ago waits until the hour is over. Every message sent counts, urgent ones too.
3. **Urgent messages go at once**, whatever the hour and however recent the last one.
   Urgent is a property of the template (`URGENT_TEMPLATES`), written down here and in the
   README: `client_responsible_region` tells the client which organisation helps them *now*
   (the first message, or a new region after a handover was accepted). The study behind this
   project found that most clients in this situation are out of sight before help arrives, so
   that message is never held back. `client_handover_proposed` only says that another region is
   being asked; nothing changes for the client until it answers, so it waits.

A held message is deferred, never dropped: `earliest_send` returns the first moment at which
every rule allows it, and the dispatcher tries again then (checking the rules again, because
another message of the case may have gone out in the meantime).

Guarantees (tests/unit/notify/test_notify_send_rules.py, hypothesis):
- the answer is never before `now`; an urgent message's answer is `now`;
- a non-urgent SMS is never answered inside the quiet hours (local wall-clock time, so the
  window follows daylight-saving time);
- a non-urgent message is never answered within `case_gap` after the case's last message;
- when no rule holds a message back, the answer is `now` (nothing is delayed for nothing), and
  a held message is answered at the very end of what holds it (not later).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

URGENT_TEMPLATES = frozenset({"client_responsible_region"})
CHANNELS_WITH_QUIET_HOURS = frozenset({"sms"})


class Hold(Enum):
    NONE = "none"
    QUIET_HOURS = "quiet_hours"
    CASE_RATE = "case_rate"


def is_urgent(template: str) -> bool:
    return template in URGENT_TEMPLATES


@dataclass(frozen=True)
class SendPolicy:
    quiet_start: time = time(21, 0)
    quiet_end: time = time(8, 0)
    timezone: str = "Europe/Amsterdam"
    case_gap: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        ZoneInfo(self.timezone)  # an unknown zone fails at start, not at the first message
        if self.case_gap < timedelta(0):
            raise ValueError("case_gap must not be negative")

    def in_quiet_hours(self, moment: datetime) -> bool:
        local = moment.astimezone(ZoneInfo(self.timezone)).time()
        if self.quiet_start == self.quiet_end:
            return False  # an empty window: quiet hours switched off
        if self.quiet_start < self.quiet_end:  # e.g. 00:00-07:00
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end  # across midnight

    def quiet_hours_end_after(self, moment: datetime) -> datetime:
        """The first moment at or after `moment` outside the quiet hours."""
        if not self.in_quiet_hours(moment):
            return moment
        zone = ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        day = local.date() if local.time() < self.quiet_end else local.date() + timedelta(days=1)
        end = datetime.combine(day, self.quiet_end, tzinfo=zone)
        # A configured end inside a daylight-saving gap does not exist on that day; the round
        # trip through UTC moves it to the real moment after the gap.
        return end.astimezone(UTC).astimezone(moment.tzinfo)


@dataclass(frozen=True)
class SendDecision:
    at: datetime
    hold: Hold

    @property
    def now(self) -> bool:
        return self.hold is Hold.NONE


def earliest_send(
    policy: SendPolicy, *, channel: str, template: str, now: datetime, last_sent: datetime | None
) -> SendDecision:
    """The first moment at or after `now` at which the message may go out, and what held it."""
    if now.tzinfo is None or (last_sent is not None and last_sent.tzinfo is None):
        raise ValueError("times must carry a time zone")
    if is_urgent(template):
        return SendDecision(now, Hold.NONE)
    at, hold = now, Hold.NONE
    if last_sent is not None and last_sent + policy.case_gap > now:
        at, hold = last_sent + policy.case_gap, Hold.CASE_RATE
    if channel in CHANNELS_WITH_QUIET_HOURS and policy.in_quiet_hours(at):
        at, hold = policy.quiet_hours_end_after(at), Hold.QUIET_HOURS
    return SendDecision(at, hold)
