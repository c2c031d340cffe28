"""The stall detector: pure transitions of per-case state, plus an engine that drives them.

Pure functions (``policy`` first, then the case state, the facts and ``now``)::

    on_referral_event(policy, state, facts, now)      -> (state, scheduled, cancelled)
    on_assignment(policy, state, facts, now)          -> (state, scheduled, cancelled)
    on_alert_acknowledged(policy, state, esc_id, now) -> (state, scheduled, cancelled)
    fire(policy, state, deadline, now)                -> (state, escalation|None, scheduled, cancelled)

``EscalationEngine`` holds the states of many cases and a due-time index (``schedule.DueIndex``)
and offers the same operations plus ``fire_due(now)``. Its clock is injectable.

What starts and stops each rule (a deadline is *active* while its situation lasts; progress
that ends the situation cancels it, a new occurrence schedules a new deadline):

==================== ============================================= =======================
rule                 starts                                        active while
==================== ============================================= =======================
not_acknowledged     the referral enters REQUESTED (a request)     REQUESTED, same request
not_answered         the referral enters REQUESTED                 REQUESTED/RECEIVED, same request
no_next_receiver     DECLINED (not a handover)                     DECLINED, same decline
refused_handover     DECLINED with handover (refused handover)     DECLINED, same decline
no_programme_accepts an assignment with no_programme_accepts       flag still set, not accepted
ping_pong            the N-th pass between agencies or regions     not accepted / in progress
not_started          ACCEPTED                                      ACCEPTED, same acceptance
contact_lost         CONTACT_LOST                                  CONTACT_LOST
==================== ============================================= =======================

COMPLETED, CANCELLED and FAILED end everything. An alert whose level climbs in the ladder and
has an acknowledgement deadline gets a *climb* deadline: not acknowledged in time, the same
alert fires one level up. An alert at NATIONAL_COORDINATOR level also gets an *unresolved*
deadline: the situation still active then, a DISPUTE record fires (with the regions involved
and the decisions so far). Acknowledging or taking an alert cancels its climb; resolving it
cancels its climb and its *unresolved* deadline. Follow-ups stop when their rule's situation ends. Of the follow-ups
of one alert, at most one DISPUTE fires.

At most once: a deadline leaves ``pending`` when it fires and its key goes to ``fired``; keys
are derived from the referral, rule and occurrence (the referral version), so a redelivered
event cannot schedule it again, and the escalation id is derived from case, rule and key.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from hashlib import sha1 as _sha1
from typing import Any, NamedTuple

from meshkernel.envelope import _ID_NAMESPACE

from . import policy as P
from .model import (
    CLOSED,
    AssignmentFacts,
    CaseState,
    Deadline,
    Escalation,
    ReferralFacts,
    Track,
    copy_with,
    state_from_dict,
    state_to_dict,
    to_ts,
)
from .policy import EscalationPolicy
from .schedule import DueIndex

_FIRED_KEEP = 64
_ACK_KEEP = 32
_DECISIONS_KEEP = 20
_SEEN_KEEP = 8

Result = tuple[CaseState, tuple[Deadline, ...], tuple[Deadline, ...]]


# --------------------------------------------------------------------------- activity


def _active(d: Deadline, t: Track | None) -> bool:
    """Is the situation that deadline ``d`` watches still going on for track ``t``?"""
    if t is None:
        return False
    status, rule = t.status, d.rule
    if status in CLOSED:
        return False
    if rule == P.NOT_ACKNOWLEDGED:
        return status == "REQUESTED" and d.episode == t.request_version
    if rule == P.NOT_ANSWERED:
        return status in ("REQUESTED", "RECEIVED") and d.episode == t.request_version
    if rule in (P.NO_NEXT_RECEIVER, P.REFUSED_HANDOVER):
        return status == "DECLINED" and d.episode == t.status_version
    if rule == P.NOT_STARTED:
        return status == "ACCEPTED" and d.episode == t.status_version
    if rule == P.CONTACT_LOST:
        return status == "CONTACT_LOST"
    if rule == P.RECEIVER_SUSPENDED:
        return True  # open (checked above): a suspended agency cannot end the situation itself
    if rule == P.PING_PONG:
        return status not in ("ACCEPTED", "IN_PROGRESS", "CONTACT_LOST")
    if rule == P.NO_PROGRAMME_ACCEPTS:
        return (
            t.no_programme and d.episode == t.np_episode and status not in ("ACCEPTED", "IN_PROGRESS", "CONTACT_LOST")
        )
    return False


def _intern(text: str) -> str:
    return sys.intern(text) if text else text


def _key(referral_id: str, rule: str, episode: object) -> str:
    return f"{referral_id}|{rule}|{episode}"


def _new_deadline(
    policy: EscalationPolicy,
    state: CaseState,
    rule: str,
    referral_id: str,
    episode: int,
    start: float,
    urgency: str,
    key_episode: object = None,
) -> Deadline | None:
    spec = policy.rules[rule]
    if not spec.enabled:
        return None
    key = _key(referral_id, rule, episode if key_episode is None else key_episode)
    if key in state.fired or any(d.key == key for d in state.pending):
        return None  # at most once, also under redelivery
    due = spec.after.due(start, urgency, policy.working_hours)
    return Deadline(key=key, referral_id=referral_id, rule=rule, level=spec.level, due=due, episode=episode)


def _settle(state: CaseState, track: Track, new: list[Deadline]) -> Result:
    """Store ``track``, cancel the track's deadlines whose situation ended, add ``new``."""
    state = state.with_track(track)
    keep, cancelled = [], []
    for d in state.pending:
        if d.referral_id == track.referral_id and not _active(d, track):
            cancelled.append(d)
        else:
            keep.append(d)
    scheduled = [d for d in new if _active(d, track)]
    if cancelled or scheduled:
        state = copy_with(state, pending=tuple(keep) + tuple(scheduled))
    return state, tuple(scheduled), tuple(cancelled)


# --------------------------------------------------------------------------- transitions


def on_referral_event(
    policy: EscalationPolicy, state: CaseState | None, facts: ReferralFacts, now: float | None = None
) -> Result:
    """Apply one referral event: progress cancels or moves deadlines, new situations start some.

    Events at or below the version already seen (redeliveries) change nothing.
    """
    state = state if state is not None else CaseState(case_id=facts.case_id)
    old = state.track(facts.referral_id) or Track(referral_id=facts.referral_id)
    if facts.event_type == RECEIVER_SUSPENDED_EVENT:
        return _on_receiver_suspended(policy, state, old, facts, now)
    if facts.version and facts.version <= old.version:
        return state, (), ()
    at = facts.occurred_at or (now if now is not None else time.time())
    version = facts.version or old.version + 1
    # Codes and agency ids repeat across millions of cases: intern them, one copy each.
    status, addressee = _intern(facts.to_status), _intern(facts.addressee)
    changed = status != old.status or facts.event_type == "ReferralForwarded"
    track = copy_with(
        old,
        status=status,
        urgency=_intern(facts.urgency) or old.urgency,
        version=version,
        status_version=version if changed else old.status_version,
        request_version=version if changed and status == "REQUESTED" else old.request_version,
        addressee=addressee,
        holder=_intern(facts.holder) or old.holder,
        history=(old.history + ((status, at),))[-policy.history_length :],
    )
    passes = 0
    if addressee and addressee != old.last_asked:
        passes = 1 if old.last_asked else 0
        track = copy_with(track, last_asked=addressee, agency_passes=old.agency_passes + passes)

    new: list[Deadline | None] = []
    rid, urgency, add = facts.referral_id, track.urgency, new.append
    if changed:
        if status == "REQUESTED":
            for rule in (P.NOT_ACKNOWLEDGED, P.NOT_ANSWERED):
                add(_new_deadline(policy, state, rule, rid, version, at, urgency))
        elif status == "DECLINED":
            rule = P.REFUSED_HANDOVER if facts.refused_handover else P.NO_NEXT_RECEIVER
            add(_new_deadline(policy, state, rule, rid, version, at, urgency))
        elif status == "ACCEPTED":
            add(_new_deadline(policy, state, P.NOT_STARTED, rid, version, at, urgency))
        elif status == "CONTACT_LOST":
            add(_new_deadline(policy, state, P.CONTACT_LOST, rid, version, at, urgency))
    if passes and policy.enabled(P.PING_PONG) and track.agency_passes == policy.rules[P.PING_PONG].passes:
        add(_new_deadline(policy, state, P.PING_PONG, rid, version, at, urgency, key_episode="agencies"))
    return _settle(state, track, [d for d in new if d is not None])


# Not a lifecycle change (status and version stay): the referral service tells that an operator
# suspended the agency the referral waits on (`addressee`); services/referral/agency_admin.py.
RECEIVER_SUSPENDED_EVENT = "ReferralReceiverSuspended"


def _on_receiver_suspended(
    policy: EscalationPolicy, state: CaseState, old: Track, facts: ReferralFacts, now: float | None
) -> Result:
    """The coordinator of the responsible region, at once, once per suspended agency and referral
    (the deadline key names the agency, so a redelivery schedules nothing new)."""
    track = old
    if not old.status:  # the worker never saw this referral (it predates its state): take its status
        track = copy_with(old, status=_intern(facts.to_status), urgency=_intern(facts.urgency) or old.urgency)
    if track.status in CLOSED:
        return state, (), ()
    at = facts.occurred_at or (now if now is not None else time.time())
    rid = facts.referral_id
    deadline = _new_deadline(
        policy, state, P.RECEIVER_SUSPENDED, rid, track.version, at, track.urgency, key_episode=facts.addressee
    )
    return _settle(state, track, [deadline] if deadline is not None else [])


def on_assignment(
    policy: EscalationPolicy, state: CaseState | None, facts: AssignmentFacts, now: float | None = None
) -> Result:
    """Apply one region assignment: regions involved, region passes, no programme accepts."""
    state = state if state is not None else CaseState(case_id=facts.case_id)
    if facts.event_id and facts.event_id in state.assignments_seen:
        return state, (), ()
    at = facts.occurred_at or (now if now is not None else time.time())
    old = state.track(facts.referral_id) or Track(referral_id=facts.referral_id)
    region = _intern(facts.responsible_region)
    regions = set(state.regions)
    regions.update(_intern(r) for r in (region, facts.previous_region, facts.handover_to) if r)
    state = copy_with(
        state,
        region=region or state.region,
        regions=tuple(sorted(regions)),
        decisions=(state.decisions + ((at, "assignment", _intern(facts.rule), region),))[-_DECISIONS_KEEP:],
        assignments_seen=(
            (state.assignments_seen + (facts.event_id,))[-_SEEN_KEEP:] if facts.event_id else state.assignments_seen
        ),
    )
    moved = bool(old.region and region and region != old.region)
    track = copy_with(
        old,
        region=region or old.region,
        region_passes=old.region_passes + (1 if moved else 0),
        no_programme=facts.no_programme_accepts,
        np_episode=old.np_episode + (1 if facts.no_programme_accepts and not old.no_programme else 0),
    )
    new: list[Deadline | None] = []
    if facts.no_programme_accepts and not old.no_programme:
        new.append(
            _new_deadline(policy, state, P.NO_PROGRAMME_ACCEPTS, track.referral_id, track.np_episode, at, track.urgency)
        )
    if moved and policy.enabled(P.PING_PONG) and track.region_passes == policy.rules[P.PING_PONG].passes:
        new.append(
            _new_deadline(
                policy, state, P.PING_PONG, track.referral_id, track.version, at, track.urgency, key_episode="regions"
            )
        )
    return _settle(state, track, [d for d in new if d is not None])


def on_alert_acknowledged(
    policy: EscalationPolicy, state: CaseState | None, escalation_id: str, now: float | None = None
) -> Result:
    """A coordinator acknowledged an alert: it stops climbing (its climb deadline is cancelled).

    The *unresolved* follow-up of a national alert stays: acknowledging is not resolving.
    """
    if state is None:
        return CaseState(case_id=""), (), ()
    cancelled = tuple(d for d in state.pending if d.kind == "climb" and d.parent == escalation_id)
    acknowledged = state.acknowledged
    if escalation_id not in acknowledged:
        acknowledged = (acknowledged + (escalation_id,))[-_ACK_KEEP:]
    state = copy_with(state, pending=tuple(d for d in state.pending if d not in cancelled), acknowledged=acknowledged)
    return state, (), cancelled


def on_alert_resolved(
    policy: EscalationPolicy, state: CaseState | None, escalation_id: str, now: float | None = None
) -> Result:
    """A coordinator resolved an alert: it stops climbing, and the pending *unresolved* dispute
    deadline of a national alert is cancelled too, since the dispute it would open is settled.
    (A later stall of the case is a new situation and schedules deadlines of its own.)"""
    state, _scheduled, cancelled = on_alert_acknowledged(policy, state, escalation_id, now)
    settled = tuple(d for d in state.pending if d.kind == "unresolved" and d.parent == escalation_id)
    if not settled:
        return state, (), cancelled
    state = copy_with(state, pending=tuple(d for d in state.pending if d not in settled))
    return state, (), cancelled + settled


def escalation_id(case_id: str, deadline: Deadline) -> str:
    """``derived_id("escalation", case_id, rule, key)`` (meshkernel.envelope), computed without
    building a ``uuid.UUID`` object: firing is a hot path. A test checks both agree."""
    name = f"escalation/{case_id}/{deadline.rule}/{deadline.key}"
    digest = bytearray(_sha1(_NAMESPACE + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE = _ID_NAMESPACE.bytes


def fire(
    policy: EscalationPolicy, state: CaseState, deadline: Deadline, now: float
) -> tuple[CaseState, Escalation | None, tuple[Deadline, ...], tuple[Deadline, ...]]:
    """Fire one due deadline (at most once): the escalation and its follow-ups.

    Returns ``escalation`` None if the deadline is not pending in ``state`` (already fired or
    cancelled), which is what makes a second attempt harmless. (Hot path: no ``replace``.)
    """
    pending = state.pending
    for d in pending:
        if d is deadline:
            break
    else:
        for d in pending:
            if d.key == deadline.key:
                deadline = d
                break
        else:
            return state, None, (), ()
    track = state.track(deadline.referral_id)
    case_id = state.case_id
    eid = escalation_id(case_id, deadline)
    late = now - deadline.due
    if late < 0.0:
        late = 0.0
    level = deadline.level

    cancelled: tuple[Deadline, ...] = ()
    if level == P.DISPUTE and deadline.parent:  # one dispute per national alert
        cancelled = tuple(
            d for d in pending if d is not deadline and d.parent == deadline.parent and d.level == P.DISPUTE
        )
    urgency = track.urgency if track is not None else "NORMAL"
    follow: tuple[Deadline, ...] = ()
    target = policy.ladder.get(level)
    if target is not None and level in policy.acknowledge:
        follow += (
            Deadline(
                f"{deadline.key}>{target}",
                deadline.referral_id,
                deadline.rule,
                target,
                policy.acknowledge[level].due(now, urgency, policy.working_hours),
                deadline.episode,
                "climb",
                eid,
            ),
        )
    if level == P.NATIONAL_COORDINATOR and policy.enabled(P.UNRESOLVED):
        spec = policy.rules[P.UNRESOLVED]
        follow += (
            Deadline(
                f"{deadline.key}>{P.UNRESOLVED}",
                deadline.referral_id,
                deadline.rule,
                spec.level,
                spec.after.due(now, urgency, policy.working_hours),
                deadline.episode,
                "unresolved",
                eid,
            ),
        )
    if follow:
        follow = tuple(d for d in follow if d.key not in state.fired)

    decisions = state.decisions + ((now, "escalation", deadline.rule, level),)
    if len(decisions) > _DECISIONS_KEEP:
        decisions = decisions[-_DECISIONS_KEEP:]
    fired = state.fired + (deadline.key,)
    if len(fired) > _FIRED_KEEP:
        fired = fired[-_FIRED_KEEP:]
    if cancelled:
        rest = tuple(d for d in pending if d is not deadline and not any(d is c for c in cancelled))
    else:
        rest = tuple(d for d in pending if d is not deadline)
    state = CaseState(
        case_id,
        state.tracks,
        rest + follow,
        state.region,
        state.regions,
        decisions,
        fired,
        state.acknowledged,
        state.assignments_seen,
    )
    if track is not None:
        region, history, agency = (track.region or state.region), track.history, (track.addressee or track.holder)
    else:
        region, history, agency = state.region, (), ""
    escalation = Escalation(
        eid,
        case_id,
        deadline.referral_id,
        region,
        level,
        deadline.rule,
        deadline.due,
        now,
        late,
        late > policy.late_tolerance,
        history,
        agency,
        _CAUSE.get(deadline.kind, deadline.kind),
        _climbed_from(policy, level) if deadline.kind == "climb" else "",
        state.regions,
        decisions if level == P.DISPUTE else (),
    )
    return state, escalation, follow, cancelled


_CAUSE = {"rule": "deadline", "climb": "not_acknowledged"}


def _climbed_from(policy: EscalationPolicy, level: str) -> str:
    for lower, upper in policy.ladder.items():
        if upper == level and lower in policy.acknowledge:
            return lower
    return ""


# --------------------------------------------------------------------------- engine


class Changes(NamedTuple):
    scheduled: tuple[Deadline, ...]
    cancelled: tuple[Deadline, ...]


class EscalationEngine:
    """Per-case states plus the due-time index; the clock is injectable (``clock() -> POSIX s``).

    Not thread-safe; one engine per worker (per set of assigned partitions).
    """

    __slots__ = ("clock", "index", "policy", "states")

    def __init__(self, policy: EscalationPolicy, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.clock = clock
        self.states: dict[str, CaseState] = {}
        self.index = DueIndex(self._is_live)

    def _is_live(self, case_id: str, deadline: Deadline) -> bool:
        state = self.states.get(case_id)
        if state is None:
            return False
        return any(d is deadline for d in state.pending)

    def _now(self, now: datetime | float | None) -> float:
        return self.clock() if now is None else to_ts(now)

    def _apply(self, case_id: str, result: Result) -> Changes:
        state, scheduled, cancelled = result
        self.states[case_id] = state
        for d in scheduled:
            self.index.push(d.due, case_id, d)
        if cancelled:
            self.index.cancelled(len(cancelled))
        return Changes(scheduled, cancelled)

    # -- inputs
    def on_referral_event(self, facts: ReferralFacts, now: datetime | float | None = None) -> Changes:
        return self._apply(
            facts.case_id, on_referral_event(self.policy, self.states.get(facts.case_id), facts, self._now(now))
        )

    def on_assignment(self, facts: AssignmentFacts, now: datetime | float | None = None) -> Changes:
        return self._apply(
            facts.case_id, on_assignment(self.policy, self.states.get(facts.case_id), facts, self._now(now))
        )

    def on_alert_acknowledged(self, case_id: str, escalation_id: str, now: datetime | float | None = None) -> Changes:
        state = self.states.get(case_id)
        if state is None:
            return Changes((), ())
        return self._apply(case_id, on_alert_acknowledged(self.policy, state, escalation_id, self._now(now)))

    def on_alert_resolved(self, case_id: str, escalation_id: str, now: datetime | float | None = None) -> Changes:
        state = self.states.get(case_id)
        if state is None:
            return Changes((), ())
        return self._apply(case_id, on_alert_resolved(self.policy, state, escalation_id, self._now(now)))

    # -- time
    def fire_due(self, now: datetime | float | None = None, limit: int | None = None) -> list[Escalation]:
        """Fire every deadline due at ``now`` (and follow-ups already due), earliest first."""
        now = self._now(now)
        fired: list[Escalation] = []
        states = self.states
        for _, case_id, deadline in self.index.pop_due(now):
            state = states[case_id]
            state, escalation, scheduled, cancelled = fire(self.policy, state, deadline, now)
            self._apply(case_id, (state, scheduled, cancelled))
            if escalation is not None:
                fired.append(escalation)
                if limit is not None and len(fired) >= limit:
                    break
        return fired

    def next_due(self) -> float | None:
        return self.index.next_due()

    # -- durable state
    def state(self, case_id: str) -> CaseState | None:
        return self.states.get(case_id)

    def dump(self, case_id: str) -> dict[str, Any] | None:
        state = self.states.get(case_id)
        return None if state is None else state_to_dict(state)

    def load(self, states: Iterable[CaseState | dict[str, Any]]) -> int:
        """Add states (e.g. read from a Faust table on partition assignment); rebuild the index
        once, O(n log n) at most. Returns the number of pending deadlines indexed."""
        for s in states:
            s = state_from_dict(s) if isinstance(s, dict) else s
            self.states[s.case_id] = s
        self.index.rebuild((d.due, cid, d) for cid, st in self.states.items() for d in st.pending)
        return self.index.live

    def drop(self, case_ids: Iterable[str]) -> None:
        """Forget cases (partition revoked); their entries leave the index lazily."""
        n = 0
        for cid in case_ids:
            state = self.states.pop(cid, None)
            if state is not None:
                n += len(state.pending)
        if n:
            self.index.cancelled(n)

    @property
    def pending_count(self) -> int:
        return self.index.live
